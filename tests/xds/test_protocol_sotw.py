"""Scripted scenarios for the state-of-the-world machine (no sockets, no Envoy)."""

from __future__ import annotations

import pytest

from malla.xds import resources
from malla.xds.protocol import Ack, Nack, ProtocolError, Stale, Subscribed, SyncState
from malla.xds.sotw import SotwStream
from tests.xds.views import CDS, EDS, LDS, RDS, View, ack_of, only_send, sends, sotw

BASE = View({
    CDS: {"a": "c1", "b": "c1"},
    EDS: {"a": "e1", "b": "e1"},
    LDS: {"http": "l1"},
    RDS: {"local": "r1"},
}, eds={"a": "a", "b": "b"})


def synced_stream(view: View = BASE) -> SotwStream:
    """A stream that went through Envoy's start-up order and ACKed everything."""
    stream = SotwStream()
    cds = only_send(stream.receive(sotw(CDS), view))
    eds = only_send(stream.receive(sotw(EDS, ("a", "b")), view))
    stream.receive(ack_of(eds, names=("a", "b")), view)
    stream.receive(ack_of(cds), view)
    lds = only_send(stream.receive(sotw(LDS), view))
    rds = only_send(stream.receive(sotw(RDS, ("local",)), view))
    stream.receive(ack_of(lds), view)
    stream.receive(ack_of(rds, names=("local",)), view)
    return stream


def stream_nonce(stream: SotwStream, type_url: str) -> str:
    """The nonce of the last response of a type, as Envoy would quote it."""
    return next(s.nonce for s in stream.status(None) if s.type_url == type_url)


def states(stream: SotwStream, view: View) -> dict[str, SyncState]:
    return {s.short_name: s.state for s in stream.status(view)}


def test_empty_first_cluster_request_is_a_wildcard_and_gets_every_cluster() -> None:
    stream = SotwStream()
    actions = stream.receive(sotw(CDS), BASE)
    assert Subscribed(CDS, True, ()) in actions
    send = only_send(actions)
    assert dict(send.resources) == {"a": "c1", "b": "c1"}
    assert send.version == resources.set_version({"a": "c1", "b": "c1"})


def test_explicit_star_is_a_wildcard_and_names_end_the_legacy_form() -> None:
    stream = SotwStream()
    send = only_send(stream.receive(sotw(CDS, ("*",)), BASE))
    assert set(send.resources) == {"a", "b"}
    legacy = SotwStream()
    first = only_send(legacy.receive(sotw(CDS), BASE))
    narrowed = only_send(legacy.receive(sotw(CDS, ("a",), nonce=first.nonce,
                                             version=first.version), BASE))
    assert set(narrowed.resources) == {"a"}


def test_everything_acked_is_synced() -> None:
    stream = synced_stream()
    assert states(stream, BASE) == {"CDS": "SYNCED", "EDS": "SYNCED", "LDS": "SYNCED",
                                    "RDS": "SYNCED"}


def test_sent_but_not_acked_is_stale_and_unsent_type_is_not_sent() -> None:
    stream = SotwStream()
    stream.receive(sotw(CDS), BASE)
    assert states(stream, BASE) == {"CDS": SyncState.STALE}
    nothing = SotwStream()
    nothing.receive(sotw(CDS), None)
    assert states(nothing, BASE) == {"CDS": SyncState.NOT_SENT}


def test_request_before_any_snapshot_is_answered_when_the_snapshot_arrives() -> None:
    stream = SotwStream()
    assert sends(stream.receive(sotw(CDS), None)) == []
    send = only_send(stream.update(BASE))
    assert send.type_url == CDS and set(send.resources) == {"a", "b"}


def test_initial_request_is_answered_even_when_envoy_claims_the_same_version() -> None:
    # A restarted server meets an Envoy that holds exactly this content.
    version = BASE.type_version(CDS)
    send = only_send(SotwStream().receive(sotw(CDS, version=version), BASE))
    assert send.version == version


def test_versions_are_content_hashes_equal_across_server_restarts() -> None:
    first = only_send(SotwStream(nonce_prefix="x").receive(sotw(CDS), BASE))
    again = only_send(SotwStream(nonce_prefix="y").receive(sotw(CDS), BASE))
    assert first.version == again.version
    assert first.nonce != again.nonce


def test_ack_is_recorded_and_answered_with_nothing() -> None:
    stream = SotwStream()
    send = only_send(stream.receive(sotw(CDS), BASE))
    assert stream.receive(ack_of(send), BASE) == [Ack(CDS, send.nonce, send.version)]


def test_endpoint_change_sends_only_the_changed_assignment() -> None:
    stream = synced_stream()
    changed = View({**{t: BASE.versions(t) for t in (CDS, LDS, RDS)},
                    EDS: {"a": "e2", "b": "e1"}}, eds={"a": "a", "b": "b"})
    send = only_send(stream.update(changed))
    assert send.type_url == EDS
    assert dict(send.resources) == {"a": "e2"}
    assert send.version == resources.set_version({"a": "e2", "b": "e1"})
    assert send.content_id != send.version  # a partial body is cached apart


