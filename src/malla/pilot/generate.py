"""Everything one proxy needs, in one call: ``generate(proxy, snapshot)``.

Returns ``{type_url: {name: proto}}`` for clusters, endpoints (the EDS
clusters' assignments), listeners and route configurations, each map sorted
by name and each resource built deterministically, so that equal inputs give
byte-equal output. Secrets are not generated here: the CA and the agent
serve them. The ``*_needs_push`` predicates say, for a ``Change``, which
types a proxy must get again, so that an endpoint change rebuilds no
listener (Istio's ``cdsNeedsPush`` and friends).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf.message import Message

from malla.pilot.clusters import build_clusters, build_outbound_clusters
from malla.pilot.endpoints import build_cluster_load_assignment
from malla.pilot.envoy_filters import apply_envoy_filters
from malla.pilot.listeners import build_listeners
from malla.pilot.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from malla.pilot import names
from malla.pilot.listeners_outbound import outbound_port
from malla.pilot.routes import RouteConfiguration, build_outbound_routes, build_routes
from malla.pilot.shared import SharedGeneration
from malla.pilot.sidecar_scope import SidecarScope, build_scope
from malla.pilot.snapshot import CaptureMode, MeshSnapshot, Proxy
from malla.policy.authn import build_authn_clusters

Resources = dict[str, dict[str, Message]]


def generate(proxy: Proxy, snapshot: MeshSnapshot, *, shared: SharedGeneration | None = None) -> Resources:
    """``shared``: the memo of this snapshot, so that proxies of one class share what they would build alike."""
    if shared is None or shared.snapshot is not snapshot:
        shared = SharedGeneration(snapshot, labels_matter=True)
    key = shared.outbound_key(proxy)
    scope = shared.get(("scope", key), lambda: build_scope(proxy, snapshot))
    outbound = shared.get(("cds", key), lambda: build_outbound_clusters(proxy, snapshot, scope))
    clusters = build_clusters(proxy, snapshot, scope=scope, outbound=outbound)
    # Envoy fetches RequestAuthentication's remote JWKS through clusters of its own.
    clusters = sorted([*clusters, *build_authn_clusters(proxy, snapshot)], key=lambda c: c.name)
    eds = [c.eds_cluster_config.service_name or c.name for c in clusters if c.type == cluster_pb2.Cluster.EDS]
    routes = None if proxy.is_router else _outbound_routes(proxy, snapshot, scope, shared=shared, key=key)
    resources: Resources = {
        CLUSTER: {c.name: c for c in clusters},
        ENDPOINT: build_endpoint_map(proxy, snapshot, eds, shared=shared),
        LISTENER: {x.name: x for x in build_listeners(proxy, snapshot, scope=scope)},
        ROUTE: {r.name: r for r in build_routes(proxy, snapshot, scope=scope, outbound=routes)},
    }
    # EnvoyFilters come last, as in istiod: they patch what everything else generated (copies, never shared ones).
    return apply_envoy_filters(
        proxy, snapshot, resources, shared=shared,
        endpoints=lambda eds_names: build_endpoint_map(proxy, snapshot, eds_names, shared=shared),
    )


def _outbound_routes(
    proxy: Proxy, snapshot: MeshSnapshot, scope: SidecarScope, *, shared: SharedGeneration, key: tuple[Any, ...]
) -> list[RouteConfiguration]:
    """Outbound routes of the proxy's class; renamed when its HTTP proxy port (which names the route) differs."""
    routes = shared.get(("rds", key), lambda: build_outbound_routes(proxy, snapshot, scope))
    if proxy.capture is CaptureMode.TRANSPARENT or len(routes) != 1:
        return routes
    name = names.outbound_route_name(outbound_port(proxy, snapshot))
    if routes[0].name == name:
        return routes
    return [shared.get(("rds-named", key, name), lambda: _renamed(routes[0], name))]


def _renamed(route: RouteConfiguration, name: str) -> RouteConfiguration:
    copy = RouteConfiguration()
    copy.CopyFrom(route)
    copy.name = name
    return copy


def build_endpoint_map(
    proxy: Proxy, snapshot: MeshSnapshot, cluster_names: Iterable[str], *, shared: SharedGeneration
) -> dict[str, Message]:
    """The assignments of the named EDS clusters, by name, each built once per snapshot and class."""
    out: dict[str, Message] = {}
    for name in sorted(set(cluster_names)):
        cla = shared.get(shared.endpoint_key(proxy, name), lambda n=name: build_cluster_load_assignment(proxy, snapshot, n))
        if cla is not None:
            out[name] = cla
    return out


