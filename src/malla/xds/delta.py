"""Delta (incremental) xDS on one ADS stream (see `protocol` for the theory).

Delta specifics: requests carry subscription changes, not full lists; an ACK
is a nonce without `error_detail`; requests without a nonce only change the
subscription. The first wildcard request is the legacy empty form, and `"*"`
subscribes or unsubscribes the wildcard explicitly. On reconnect Envoy lists
what it holds (`initial_resource_versions`): with content-hash versions the
unchanged resources are not sent again.

Removals are sent only for wildcard subscriptions (clusters, listeners), after
all additions and in reverse push order. A push that adds clusters sends
listeners, routes and removals only once Envoy has answered its cluster
response, that is once the new clusters are warm. Endpoints, routes and secrets are
never removed by the server: Envoy drops them when their parent goes, and a
removal for a name the snapshot does not know yet would make a cluster go
live with no hosts.
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
    version: str
    updates: Mapping[str, str]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    reconciled: str
    always: bool


class DeltaStream(StreamBase):
    """Sans-IO machine for `DeltaAggregatedResources`."""

    def receive(self, request: discovery_pb2.DeltaDiscoveryRequest,
                view: SnapshotView | None) -> list[Action]:
        """Handle one DeltaDiscoveryRequest; returns what to record and send."""
        actions = self._receive(request, view)
        if view is not None and self._warmed():
            actions += self.update(view)  # what waited for the clusters to warm
        return actions

    def _receive(self, request: discovery_pb2.DeltaDiscoveryRequest,
                 view: SnapshotView | None) -> list[Action]:
        type_url = request.type_url
        state = self._state(type_url)
        actions: list[Action] = []
        nonce = request.response_nonce
        if nonce:
            if nonce in state.inflight:
                actions.append(self._settle(type_url, state, nonce, request))
            else:
                actions.append(Stale(type_url, nonce))
        subscribe = list(request.resource_names_subscribe)
        unsubscribe = list(request.resource_names_unsubscribe)
        first = not state.requested
        if not (first or subscribe or unsubscribe):
            return actions
        initial = dict(request.initial_resource_versions) if first else {}
        change, added = self._subscribe(type_url, state, subscribe, unsubscribe,
                                        first=first, initial=initial)
        actions.append(change)
        actions += self._answer(type_url, state, view, force=added, always=first)
        return actions

    def update(self, view: SnapshotView) -> list[Action]:
        """The snapshot changed: additions in push order, then removals reversed.

        When clusters are added, listeners and routes, and every removal,
        wait until Envoy has answered that cluster response (they are warm).
        """
        plans: list[_Plan] = []
        added = False
        for type_url in self._requested_types():
            if (added or self._warming is not None) and type_url in resources.AFTER_WARM_CLUSTERS:
                continue
            state = self._types[type_url]
            plan = self._plan(type_url, state, view, force=frozenset(),
                              always=state.unanswered)
            if plan is not None:
                plans.append(plan)
                if type_url == resources.CLUSTER:
                    self._force_eds(plan.changed, view)
                    added = any(name not in state.sent for name in plan.updates)
        actions: list[Action] = []
        for plan in plans:
            if plan.updates or plan.always:
                actions.append(self._commit(plan, updates=plan.updates, removed=()))
        if added or self._warming is not None:
            for plan in plans:
                if plan.removed:
                    self._types[plan.type_url].reconciled = None  # removed in a later push
            if added:
                self._start_warming(actions)
            return actions
        for plan in reversed(plans):
            if plan.removed:
                actions.append(self._commit(plan, updates={}, removed=plan.removed))
        return actions

    # -- subscriptions ---------------------------------------------------

    def _subscribe(self, type_url: str, state: TypeState, subscribe: list[str],
                   unsubscribe: list[str], *, first: bool,
                   initial: dict[str, str]) -> tuple[Subscribed, frozenset[str]]:
        if first:
            state.requested = True
            state.legacy_wildcard = not subscribe and type_url in resources.WILDCARD_TYPES
            state.wildcard = state.legacy_wildcard
        elif state.legacy_wildcard and subscribe:
            # Naming resources ends the legacy form; the wildcard itself stays.
            state.legacy_wildcard = False
        names = set(state.names)
        added: set[str] = set()
        for name in subscribe:
            if name == "*":
                state.wildcard = True
            else:
                names.add(name)
                added.add(name)
        dropped: set[str] = set()
        for name in unsubscribe:
            if name == "*":
                state.wildcard = state.legacy_wildcard = False
            else:
                names.discard(name)
                dropped.add(name)
        state.names = frozenset(names)
        state.reconciled = None
        state.forget(dropped)
        state.force.difference_update(dropped)
        if initial:
            # What Envoy already holds: unchanged versions are not sent again.
            state.sent = dict(initial)
            state.acked = dict(initial)
            added -= initial.keys()
        return Subscribed(type_url, state.wildcard, tuple(sorted(names))), frozenset(added)

    # -- planning and sending --------------------------------------------

    def _answer(self, type_url: str, state: TypeState, view: SnapshotView | None, *,
                force: frozenset[str], always: bool) -> list[Action]:
        if view is None:
            state.unanswered = state.unanswered or always
            state.force.update(force)
            return []
        plan = self._plan(type_url, state, view, force=force,
                          always=always or state.unanswered)
        if plan is None:
            return []
        actions: list[Action] = []
        if plan.updates or plan.always:
            actions.append(self._commit(plan, updates=plan.updates, removed=()))
        if type_url == resources.CLUSTER and self._force_eds(plan.changed, view):
            endpoints = self._types[resources.ENDPOINT]
            if endpoints.requested:
                actions += self._answer(resources.ENDPOINT, endpoints, view,
                                        force=frozenset(), always=False)
        if plan.removed:
            actions.append(self._commit(plan, updates={}, removed=plan.removed))
        return actions

    def _plan(self, type_url: str, state: TypeState, view: SnapshotView, *,
              force: frozenset[str], always: bool) -> _Plan | None:
        # Only a wildcard type with nothing to say still answers its first request.
        always = always and state.wildcard
        type_version = view.type_version(type_url)
        if (not always and not force and not state.force
                and state.reconciled == type_version):
            return None
        desired = view.versions(type_url)
        wanted = self.interest(state, desired)
        forced = (state.force | force) & wanted.keys()
        sent = state.sent
        updates = {name: v for name, v in wanted.items()
                   if sent.get(name) != v or name in forced}
        removed = tuple(sorted(name for name in sent if name not in desired)) \
            if state.wildcard else ()
        state.reconciled = type_version
        state.force.clear()
        state.unanswered = False
        if not (updates or removed or always):
            return None
        changed = tuple(name for name in updates if name in sent and sent[name] != updates[name])
        return _Plan(type_url, type_version, updates, removed, changed, type_version, always)

    def _commit(self, plan: _Plan, *, updates: Mapping[str, str],
                removed: tuple[str, ...]) -> Send:
        state = self._types[plan.type_url]
        nonce = self._next_nonce()
        if removed:
            held = {name: v for name, v in state.sent.items() if name not in removed}
        else:
            held = {**state.sent, **updates}
        state.sent = held
        state.record(nonce, Inflight(plan.version, held, updates, removed))
        content_id = plan.version + ":" + resources.set_version(
            list(updates.items()) + [(name, "-") for name in removed])
        return Send(plan.type_url, nonce, plan.version, updates, removed, content_id)

    # -- ACK / NACK ------------------------------------------------------

    def _settle(self, type_url: str, state: TypeState, nonce: str,
                request: discovery_pb2.DeltaDiscoveryRequest) -> Action:
        inflight = state.take_inflight(nonce)
        assert inflight is not None
        if request.HasField("error_detail"):
            code, message = error_of(request.error_detail)
            rejected = state.record_nack(inflight, code=code, message=message)
            return Nack(type_url, nonce, code, message, rejected)
        acked = {name: v for name, v in state.acked.items() if name not in inflight.removed}
        acked.update(inflight.included)
        state.acked = acked
        state.acked_version = inflight.version
        state.clear_accepted([*inflight.included, *inflight.removed])
        return Ack(type_url, nonce, inflight.version)
