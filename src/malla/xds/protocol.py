"""The xDS protocol of one ADS stream, as a sans-IO state machine (like h11).

Theory of operation
-------------------
A stream machine (`SotwStream` in `sotw.py`, `DeltaStream` in `delta.py`) is
fed two kinds of events and answers each with a list of actions:

- `receive(request, view)`: Envoy sent a DiscoveryRequest or
  DeltaDiscoveryRequest. The machine records ACKs and NACKs (per resource:
  a NACK can be partial), subscription changes, ignores stale nonces, and
  decides what to send back.
- `update(view)`: the node's snapshot changed. The machine decides what to
  push, in make-before-break order (`resources.PUSH_ORDER`; removals last and
  in reverse order).

A `view` is what the node should have now: for each type URL, the resource
names and their content-hash versions (`SnapshotView`). The machine never sees
resource bodies: a `Send` names (name, version) pairs and the adapter fetches
the serialized bodies. No sockets, no asyncio, no clock; nonces come from a
counter. `status(view)` says, per type, whether Envoy is SYNCED, STALE, NOT
SENT or REJECTED (with Envoy's error text and the rejected names).

Rules taken from measurements of real Envoy (see the field notes):
- initial requests are always answered;
- a request carrying the latest, already answered nonce is a re-request (an
  EDS cluster was re-created) and is answered even if nothing changed;
- when a cluster changes, its ClusterLoadAssignment is sent again in the same
  push: Envoy re-creates the cluster and waits for endpoints;
- in Delta, a newly subscribed name the snapshot lacks gets silence, never a
  removal (that would make a cluster go live with no hosts);
- EDS is never held back waiting for the CDS ACK (they wait on each other);
  listeners and routes are, when the push added clusters: Envoy answers 503
  for a route to a cluster that is still warming.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from malla.xds import resources

_MAX_INFLIGHT = 64


class SnapshotView(Protocol):
    """What a node should hold now, by type URL: resource names and versions."""

    def versions(self, type_url: str) -> Mapping[str, str]:
        """name -> content version; empty when the snapshot lacks the type."""

    def type_version(self, type_url: str) -> str:
        """`resources.set_version(versions(type_url))`, computed once per snapshot."""

    def eds_name(self, cluster_name: str) -> str | None:
        """The assignment name an EDS cluster subscribes to, else None."""


class ProtocolError(ValueError):
    """Envoy sent something the protocol does not allow (the stream is ended)."""


# -- actions ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send one response: these resources (name, version), these removals."""

    type_url: str
    nonce: str
    version: str
    resources: tuple[tuple[str, str], ...]
    removed: tuple[str, ...] = ()
    # Identifies the body without the nonce, so equal bodies are built once.
    content_id: str = ""


@dataclass(frozen=True, slots=True)
class Ack:
    type_url: str
    nonce: str
    version: str