@dataclass(frozen=True)
class EndpointUpdate:
    """New assignments for some EDS clusters (``upsert``), and those that no longer have one (``remove``)."""

    upsert: dict[str, Message]
    remove: tuple[str, ...]

    def apply(self, resources: Resources) -> Resources:
        assignments = {n: m for n, m in resources.get(ENDPOINT, {}).items() if n not in self.remove}
        assignments.update(self.upsert)
        return {**resources, ENDPOINT: dict(sorted(assignments.items()))}


def regenerate_endpoints(
    proxy: Proxy,
    snapshot: MeshSnapshot,
    previous: Resources,
    hosts: frozenset[str],
    *,
    shared: SharedGeneration,
) -> EndpointUpdate | None:
    """The assignments of ``hosts`` rebuilt for a proxy that holds ``previous``, when only those endpoints changed.

    None when the proxy holds no EDS cluster of those hosts (nothing to send).
    """
    eds = [
        c.eds_cluster_config.service_name or c.name
        for c in previous.get(CLUSTER, {}).values()
        if c.type == cluster_pb2.Cluster.EDS  # type: ignore[attr-defined]
    ]
    affected = [n for n in eds if names.host_of_cluster(n) in hosts]
    if not affected:
        return None
    upsert = build_endpoint_map(proxy, snapshot, affected, shared=shared)
    return EndpointUpdate(upsert=upsert, remove=tuple(n for n in affected if n not in upsert))


@dataclass(frozen=True)
class Change:
    """What changed since the last push.

    ``kinds`` are config kinds (``VirtualService``, ...) plus ``Service`` for
    any change to the set of services or their ports (Kubernetes Services,
    workloads forming or leaving a service) and ``MeshConfig``. ``endpoints``
    are host names whose EDS endpoints alone changed; endpoints of DNS
    services are inlined in clusters, so their changes are ``ServiceEntry``
    changes. ``full`` means assume everything changed.
    """

    full: bool = False
    kinds: frozenset[str] = frozenset()
    endpoints: frozenset[str] = frozenset()


_CLUSTER_KINDS = frozenset(
    {"ServiceEntry", "DestinationRule", "WorkloadEntry", "Service", "MeshConfig", "RequestAuthentication"}
)
_ENDPOINT_KINDS = frozenset({"ServiceEntry", "DestinationRule", "WorkloadEntry", "Service", "MeshConfig"})
_ROUTE_KINDS = frozenset({"VirtualService", "DestinationRule", "ServiceEntry", "Service", "MeshConfig"})
_LISTENER_KINDS = frozenset(
    {
        "VirtualService",
        "DestinationRule",  # hash policies, tunnels, AUTO_PASSTHROUGH subsets
        "ServiceEntry",
        "Service",
        "MeshConfig",
        "EnvoyFilter",
        "AuthorizationPolicy",
        "RequestAuthentication",
        "Telemetry",
        "WasmPlugin",
    }
)


def _scoped(kinds: frozenset[str], proxy: Proxy) -> frozenset[str]:
    """Kinds that matter to this kind of proxy: Gateways to routers, Sidecars and mTLS policy to sidecars."""
    if proxy.is_router:
        return kinds | {"Gateway"}
    return kinds | {"Sidecar"}


def cds_needs_push(change: Change, proxy: Proxy) -> bool:
    return change.full or bool(change.kinds & _scoped(_CLUSTER_KINDS, proxy))


def eds_needs_push(change: Change, proxy: Proxy) -> bool:
    return change.full or bool(change.endpoints) or bool(change.kinds & _scoped(_ENDPOINT_KINDS, proxy))


def lds_needs_push(change: Change, proxy: Proxy) -> bool:
    kinds = _scoped(_LISTENER_KINDS, proxy)
    if not proxy.is_router:
        kinds |= {"PeerAuthentication"}
    return change.full or bool(change.kinds & kinds)


def rds_needs_push(change: Change, proxy: Proxy) -> bool:
    return change.full or bool(change.kinds & _scoped(_ROUTE_KINDS, proxy))


NEEDS_PUSH = {CLUSTER: cds_needs_push, ENDPOINT: eds_needs_push, LISTENER: lds_needs_push, ROUTE: rds_needs_push}
