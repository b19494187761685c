"""State-of-the-world xDS on one ADS stream (see `protocol` for the theory).

SotW specifics: every request carries the full list of names; the nonce tells
an ACK/NACK from a new request; a NACK carries the previous version. Cluster
and listener responses are the whole set (absence deletes); endpoint and route
responses may carry only what changed or was newly asked for, which Envoy
merges. When clusters are removed while other types change in the same push,
the first cluster response still holds the removed ones and a last one drops
them, so routes move away before their clusters disappear. When a push adds
clusters, listeners and routes (and any removal) follow once Envoy has
answered that cluster response, that is once the new clusters are warm.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from envoy.service.discovery.v3 import discovery_pb2

from malla.xds import resources
from malla.xds.protocol import (
    Ack,
    Action,
    Inflight,
    Nack,
    Send,
    SnapshotView,
    Stale,
    StreamBase,
    Subscribed,
    TypeState,
    error_of,
)


@dataclass(slots=True)
class _Plan:
    type_url: str
    state: Mapping[str, str]
    included: Mapping[str, str]
    version: str
    changed: tuple[str, ...]
    reconciled: str


class SotwStream(StreamBase):
    """Sans-IO machine for `StreamAggregatedResources`."""

    def receive(self, request: discovery_pb2.DiscoveryRequest,
                view: SnapshotView | None) -> list[Action]:
        """Handle one DiscoveryRequest; returns what to record and send."""
        actions = self._receive(request, view)
        if view is not None and self._warmed():
            actions += self.update(view)  # what waited for the clusters to warm
        return actions

    def _receive(self, request: discovery_pb2.DiscoveryRequest,
                 view: SnapshotView | None) -> list[Action]:
        type_url = request.type_url
        state = self._state(type_url)
        nonce = request.response_nonce
        names = tuple(request.resource_names)
        actions: list[Action] = []
        if nonce and nonce in state.inflight:
            actions.append(self._settle(type_url, state, nonce, request))
            if nonce != state.nonce:
                actions.append(Stale(type_url, nonce))
                return actions
            change = self._subscribe(type_url, state, names)
            if change is not None:
                actions.append(change[0])
                actions += self._answer(type_url, state, view, force=change[1], full=False)
            return actions
        if nonce and state.nonce and nonce != state.nonce:
            return [Stale(type_url, nonce)]
        initial = not nonce or not state.nonce
        if initial:
            state.acked_version = request.version_info
        change = self._subscribe(type_url, state, names)
        if change is not None:
            actions.append(change[0])
        # Same names at the latest nonce: Envoy re-created a cluster and asks
        # again. Answer in full even if nothing changed, or it stalls 15 s.
        full = initial or change is None
        added = change[1] if change is not None else frozenset()
        actions += self._answer(type_url, state, view, force=added, full=full)
        return actions

    def update(self, view: SnapshotView) -> list[Action]:
        """The snapshot changed: what to push, in make-before-break order."""
        plans: list[_Plan] = []
        added = False
        for type_url in self._requested_types():
            if (added or self._warming is not None) and type_url in resources.AFTER_WARM_CLUSTERS:
                continue
            state = self._types[type_url]
            plan = self._plan(type_url, state, view, force=frozenset(), full=state.unanswered)
            if plan is not None:
                plans.append(plan)
                if type_url == resources.CLUSTER:
                    self._force_eds(plan.changed, view)
                    added = any(name not in state.sent for name in plan.state)
        actions = self._commit_all(plans, routes_wait=added or self._warming is not None)
        if added:
            self._start_warming(actions)
        return actions

    # -- subscriptions ---------------------------------------------------

    def _subscribe(self, type_url: str, state: TypeState,
                   names: tuple[str, ...]) -> tuple[Subscribed, frozenset[str]] | None:
        first = not state.requested
        state.requested = True
        if first and not names and type_url in resources.WILDCARD_TYPES:
            state.legacy_wildcard = state.wildcard = True
            return Subscribed(type_url, True, ()), frozenset()
        if state.legacy_wildcard:
            if not names:
                return None
            state.legacy_wildcard = False
        wildcard = "*" in names
        explicit = frozenset(name for name in names if name != "*")
        if not first and wildcard == state.wildcard and explicit == state.names:
            return None
        added = explicit - state.names
        removed = state.names - explicit
        state.wildcard, state.names = wildcard, explicit
        state.reconciled = None
        if not wildcard:
            state.forget(removed)
        return Subscribed(type_url, wildcard, tuple(sorted(explicit))), added

    # -- planning and sending --------------------------------------------

    def _answer(self, type_url: str, state: TypeState, view: SnapshotView | None, *,
                force: frozenset[str], full: bool) -> list[Action]:
        if view is None:
            state.unanswered = state.unanswered or full
            state.force.update(force)
            return []
        plan = self._plan(type_url, state, view, force=force, full=full or state.unanswered)
        if plan is None:
            return []
        actions: list[Action] = [self._commit(plan)]
        if type_url == resources.CLUSTER and self._force_eds(plan.changed, view):
            endpoints = self._types[resources.ENDPOINT]
            if endpoints.requested:
                actions += self._answer(resources.ENDPOINT, endpoints, view,
                                        force=frozenset(), full=False)
        return actions

    def _plan(self, type_url: str, state: TypeState, view: SnapshotView, *,
              force: frozenset[str], full: bool) -> _Plan | None:
        type_version = view.type_version(type_url)
        if not full and not force and not state.force and state.reconciled == type_version:
            return None
        desired = view.versions(type_url)
        wanted = self.interest(state, desired)
        forced = (state.force | force) & wanted.keys()
        version = type_version if wanted is desired else resources.set_version(wanted)
        sent = state.sent
        if full or type_url in resources.FULL_STATE_TYPES:
            unchanged = not full and version == state.version and not forced
            included = wanted
        else:
            included = {name: v for name, v in wanted.items()
                        if sent.get(name) != v or name in forced}
            unchanged = not included
        if unchanged:
            state.reconciled = type_version
            state.force.clear()
            return None
        changed = tuple(name for name, v in included.items()
                        if name in sent and sent[name] != v)
        return _Plan(type_url, wanted, included, version, changed, type_version)

    def _commit_all(self, plans: list[_Plan], *, routes_wait: bool) -> list[Action]:
        """Commit in order; removed clusters stay until listeners and routes moved away.

        With ``routes_wait`` (clusters are warming) listeners and routes come
        in a later push, and so does the removal: it is left unreconciled.
        """
        actions: list[Action] = []
        final: _Plan | None = None
        for index, plan in enumerate(plans):
            state = self._types[plan.type_url]
            removed = [name for name in state.sent if name not in plan.state] if (
                plan.type_url == resources.CLUSTER and (routes_wait or index + 1 < len(plans))) else []
            if removed:
                held = dict(plan.state)
                held.update((name, state.sent[name]) for name in removed)
                if held != dict(state.sent):
                    actions.append(self._commit(_Plan(
                        plan.type_url, held, held, resources.set_version(held),
                        plan.changed, plan.reconciled)))
                if routes_wait:
                    state.reconciled = None
                else:
                    final = plan
                continue
            actions.append(self._commit(plan))
        if final is not None:
            actions.append(self._commit(final))
        return actions

    def _commit(self, plan: _Plan) -> Send:
        state = self._types[plan.type_url]
        nonce = self._next_nonce()
        complete = len(plan.included) == len(plan.state)
        content_id = plan.version if complete else (
            resources.set_version(plan.included) + ":" + plan.version)
        state.record(nonce, Inflight(plan.version, plan.state, plan.included))
        state.sent = plan.state
        state.force.clear()
        state.unanswered = False
        state.reconciled = plan.reconciled
        return Send(plan.type_url, nonce, plan.version, plan.included, (), content_id)

    # -- ACK / NACK ------------------------------------------------------

    def _settle(self, type_url: str, state: TypeState, nonce: str,
                request: discovery_pb2.DiscoveryRequest) -> Action:
        inflight = state.take_inflight(nonce)
        assert inflight is not None
        version_info = request.version_info
        if request.HasField("error_detail"):
            code, message = error_of(request.error_detail)
            state.acked_version = version_info
            rejected = state.record_nack(inflight, code=code, message=message)
            return Nack(type_url, nonce, code, message, rejected)
        state.acked_version = version_info or inflight.version
        if len(inflight.included) == len(inflight.state):
            # A whole set accepted: everything in it is applied, the rest deleted.
            state.acked = inflight.state
            state.clear_accepted(list(state.rejected))
        else:
            acked = {name: v for name, v in state.acked.items() if name in inflight.state}
            acked.update(inflight.included)
            state.acked = acked
            state.clear_accepted(inflight.included)
        return Ack(type_url, nonce, state.acked_version)
