"""Scripted scenarios for the Delta machine (no sockets, no Envoy)."""

from __future__ import annotations

from malla.xds.delta import DeltaStream
from malla.xds.protocol import Ack, Nack, Send, Stale, Subscribed, SyncState
from tests.xds.views import CDS, EDS, LDS, RDS, View, delta, only_send, sends

BASE = View({
    CDS: {"a": "c1", "b": "c1"},
    EDS: {"a": "e1", "b": "e1"},
    LDS: {"http": "l1"},
    RDS: {"local": "r1"},
}, eds={"a": "a", "b": "b"})


def ack(send: Send) -> object:
    return delta(send.type_url, nonce=send.nonce)


def synced_stream(view: View = BASE) -> DeltaStream:
    stream = DeltaStream()
    for request in (delta(CDS), delta(EDS, subscribe=("a", "b")), delta(LDS),
                    delta(RDS, subscribe=("local",))):
        for send in sends(stream.receive(request, view)):
            stream.receive(ack(send), view)
    return stream


def states(stream: DeltaStream, view: View) -> dict[str, SyncState]:
    return {s.short_name: s.state for s in stream.status(view)}


def with_types(**changes: dict[str, str]) -> View:
    names = {"CDS": CDS, "EDS": EDS, "LDS": LDS, "RDS": RDS}
    types = {t: dict(BASE.versions(t)) for t in (CDS, EDS, LDS, RDS)}
    for short, versions in changes.items():
        types[names[short]] = versions
    eds = {name: name for name in types[CDS]}
    return View(types, eds=eds)


def test_legacy_empty_first_request_is_a_wildcard() -> None:
    stream = DeltaStream()
    actions = stream.receive(delta(CDS), BASE)
    assert Subscribed(CDS, True, ()) in actions
    assert dict(only_send(actions).resources) == {"a": "c1", "b": "c1"}


def test_explicit_star_subscribes_and_unsubscribes_the_wildcard() -> None:
    stream = DeltaStream()
    send = only_send(stream.receive(delta(CDS, subscribe=("*",)), BASE))
    assert set(send.resources) == {"a", "b"}
    stream.receive(ack(send), BASE)
    stream.receive(delta(CDS, unsubscribe=("*",)), BASE)
    assert sends(stream.update(with_types(CDS={"a": "c1", "b": "c1", "z": "c1"}))) == []


def test_naming_resources_ends_legacy_form_but_keeps_the_wildcard() -> None:
    stream = DeltaStream()
    send = only_send(stream.receive(delta(CDS), BASE))
    stream.receive(ack(send), BASE)
    stream.receive(delta(CDS, subscribe=("a",)), BASE)
    later = only_send(stream.update(with_types(CDS={"a": "c1", "b": "c1", "z": "c1"})))
    assert dict(later.resources) == {"z": "c1"}


def test_first_wildcard_request_is_answered_even_with_nothing_to_send() -> None:
    send = only_send(DeltaStream().receive(delta(CDS), View({})))
    assert send.resources == {} and send.removed == ()


def test_everything_acked_is_synced() -> None:
    assert states(synced_stream(), BASE) == {"CDS": "SYNCED", "EDS": "SYNCED",
                                             "LDS": "SYNCED", "RDS": "SYNCED"}


def test_unknown_newly_subscribed_assignment_gets_silence_then_data_when_known() -> None:
    stream = synced_stream()
    assert stream.receive(delta(EDS, subscribe=("new",)), BASE) == [
        Subscribed(EDS, False, ("a", "b", "new"))]
    send = only_send(stream.update(with_types(EDS={"a": "e1", "b": "e1", "new": "e1"})))
    assert dict(send.resources) == {"new": "e1"} and send.removed == ()


def test_assignment_missing_from_snapshot_is_never_removed() -> None:
    stream = synced_stream()
    assert sends(stream.update(with_types(EDS={"a": "e1"}))) == []


def test_one_changed_assignment_is_the_only_one_sent() -> None:
    stream = synced_stream()
    send = only_send(stream.update(with_types(EDS={"a": "e1", "b": "e2"})))
    assert dict(send.resources) == {"b": "e2"}


def test_changed_cluster_gets_its_unchanged_assignment_again() -> None:
    stream = synced_stream()
    pushed = sends(stream.update(with_types(CDS={"a": "c2", "b": "c1"})))
    assert [(s.type_url, dict(s.resources)) for s in pushed] == [
        (CDS, {"a": "c2"}), (EDS, {"a": "e1"})]


def test_removals_come_after_additions_and_in_reverse_order() -> None:
    stream = synced_stream()
    view = with_types(CDS={"a": "c1"}, EDS={"a": "e1", "b": "e1"},
                      LDS={"other": "l1"}, RDS={"local": "r2"})
    pushed = [(s.type_url, sorted(s.resources), s.removed) for s in sends(stream.update(view))]
    assert pushed == [(LDS, ["other"], ()), (RDS, ["local"], ()),
                      (LDS, [], ("http",)), (CDS, [], ("b",))]


def test_listeners_routes_and_removals_wait_until_added_clusters_are_warm() -> None:
    # Envoy answers 503 for a route to a cluster it is still warming, and ACKs
    # the cluster response only once the new clusters have their endpoints.
    stream = synced_stream()
    view = with_types(CDS={"a": "c1", "c": "c1"}, EDS={"a": "e1", "b": "e1", "c": "e1"},
                      LDS={"other": "l1"}, RDS={"local": "r2"})
    cds = only_send(stream.update(view))
    assert (sorted(cds.resources), cds.removed) == (["c"], ())
    assert states(stream, view)["RDS"] == SyncState.STALE
    eds = only_send(stream.receive(delta(EDS, subscribe=("c",)), view))
    assert dict(eds.resources) == {"c": "e1"}
    stream.receive(ack(eds), view)
    released = [(s.type_url, sorted(s.resources), s.removed) for s in sends(stream.receive(ack(cds), view))]
    assert released == [(LDS, ["other"], ()), (RDS, ["local"], ()),
                        (LDS, [], ("http",)), (CDS, [], ("b",))]


