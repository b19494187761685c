"""A sidecar's outbound listeners when the app dials its sidecar (explicit capture).

One HTTP listener, ``IP_15001`` on the proxy's address, is the app's HTTP
proxy (``HTTP_PROXY=http://IP:15001``): its route configuration (named after
its port, as Istio names an HTTP_PROXY egress listener's) has a virtual host
per HTTP service port. Every non-HTTP service port gets a listener of its
own on the proxy's address and that port (``IP_27017``): plain TCP goes to
the service's cluster (or splits as its VirtualService ``tcp`` routes say);
TLS and HTTPS ports pick the service by SNI, so several can share a port
(VirtualService ``tls`` routes by ``sniHosts``). Two plain-TCP services on
one port cannot be told apart without an address of their own: the first by
host name keeps the port. A port the proxy itself serves is never used.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.core.v3 import base_pb2

from malla.pilot import names
from malla.pilot.endpoints import socket_address
from malla.pilot.http_connection_manager import build_http_connection_manager, hcm_filter
from malla.pilot.network_filters import route_clusters, tcp_proxy_filter, tls_inspector
from malla.pilot.protocol import Protocol, effective_protocol
from malla.pilot.routes_match import match_applies
from malla.pilot.services import Service
from malla.pilot.sidecar_scope import MESH_GATEWAY, SidecarScope
from malla.pilot.snapshot import MeshSnapshot, Proxy
from malla.pilot.virtual_services import Destinations, virtual_service_for

Listener = listener_pb2.Listener


def outbound_port(proxy: Proxy, snapshot: MeshSnapshot) -> int:
    return proxy.outbound_port or snapshot.mesh.outbound_port


def build_outbound_listeners(proxy: Proxy, snapshot: MeshSnapshot, scope: SidecarScope) -> list[Listener]:
    return [build_http_proxy_listener(proxy, snapshot), *build_tcp_listeners(proxy, snapshot, scope)]


def build_http_proxy_listener(proxy: Proxy, snapshot: MeshSnapshot) -> Listener:
    port = outbound_port(proxy, snapshot)
    name = names.listener_name(proxy.ip, port)
    manager = build_http_connection_manager(
        stat_prefix=f"outbound_{name}",
        route_name=names.outbound_route_name(port),
        mesh=snapshot.mesh,
        forward_proxy=True,
    )
    return Listener(
        name=name,
        address=socket_address(proxy.ip, port),
        traffic_direction=base_pb2.OUTBOUND,
        filter_chains=[lc.FilterChain(name=name, filters=[hcm_filter(manager)])],
    )


def build_tcp_listeners(proxy: Proxy, snapshot: MeshSnapshot, scope: SidecarScope) -> list[Listener]:
    taken = {outbound_port(proxy, snapshot), *(p.port for p in proxy.inbound)}
    by_port: dict[int, list[tuple[Service, Protocol]]] = defaultdict(list)
    for service in scope.services:
        for port in service.ports:
            protocol = effective_protocol(port.protocol, sniffing=snapshot.mesh.protocol_sniffing)
            if protocol.is_tcp and port.port not in taken:
                by_port[port.port].append((service, protocol))
    destinations = Destinations(proxy, snapshot)
    out = []
    for port, members in sorted(by_port.items()):
        tls = [s for s, p in members if p.is_tls]
        if tls:
            chains = sni_chains(tls, port, proxy, snapshot, scope, destinations)
        else:
            chains = [tcp_chain(members[0][0], port, proxy, snapshot, scope, destinations)]
        name = names.listener_name(proxy.ip, port)
        listener = Listener(
            name=name, address=socket_address(proxy.ip, port), traffic_direction=base_pb2.OUTBOUND, filter_chains=chains
        )
        if tls:
            listener.listener_filters.append(tls_inspector())
        out.append(listener)
    return out


def tcp_chain(
    service: Service, port: int, proxy: Proxy, snapshot: MeshSnapshot, scope: SidecarScope, destinations: Destinations
) -> lc.FilterChain:
    default = names.outbound_cluster_name(service.hostname, port)
    clusters = [(default, 100)]
    vs = virtual_service_for(service.hostname, scope.virtual_services, domain=snapshot.mesh.domain)
    if vs is not None:
        for tcp in vs.spec.tcp:
            if _l4_applies(tcp.match, port=port, proxy=proxy):
                clusters = route_clusters(tcp.route, _cluster_for(destinations, vs.namespace, port))
                break
    return lc.FilterChain(name=default, filters=[tcp_proxy_filter(stat_prefix=default, clusters=clusters)])


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
            chains.append(
                lc.FilterChain(
                    name=name, filter_chain_match=match, filters=[tcp_proxy_filter(stat_prefix=name, clusters=clusters)]
                )
            )

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