@dataclass(frozen=True, slots=True)
class Nack:
    type_url: str
    nonce: str
    code: int
    message: str
    rejected: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Stale:
    """A request answering a superseded response: recorded, not answered."""

    type_url: str
    nonce: str


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The subscription of a type changed."""

    type_url: str
    wildcard: bool
    names: tuple[str, ...]


Action = Send | Ack | Nack | Stale | Subscribed


# -- status -------------------------------------------------------------------


class SyncState(enum.StrEnum):
    SYNCED = "SYNCED"
    STALE = "STALE"
    NOT_SENT = "NOT SENT"
    REJECTED = "REJECTED"


@dataclass(frozen=True, slots=True)
class TypeStatus:
    type_url: str
    state: SyncState
    wildcard: bool
    subscribed: int
    sent_version: str
    acked_version: str
    nonce: str
    error: str | None
    rejected: tuple[str, ...]
    responses: int
    nacks: int

    @property
    def short_name(self) -> str:
        return resources.short_name(self.type_url)


# -- shared bookkeeping -------------------------------------------------------


@dataclass(slots=True)
class Inflight:
    """A response Envoy has not ACKed or NACKed yet."""

    version: str
    state: Mapping[str, str]
    included: Mapping[str, str]
    removed: tuple[str, ...] = ()


@dataclass(slots=True)
class TypeState:
    """Everything one stream knows about one type URL."""

    requested: bool = False
    wildcard: bool = False
    legacy_wildcard: bool = False
    names: frozenset[str] = frozenset()
    # What Envoy holds or is evaluating, as far as this server knows. Never
    # mutated in place: it may be a snapshot's own mapping, shared by streams.
    sent: Mapping[str, str] = field(default_factory=dict)
    acked: Mapping[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    inflight: dict[str, Inflight] = field(default_factory=dict)
    # Names to send at the next opportunity even if unchanged.
    force: set[str] = field(default_factory=set)
    # An initial request could not be answered yet (no snapshot).
    unanswered: bool = False
    # type_version of the view this type was last reconciled against.
    reconciled: str | None = None
    nonce: str = ""
    version: str = ""
    acked_version: str = ""
    error: str | None = None
    error_code: int = 0
    responses: int = 0
    nacks: int = 0
    # (view type version, acked mapping, names, wildcard, state): status() asked for thousands
    # of streams at once must not compare thousands of versions each time nothing changed.
    sync_memo: tuple[Any, ...] | None = None

    def record(self, nonce: str, inflight: Inflight) -> None:
        self.inflight[nonce] = inflight
        while len(self.inflight) > _MAX_INFLIGHT:
            del self.inflight[next(iter(self.inflight))]
        self.nonce = nonce
        self.version = inflight.version
        self.responses += 1

    def take_inflight(self, nonce: str) -> Inflight | None:
        """Pop the response answered by `nonce`, and older ones.

        Envoy answers responses in the order it got them, so older ones still
        here were answered by requests that were lost or superseded.
        """
        if nonce not in self.inflight:
            return None
        while True:
            key, value = next(iter(self.inflight.items()))
            del self.inflight[key]
            if key == nonce:
                return value

    def record_nack(self, inflight: Inflight, *, code: int, message: str) -> tuple[str, ...]:
        # Envoy does not say which resource it rejected: suspect every one
        # in the response that it had not accepted before at that version.
        suspects = {name: version for name, version in inflight.included.items()
                    if self.acked.get(name) != version}
        self.rejected.update(suspects)
        self.error = message
        self.error_code = code
        self.nacks += 1
        return tuple(sorted(suspects))

    def clear_accepted(self, names: Iterable[str]) -> None:
        for name in names:
            self.rejected.pop(name, None)
        if not self.rejected:
            self.error = None
            self.error_code = 0

    def forget(self, names: Iterable[str]) -> None:
        """Envoy dropped these names (unsubscribed): forget what it held."""
        names = {name for name in names if name in self.sent or name in self.acked}
        if not names:
            return
        self.sent = {k: v for k, v in self.sent.items() if k not in names}
        self.acked = {k: v for k, v in self.acked.items() if k not in names}
        for name in names:
            self.rejected.pop(name, None)
        if not self.rejected:
            self.error = None


class StreamBase:
    """Nonces, type states and status shared by the SotW and Delta machines."""

    def __init__(self, *, nonce_prefix: str = "") -> None:
        self._nonce_prefix = nonce_prefix
        self._counter = 0
        self._types: dict[str, TypeState] = {}
        # Nonce of the cluster response that added clusters Envoy is warming.
        self._warming: str | None = None

    def _next_nonce(self) -> str:
        self._counter += 1
        return f"{self._nonce_prefix}{self._counter}"

    def _state(self, type_url: str) -> TypeState:
        if not type_url:
            raise ProtocolError("request has an empty type_url")
        state = self._types.get(type_url)
        if state is None:
            state = self._types[type_url] = TypeState()
        return state

    def _requested_types(self) -> list[str]:
        return sorted((t for t, s in self._types.items() if s.requested), key=resources.push_rank)

    def interest(self, state: TypeState, desired: Mapping[str, str]) -> Mapping[str, str]:
        """The part of `desired` this stream subscribes to."""
        if state.wildcard:
            return desired
        subset = {name: desired[name] for name in state.names if name in desired}
        # Equal sizes mean equal content: reuse the snapshot's own mapping,
        # which is shared by every stream and has a precomputed version.
        return desired if len(subset) == len(desired) else subset

    def _start_warming(self, actions: list[Action]) -> None:
        """Hold listeners and routes until Envoy answers the cluster response in `actions`."""
        nonces = [a.nonce for a in actions if isinstance(a, Send) and a.type_url == resources.CLUSTER]
        if nonces:
            self._warming = nonces[-1]

    def _warmed(self) -> bool:
        """True once, when Envoy has answered the response whose clusters were warming.

        Envoy ACKs (or NACKs) a cluster response only when its new clusters have
        their endpoints; an answer to a later response answers it too.
        """
        if self._warming is None:
            return False
        clusters = self._types.get(resources.CLUSTER)
        if clusters is not None and self._warming in clusters.inflight:
            return False
        self._warming = None
        return True

    def _force_eds(self, clusters: Iterable[str], view: SnapshotView) -> set[str]:
        """Mark the assignments of changed clusters for re-sending."""
        names = {eds for c in clusters if (eds := view.eds_name(c)) is not None}
        if names:
            self._state(resources.ENDPOINT).force.update(names)
        return names

    def status(self, view: SnapshotView | None) -> list[TypeStatus]:
        """Per requested type: SYNCED, STALE, NOT SENT or REJECTED."""
        result = []
        for type_url in self._requested_types():
            state = self._types[type_url]
            result.append(TypeStatus(
                type_url=type_url, state=self._remembered_state(type_url, state, view),
                wildcard=state.wildcard, subscribed=len(state.names),
                sent_version=state.version, acked_version=state.acked_version,
                nonce=state.nonce, error=state.error,
                rejected=tuple(sorted(state.rejected)),
                responses=state.responses, nacks=state.nacks))
        return result

    def _remembered_state(self, type_url: str, state: TypeState, view: SnapshotView | None) -> SyncState:
        if view is None or state.inflight or state.rejected or state.responses == 0:
            desired = self.interest(state, view.versions(type_url)) if view else None
            return self._sync_state(state, desired)
        key = (view.type_version(type_url), state.names, state.wildcard)
        memo = state.sync_memo
        if memo is not None and memo[0] == key and memo[1] is state.acked:
            return memo[2]  # type: ignore[no-any-return]
        result = self._sync_state(state, self.interest(state, view.versions(type_url)))
        state.sync_memo = (key, state.acked, result)
        return result

    @staticmethod
    def _sync_state(state: TypeState, desired: Mapping[str, str] | None) -> SyncState:
        # A Delta stream that reconnects tells what Envoy holds (initial_resource_versions):
        # when that is current, nothing is sent and yet the proxy is in sync.
        if state.responses == 0 and not state.acked:
            return SyncState.NOT_SENT
        if state.rejected:
            return SyncState.REJECTED
        if state.inflight or desired is None:
            return SyncState.STALE
        if state.wildcard:
            return SyncState.SYNCED if dict(state.acked) == dict(desired) else SyncState.STALE
        # By name, Envoy may still ask for what the snapshot dropped (a draining listener's
        # route): that is not ours to sync. Every name we do have must be ACKed at its version.
        acked = state.acked
        return SyncState.SYNCED if all(acked.get(n) == v for n, v in desired.items()) else SyncState.STALE


def error_of(detail: object) -> tuple[int, str]:
    """(code, message) of a google.rpc.Status error_detail."""
    return int(getattr(detail, "code", 0)), str(getattr(detail, "message", ""))