def test_unchanged_snapshot_pushes_nothing() -> None:
    stream = synced_stream()
    assert stream.update(BASE) == []


def test_eds_rerequest_with_same_names_and_latest_nonce_is_answered_in_full() -> None:
    stream = synced_stream()
    eds_nonce = next(s.nonce for s in stream.status(BASE) if s.type_url == EDS)
    version = BASE.type_version(EDS)
    send = only_send(stream.receive(sotw(EDS, ("a", "b"), nonce=eds_nonce, version=version), BASE))
    assert dict(send.resources) == {"a": "e1", "b": "e1"}


def test_request_with_superseded_nonce_is_stale_and_not_answered() -> None:
    stream = SotwStream()
    old = only_send(stream.receive(sotw(CDS), BASE))
    newer = only_send(stream.update(View({CDS: {"a": "c2", "b": "c1"}})))
    actions = stream.receive(ack_of(old), BASE)
    assert actions == [Ack(CDS, old.nonce, old.version), Stale(CDS, old.nonce)]
    assert stream.receive(sotw(CDS, nonce="nonsense", version="v"), BASE) == [
        Stale(CDS, "nonsense")]
    assert newer.nonce != old.nonce


def test_new_eds_name_in_an_ack_gets_only_that_assignment() -> None:
    stream = SotwStream()
    first = only_send(stream.receive(sotw(EDS, ("a",)), BASE))
    actions = stream.receive(sotw(EDS, ("a", "b"), nonce=first.nonce, version=first.version), BASE)
    assert Subscribed(EDS, False, ("a", "b")) in actions
    assert dict(only_send(actions).resources) == {"b": "e1"}


def test_nack_records_envoys_reason_and_suspects_only_what_changed() -> None:
    stream = synced_stream()
    bad = View({CDS: {"a": "c2", "b": "c1", "bad": "x"}, EDS: BASE.versions(EDS),
                LDS: BASE.versions(LDS), RDS: BASE.versions(RDS)}, eds={"a": "a", "b": "b"})
    pushed = sends(stream.update(bad))
    cds = pushed[0]
    assert cds.type_url == CDS and set(cds.resources) == {"a", "b", "bad"}
    old_version = BASE.type_version(CDS)
    actions = stream.receive(sotw(CDS, nonce=cds.nonce, version=old_version,
                                  error="invalid cluster"), bad)
    assert actions == [Nack(CDS, cds.nonce, 13, "invalid cluster", ("a", "bad"))]
    status = next(s for s in stream.status(bad) if s.type_url == CDS)
    assert status.state == SyncState.REJECTED
    assert status.error == "invalid cluster"
    assert status.acked_version == old_version
    assert status.rejected == ("a", "bad")


def test_rejected_content_is_not_sent_again_until_it_changes() -> None:
    stream = synced_stream()
    bad = View({**{t: BASE.versions(t) for t in (EDS, LDS, RDS)},
                CDS: {"a": "c1", "b": "c1", "bad": "x"}}, eds={"a": "a", "b": "b"})
    cds = only_send(stream.update(bad))
    stream.receive(sotw(CDS, nonce=cds.nonce, version="old", error="no"), bad)
    assert stream.update(bad) == []
    fixed = View({**{t: BASE.versions(t) for t in (EDS, LDS, RDS)},
                  CDS: {"a": "c1", "b": "c1", "bad": "y"}}, eds={"a": "a", "b": "b"})
    retry = only_send(stream.update(fixed))
    stream.receive(ack_of(retry), fixed)
    assert states(stream, fixed)["CDS"] == SyncState.SYNCED


def test_changed_cluster_gets_its_assignment_again_in_the_same_push() -> None:
    stream = synced_stream()
    view = View({CDS: {"a": "c2", "b": "c1"}, EDS: BASE.versions(EDS), LDS: BASE.versions(LDS),
                 RDS: BASE.versions(RDS)}, eds={"a": "a", "b": "b"})
    pushed = sends(stream.update(view))
    assert [s.type_url for s in pushed] == [CDS, EDS]
    assert dict(pushed[1].resources) == {"a": "e1"}


def test_removed_cluster_stays_until_routes_moved_away() -> None:
    stream = synced_stream()
    view = View({CDS: {"a": "c1"}, EDS: BASE.versions(EDS), LDS: BASE.versions(LDS),
                 RDS: {"local": "r2"}}, eds={"a": "a"})
    pushed = sends(stream.update(view))
    assert [s.type_url for s in pushed] == [RDS, CDS]
    assert set(pushed[1].resources) == {"a"}
    assert pushed[1].version == view.type_version(CDS)


