"""Filter chains that forward a sidecar's outbound TCP and TLS, whichever listener holds them.

A plain TCP port forwards to one service (``outbound|PORT||HOST``) or as
its VirtualService's first applicable ``tcp`` route says; a TLS port picks
the service by SNI, each VirtualService ``tls`` route by its ``sniHosts``.
The tcp_proxy carries what the destination's DestinationRule asks of it
(``tcp_proxy_policy``). Route matches are decided per proxy: port, source
labels and namespace, the ``mesh`` gateway.
"""

from __future__ import annotations

from typing import Any

from envoy.config.listener.v3 import listener_components_pb2 as lc

from malla.pilot import names
from malla.pilot.network_filters import route_clusters
from malla.pilot.routes_match import match_applies
from malla.pilot.services import Service
from malla.pilot.sidecar_scope import MESH_GATEWAY, SidecarScope
from malla.pilot.snapshot import MeshSnapshot, Proxy
from malla.pilot.tcp_proxy_policy import tcp_proxy_to
from malla.pilot.virtual_services import Destinations, virtual_service_for


def tcp_chain(
    service: Service,
    port: int,
    proxy: Proxy,
    snapshot: MeshSnapshot,
    scope: SidecarScope,
    destinations: Destinations,
    *,
    service_port: int | None = None,
) -> lc.FilterChain:
    """``port`` is the listener's (VirtualService matches see it); ``service_port`` the service's, when other."""
    target = service_port or port
    default = names.outbound_cluster_name(service.hostname, target)
    clusters = [(default, 100)]
    vs = virtual_service_for(service.hostname, scope.virtual_services, domain=snapshot.mesh.domain)
    if vs is not None:
        for tcp in vs.spec.tcp:
            if _l4_applies(tcp.match, port=port, proxy=proxy):
                clusters = route_clusters(tcp.route, _cluster_for(destinations, vs.namespace, target))
                break
    terminal = tcp_proxy_to(clusters, stat_prefix=default, proxy=proxy, snapshot=snapshot)
    return lc.FilterChain(name=default, filters=[terminal])


def sni_chains(
    services: list[Service],
    port: int,
    proxy: Proxy,
    snapshot: MeshSnapshot,
    scope: SidecarScope,
    destinations: Destinations,
) -> list[lc.FilterChain]:
    chains: list[lc.FilterChain] = []
    claimed: set[str] = set()

    def add(server_names: list[str], clusters: list[tuple[str, int]], name: str) -> None:
        fresh = sorted(set(server_names) - claimed)
        if fresh:
            claimed.update(fresh)
            match = lc.FilterChainMatch(server_names=fresh)
            terminal = tcp_proxy_to(clusters, stat_prefix=name, proxy=proxy, snapshot=snapshot)
            chains.append(lc.FilterChain(name=name, filter_chain_match=match, filters=[terminal]))

    for service in services:
        vs = virtual_service_for(service.hostname, scope.virtual_services, domain=snapshot.mesh.domain)
        for tls in vs.spec.tls if vs is not None else ():
            for match in tls.match:
                if _l4_applies([match], port=port, proxy=proxy):
                    clusters = route_clusters(tls.route, _cluster_for(destinations, vs.namespace, port))
                    add(list(match.sni_hosts), clusters, clusters[0][0])
        default = names.outbound_cluster_name(service.hostname, port)
        add([service.hostname], [(default, 100)], default)
    return chains


def _cluster_for(destinations: Destinations, namespace: str, port: int) -> Any:
    return lambda d: destinations.cluster_for(d, namespace=namespace, port=port)


def _l4_applies(matches: list[Any], *, port: int, proxy: Proxy) -> bool:
    """TCP/TLS route matches decided per proxy: no match, or one whose port, labels and gateways fit."""
    if not matches:
        return True
    return any(
        match_applies(m, port=port, proxy_labels=proxy.labels, proxy_namespace=proxy.namespace, gateway=MESH_GATEWAY)
        for m in matches
    )
