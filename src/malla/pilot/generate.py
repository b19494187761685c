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

from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf.message import Message

from malla.pilot.clusters import build_clusters
from malla.pilot.endpoints import build_endpoints
from malla.pilot.listeners import build_listeners
from malla.pilot.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from malla.pilot.routes import build_routes
from malla.pilot.sidecar_scope import build_scope
from malla.pilot.snapshot import MeshSnapshot, Proxy

Resources = dict[str, dict[str, Message]]


def generate(proxy: Proxy, snapshot: MeshSnapshot) -> Resources:
    scope = build_scope(proxy, snapshot)
    clusters = build_clusters(proxy, snapshot, scope=scope)
    eds = [c.eds_cluster_config.service_name or c.name for c in clusters if c.type == cluster_pb2.Cluster.EDS]
    return {
        CLUSTER: {c.name: c for c in clusters},
        ENDPOINT: {a.cluster_name: a for a in build_endpoints(proxy, snapshot, eds)},
        LISTENER: {x.name: x for x in build_listeners(proxy, snapshot, scope=scope)},
        ROUTE: {r.name: r for r in build_routes(proxy, snapshot, scope=scope)},
    }


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


_CLUSTER_KINDS = frozenset({"ServiceEntry", "DestinationRule", "WorkloadEntry", "Service", "MeshConfig"})
_ENDPOINT_KINDS = frozenset({"ServiceEntry", "DestinationRule", "WorkloadEntry", "Service", "MeshConfig"})
_ROUTE_KINDS = frozenset({"VirtualService", "DestinationRule", "ServiceEntry", "Service", "MeshConfig"})
_LISTENER_KINDS = frozenset(
    {
        "VirtualService",
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