def test_routes_wait_until_added_clusters_are_warm() -> None:
    # Envoy answers 503 for a route to a cluster it is still warming, and ACKs
    # the cluster response only once the new clusters have their endpoints.
    stream = synced_stream()
    view = View({CDS: {"a": "c1", "b": "c1", "n": "c1"}, EDS: {"a": "e1", "b": "e1", "n": "e1"},
                 LDS: {"http": "l2"}, RDS: {"local": "r2"}}, eds={"a": "a", "b": "b", "n": "n"})
    cds = only_send(stream.update(view))
    assert cds.type_url == CDS and set(cds.resources) == {"a", "b", "n"}
    assert states(stream, view)["RDS"] == SyncState.STALE
    eds = only_send(stream.receive(sotw(EDS, ("a", "b", "n"), nonce=stream_nonce(stream, EDS),
                                        version=BASE.type_version(EDS)), view))
    assert dict(eds.resources) == {"n": "e1"}
    stream.receive(ack_of(eds, names=("a", "b", "n")), view)
    released = sends(stream.receive(ack_of(cds), view))
    assert [s.type_url for s in released] == [LDS, RDS]


def test_added_and_removed_clusters_in_one_push_routes_move_between() -> None:
    stream = synced_stream()
    view = View({CDS: {"a": "c1", "c": "c1"}, EDS: {"a": "e1", "b": "e1", "c": "e1"},
                 LDS: BASE.versions(LDS), RDS: {"local": "r2"}}, eds={"a": "a", "c": "c"})
    held = only_send(stream.update(view))
    assert set(held.resources) == {"a", "b", "c"}, "b stays while routes may still use it"
    released = sends(stream.receive(ack_of(held), view))
    assert [s.type_url for s in released] == [RDS, CDS]
    assert set(released[1].resources) == {"a", "c"}
    assert released[1].version == view.type_version(CDS)


def test_a_rejected_cluster_response_releases_the_routes_too() -> None:
    stream = synced_stream()
    view = View({CDS: {"a": "c1", "b": "c1", "n": "bad"}, EDS: {"a": "e1", "b": "e1", "n": "e1"},
                 LDS: BASE.versions(LDS), RDS: {"local": "r2"}}, eds={"a": "a", "b": "b", "n": "n"})
    cds = only_send(stream.update(view))
    nack = sotw(CDS, nonce=cds.nonce, version=BASE.type_version(CDS), error="bad cluster")
    released = sends(stream.receive(nack, view))
    assert [s.type_url for s in released] == [RDS]


def test_changed_clusters_do_not_hold_routes_back() -> None:
    # A changed cluster keeps serving with its old config while the new one warms.
    stream = synced_stream()
    view = View({CDS: {"a": "c2", "b": "c1"}, EDS: BASE.versions(EDS), LDS: BASE.versions(LDS),
                 RDS: {"local": "r2"}}, eds={"a": "a", "b": "b"})
    assert [s.type_url for s in sends(stream.update(view))] == [CDS, EDS, RDS]


def test_lone_cluster_removal_is_one_response() -> None:
    stream = synced_stream()
    view = View({CDS: {"a": "c1"}, EDS: BASE.versions(EDS), LDS: BASE.versions(LDS),
                 RDS: BASE.versions(RDS)}, eds={"a": "a"})
    send = only_send(stream.update(view))
    assert set(send.resources) == {"a"}


def test_push_order_is_clusters_endpoints_listeners_routes() -> None:
    stream = synced_stream()
    view = View({CDS: {"a": "c2", "b": "c1"}, EDS: {"a": "e2", "b": "e1"},
                 LDS: {"http": "l2"}, RDS: {"local": "r2"}}, eds={"a": "a", "b": "b"})
    assert [s.type_url for s in sends(stream.update(view))] == [CDS, EDS, LDS, RDS]


def test_empty_type_url_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="type_url"):
        SotwStream().receive(sotw(""), BASE)


def test_a_name_envoy_still_asks_for_but_the_snapshot_dropped_does_not_make_it_stale() -> None:
    # A draining listener keeps its route subscribed after the route left the snapshot.
    both = View({CDS: {"a": "c1"}, LDS: {"http": "l1"}, RDS: {"local": "r1", "gone": "r1"}})
    stream = SotwStream()
    send = only_send(stream.receive(sotw(RDS, ("local", "gone")), both))
    stream.receive(ack_of(send, names=("local", "gone")), both)
    now = View({CDS: {"a": "c1"}, LDS: {"http": "l1"}, RDS: {"local": "r1"}})
    stream.update(now)
    assert states(stream, now)["RDS"] == SyncState.SYNCED
    changed = View({CDS: {"a": "c1"}, LDS: {"http": "l1"}, RDS: {"local": "r2"}})
    stream.update(changed)
    assert states(stream, changed)["RDS"] == SyncState.STALE
