"""EnvoyFilter: Istio's patches of generated Envoy config, applied as the last pass of translation.

What comes in: a proxy, the snapshot, and the resources ``generate`` built
for it. What goes out: the same resources with the patches of every
EnvoyFilter that applies to the proxy, in Istio's order. Nothing is mutated:
generated messages may be shared among proxies (``SharedGeneration``), so a
patched resource is a copy, and a resource no patch touched stays the very
same object.

Which EnvoyFilters apply (istiod's ``PushContext.EnvoyFilters``): those of
the root namespace (``MeshConfig.root_namespace``) to every proxy, those of
a proxy's own namespace to it; a ``workloadSelector`` narrows to workloads
with those labels, ``targetRefs`` to the named Kubernetes Gateway's proxies.
Order: each namespace's by ``priority``, then creation time, then name; all
together by priority, root namespace first among equals.

Which patches are applied: LISTENER, FILTER_CHAIN, NETWORK_FILTER,
HTTP_FILTER (``envoy_filters_listeners``), ROUTE_CONFIGURATION,
VIRTUAL_HOST, HTTP_ROUTE and CLUSTER. EXTENSION_CONFIG, BOOTSTRAP and
LISTENER_FILTER are not (``explain_envoy_filters`` says so). ``match.context`` says which
side: a sidecar's INBOUND listeners, ``inbound|`` routes and clusters are
SIDECAR_INBOUND, the rest SIDECAR_OUTBOUND; a router's are GATEWAY.
``match.proxy.proxyVersion`` is matched against ``ENVOY_VERSION``.

A patch that cannot apply (its value does not parse, a MERGE of types that
do not fit, a ``proxy.metadata`` match malla cannot evaluate) is skipped,
never stopping the push; ``explain_envoy_filters`` lists what applied and
what was skipped and why, for one proxy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import re2
from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf.message import Message

from malla.api.networking.envoy_filter import EnvoyConfigObjectMatch
from malla.config.model import Config
from malla.pilot import names
from malla.pilot.envoy_filters_listeners import patch_listeners
from malla.pilot.envoy_filters_model import CompiledPatch, Memo, Problem, Tally
from malla.pilot.envoy_filters_routes import patch_route_configurations
from malla.pilot.envoy_filters_values import PatchValueError, copy_of, merge_message, parse_value
from malla.pilot.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from malla.pilot.services import labels_match
from malla.pilot.shared import SharedGeneration
from malla.pilot.snapshot import MeshSnapshot, Proxy

KIND = "EnvoyFilter"
ENVOY_VERSION = "1.40.0"  # what match.proxy.proxyVersion is matched against: malla's proxies run Envoy 1.40
NOT_APPLIED = frozenset({"EXTENSION_CONFIG", "BOOTSTRAP", "LISTENER_FILTER"})  # skipped, with a reason
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
Resources = dict[str, dict[str, Message]]


@dataclass(frozen=True)
class EnvoyFilterReport:
    """``explain_envoy_filters``: the EnvoyFilters of a proxy, the patches applied and those skipped."""

    filters: tuple[str, ...]
    applied: tuple[str, ...]
    problems: tuple[Problem, ...]


# --- which EnvoyFilters, in which order ----------------------------------------------------


def applicable_envoy_filters(proxy: Proxy, snapshot: MeshSnapshot) -> tuple[Config, ...]:
    """The EnvoyFilters that apply to ``proxy``, in the order their patches apply."""
    root = snapshot.mesh.root_namespace
    spaces = [root] if proxy.namespace == root else [root, proxy.namespace]
    found: list[Config] = []
    for namespace in spaces:
        own = [c for c in snapshot.configs_of(KIND, namespace) if _selects(c, proxy)]
        found += sorted(own, key=lambda c: (c.spec.priority or 0, _created(c), c.name))
    return tuple(sorted(found, key=lambda c: c.spec.priority or 0))  # stable: root namespace first among equals


def _selects(config: Config, proxy: Proxy) -> bool:
    spec = config.spec
    if spec.target_refs:
        gateway = proxy.labels.get(GATEWAY_NAME_LABEL)
        return gateway is not None and any(
            ref.kind == "Gateway" and ref.name == gateway and config.namespace == proxy.namespace
            for ref in spec.target_refs
        )
    selector = spec.workload_selector
    return selector is None or not selector.labels or labels_match(selector.labels, proxy.labels)


def _created(config: Config) -> str:
    value = (config.raw.get("metadata") or {}).get("creationTimestamp") if isinstance(config.raw, dict) else None
    return "" if value is None else str(value)


# --- patches, compiled once per snapshot ---------------------------------------------------


def compile_patches(config: Config) -> tuple[tuple[CompiledPatch, ...], tuple[Problem, ...]]:
    """The patches of one EnvoyFilter malla applies, and why the others are not."""
    out: list[CompiledPatch] = []
    problems: list[Problem] = []
    for i, cp in enumerate(config.spec.config_patches):
        where = f"{config.ref} spec.configPatches[{i}]"
        apply_to = cp.apply_to or "INVALID"
        operation = (cp.patch.operation if cp.patch else None) or "INVALID"
        match = cp.match or EnvoyConfigObjectMatch()
        skip = _skip_reason(apply_to, operation, match)
        if skip is not None:
            if skip:
                problems.append(Problem(where, skip))
            continue
        try:
            value = None if operation == "REMOVE" else parse_value(apply_to, cp.patch.value)  # type: ignore[union-attr]
        except PatchValueError as exc:
            problems.append(Problem(f"{where}.patch.value", str(exc)))
            continue
        filter_class = (cp.patch.filter_class if cp.patch else None) or ""
        out.append(CompiledPatch(where, apply_to, operation, match.context or "ANY", match, value,
                                 "" if filter_class == "UNSPECIFIED" else filter_class))
    return tuple(out), tuple(problems)


def _skip_reason(apply_to: str, operation: str, match: EnvoyConfigObjectMatch) -> str | None:
    """Why a patch is not applied ("" when it simply does not match this proxy); None to apply it."""
    if apply_to == "INVALID" or operation == "INVALID":
        return "applyTo and patch.operation are required"
    if apply_to in NOT_APPLIED:
        return f"applyTo {apply_to} is not applied by malla"
    if match.context == "WAYPOINT" or match.waypoint is not None:
        return "context WAYPOINT: malla runs no waypoint proxies"
    proxy = match.proxy
    if proxy is not None and proxy.metadata:
        return "match.proxy.metadata is not supported: malla's proxies carry no Istio node metadata"
    if proxy is not None and proxy.proxy_version and not re2.search(proxy.proxy_version, ENVOY_VERSION):
        return ""
    return None


def _compiled(config: Config, shared: SharedGeneration | None) -> tuple[tuple[CompiledPatch, ...], tuple[Problem, ...]]:
    if shared is None:
        return compile_patches(config)
    return shared.get(("envoyfilter-patches", config.namespace, config.name), lambda: compile_patches(config))


# --- the pass ----------------------------------------------------------------------------------


def apply_envoy_filters(
    proxy: Proxy,
    snapshot: MeshSnapshot,
    resources: Resources,
    *,
    shared: SharedGeneration | None = None,
    endpoints: Callable[[Iterable[str]], dict[str, Message]] | None = None,
) -> Resources:
    """``resources`` with the EnvoyFilters of ``proxy`` applied; the very same dict when none applies.

    ``endpoints`` builds the assignments of EDS clusters that patches add.
    """
    return _apply(proxy, snapshot, resources, shared=shared, endpoints=endpoints, tally=Tally())[0]


def explain_envoy_filters(proxy: Proxy, snapshot: MeshSnapshot, resources: Resources) -> EnvoyFilterReport:
    """What the EnvoyFilters of ``proxy`` do to ``resources`` (as generated before them): applied, skipped."""
    tally = Tally()
    filters = _apply(proxy, snapshot, resources, shared=None, endpoints=None, tally=tally)[1]
    return EnvoyFilterReport(filters=tuple(c.ref for c in filters), applied=tuple(sorted(tally.applied)),
                             problems=tuple(tally.problems))


def _apply(
    proxy: Proxy,
    snapshot: MeshSnapshot,
    resources: Resources,
    *,
    shared: SharedGeneration | None,
    endpoints: Callable[[Iterable[str]], dict[str, Message]] | None,
    tally: Tally,
) -> tuple[Resources, tuple[Config, ...]]:
    filters = applicable_envoy_filters(proxy, snapshot)
    patches: list[CompiledPatch] = []
    for config in filters:
        compiled, problems = _compiled(config, shared)
        patches += compiled
        tally.problems += problems
    if not patches:
        return resources, filters
    # Patched copies of shared messages are shared too, by everything their result depends on.
    memo = Memo(shared, (proxy.kind, tuple((c.namespace, c.name) for c in filters)))
    out = dict(resources)
    out[CLUSTER] = _patch_clusters(proxy, resources.get(CLUSTER, {}), patches, memo=memo, tally=tally)
    out[ROUTE] = patch_route_configurations(
        proxy, resources.get(ROUTE, {}), patches, memo=memo, tally=tally
    )
    out[LISTENER] = patch_listeners(proxy, resources.get(LISTENER, {}), patches, memo=memo, tally=tally)
    if out[CLUSTER] is not resources.get(CLUSTER) and ENDPOINT in resources:
        out[ENDPOINT] = _assignments(out[CLUSTER], resources[ENDPOINT], endpoints)
    return out, filters


def _assignments(
    clusters: dict[str, Message],
    before: dict[str, Message],
    build: Callable[[Iterable[str]], dict[str, Message]] | None,
) -> dict[str, Message]:
    """The assignments of the EDS clusters left after patching; built for the clusters patches added."""
    wanted = sorted({
        c.eds_cluster_config.service_name or c.name  # type: ignore[attr-defined]
        for c in clusters.values()
        if c.type == cluster_pb2.Cluster.EDS  # type: ignore[attr-defined]
    })
    out = {n: before[n] for n in wanted if n in before}
    missing = [n for n in wanted if n not in out]
    if missing and build is not None:
        out.update(build(missing))
    return dict(sorted(out.items()))


# --- clusters ----------------------------------------------------------------------------------


def cluster_context(proxy: Proxy, name: str) -> str:
    if proxy.is_router:
        return "GATEWAY"
    return "SIDECAR_INBOUND" if name.startswith("inbound|") else "SIDECAR_OUTBOUND"


def _patch_clusters(
    proxy: Proxy, clusters: dict[str, Message], patches: list[CompiledPatch], *, memo: Memo, tally: Tally
) -> dict[str, Message]:
    mine = [p for p in patches if p.apply_to == "CLUSTER"]
    if not mine:
        return clusters
    out: dict[str, Message] = {}
    for name, cluster in clusters.items():
        context = cluster_context(proxy, name)
        fitting = [p for p in mine if p.fits(context) and _cluster_matches(name, p)]
        if not fitting:
            out[name] = cluster
            continue
        for p in fitting:
            tally.hit(p)
        patched = memo.patched(cluster, lambda c, ps=fitting: _patch_cluster(c, ps, tally=tally))
        if patched is not None:
            out[patched.name] = patched  # type: ignore[attr-defined]
    for p in mine:
        contexts = ("ANY", "GATEWAY") if proxy.is_router else ("ANY", "SIDECAR_OUTBOUND", "SIDECAR_INBOUND")
        if p.operation == "ADD" and p.context in contexts and p.value is not None:
            tally.hit(p)
            out[p.value.name] = copy_of(p.value)  # type: ignore[attr-defined]
    return dict(sorted(out.items()))


def _patch_cluster(cluster: Message, patches: list[CompiledPatch], *, tally: Tally) -> Message | None:
    out = copy_of(cluster)
    for p in patches:
        if p.operation == "REMOVE":
            return None
        if p.operation in ("MERGE", "MERGE_AND_REPLACE_LIST") and p.value is not None:
            merge_message(out, p.value, replace_lists=p.operation == "MERGE_AND_REPLACE_LIST")
        elif p.operation != "ADD":
            tally.skip(p, f"operation {p.operation} does not apply to a cluster: use MERGE, ADD or REMOVE")
    return out


def _cluster_matches(name: str, patch: CompiledPatch) -> bool:
    match = patch.match.cluster
    if patch.operation == "ADD":
        return False
    if match is None:
        return True
    if match.name:
        return match.name == name
    try:
        key = names.parse_cluster_name(name)
    except ValueError:
        return not (match.subset or match.service or match.port_number)
    return (
        (not match.subset or match.subset == key.subset)
        and (not match.service or match.service == key.host)
        and (not match.port_number or match.port_number == key.port)
    )