def test_a_rejected_cluster_response_releases_the_routes_too() -> None:
    stream = synced_stream()
    view = with_types(CDS={"a": "c1", "b": "c1", "n": "bad"}, RDS={"local": "r2"})
    cds = only_send(stream.update(view))
    released = sends(stream.receive(delta(CDS, nonce=cds.nonce, error="bad cluster"), view))
    assert [s.type_url for s in released] == [RDS]


def test_reconnect_skips_what_envoy_holds_and_removes_what_is_gone() -> None:
    stream = DeltaStream()
    actions = stream.receive(delta(CDS, initial={"a": "c1", "b": "old", "gone": "c1"}), BASE)
    pushed = [(dict(s.resources), s.removed) for s in sends(actions)]
    assert pushed == [({"b": "c1"}, ()), ({}, ("gone",))]


def test_reconnect_with_everything_current_gets_one_empty_answer() -> None:
    send = only_send(DeltaStream().receive(delta(CDS, initial={"a": "c1", "b": "c1"}), BASE))
    assert send.resources == {} and send.removed == ()


def test_reconnect_resends_assignment_of_a_cluster_changed_meanwhile() -> None:
    # Envoy holds cluster a at an old version: it re-creates it on our answer
    # and waits for endpoints without asking again.
    held = {"a": "old", "b": "c1"}
    for order in ("cds-first", "eds-first"):
        stream = DeltaStream()
        cds_request = delta(CDS, initial=held)
        eds_request = delta(EDS, subscribe=("a", "b"), initial={"a": "e1", "b": "e1"})
        first, second = ((cds_request, eds_request) if order == "cds-first"
                         else (eds_request, cds_request))
        pushed = sends(stream.receive(first, BASE)) + sends(stream.receive(second, BASE))
        eds_sent = [dict(s.resources) for s in pushed if s.type_url == EDS]
        assert eds_sent == [{"a": "e1"}], order


def test_explicit_subscribe_of_a_held_name_is_answered() -> None:
    stream = synced_stream()
    send = only_send(stream.receive(delta(EDS, subscribe=("a",)), BASE))
    assert dict(send.resources) == {"a": "e1"}


def test_unsubscribed_name_is_forgotten_and_resent_on_resubscribe() -> None:
    stream = synced_stream()
    assert sends(stream.receive(delta(EDS, unsubscribe=("b",)), BASE)) == []
    assert sends(stream.update(with_types(EDS={"a": "e1", "b": "e9"}))) == []
    send = only_send(stream.receive(delta(EDS, subscribe=("b",)), BASE))
    assert dict(send.resources) == {"b": "e1"}


def test_nack_is_per_resource_and_survives_unrelated_acks() -> None:
    stream = synced_stream()
    bad_view = with_types(CDS={"a": "c1", "b": "c1", "bad": "x"})
    bad = only_send(stream.update(bad_view))
    assert stream.receive(delta(CDS, nonce=bad.nonce, error="invalid"), bad_view) == [
        Nack(CDS, bad.nonce, 13, "invalid", ("bad",))]
    assert stream.update(bad_view) == []
    other = with_types(CDS={"a": "c1", "b": "c1", "bad": "x", "d": "c1"})
    good = only_send(stream.update(other))
    assert dict(good.resources) == {"d": "c1"}
    assert stream.receive(ack(good), other) == [Ack(CDS, good.nonce, good.version)]
    status = next(s for s in stream.status(other) if s.type_url == CDS)
    assert (status.state, status.rejected, status.error) == (
        SyncState.REJECTED, ("bad",), "invalid")
    fixed = with_types(CDS={"a": "c1", "b": "c1", "bad": "y", "d": "c1"})
    retry = only_send(stream.update(fixed))
    stream.receive(ack(retry), fixed)
    assert states(stream, fixed)["CDS"] == SyncState.SYNCED


def test_unknown_nonce_is_stale() -> None:
    stream = synced_stream()
    assert stream.receive(delta(CDS, nonce="nope"), BASE) == [Stale(CDS, "nope")]


def test_subscription_before_any_snapshot_is_answered_on_first_snapshot() -> None:
    stream = DeltaStream()
    assert sends(stream.receive(delta(CDS), None)) == []
    assert sends(stream.receive(delta(EDS, subscribe=("a",)), None)) == []
    pushed = [(s.type_url, dict(s.resources)) for s in sends(stream.update(BASE))]
    assert pushed == [(CDS, {"a": "c1", "b": "c1"}), (EDS, {"a": "e1"})]


def test_reconnect_holding_current_endpoints_shows_synced_not_unsent() -> None:
    stream = DeltaStream()
    stream.receive(delta(CDS, initial={"a": "c1", "b": "c1"}), BASE)
    assert sends(stream.receive(delta(EDS, subscribe=("a", "b"), initial={"a": "e1", "b": "e1"}), BASE)) == []
    assert states(stream, BASE)["EDS"] == SyncState.SYNCED
    # Holding an old version is not in sync until the answer is ACKed.
    other = DeltaStream()
    other.receive(delta(CDS, initial={"a": "c1", "b": "c1"}), BASE)
    other.receive(delta(EDS, subscribe=("a", "b"), initial={"a": "old", "b": "e1"}), BASE)
    assert states(other, BASE)["EDS"] == SyncState.STALE
