"""A gateway's listeners: one per port its Gateways' servers use, on the gateway's address.

The address is the proxy's own (``127.0.0.1_8080`` for a gateway on one
machine, ``0.0.0.0_8080`` for one at the wildcard as in Istio) unless a
server names a ``bind`` address.

On each port: plain HTTP servers share one filter chain (route
configuration ``http.PORT``); each server terminating TLS gets a chain
matched by SNI (its hosts) with its certificates and its own route
configuration; TLS PASSTHROUGH servers get a chain per VirtualService
``tls`` route's ``sniHosts``; AUTO_PASSTHROUGH servers a chain per mesh
service port and subset, by Istio's SNI (``auto_passthrough``); TCP servers
forward as the first bound VirtualService ``tcp`` route says. tcp_proxy
filters carry their destination's hash policy and tunnel
(``tcp_proxy_policy``).
"""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2

from malla.pilot import names
from malla.pilot.auto_passthrough import auto_passthrough_chains, is_auto_passthrough
from malla.pilot.cluster_tls import TLS_SOCKET
from malla.pilot.destination_rules import host_matches
from malla.pilot.endpoints import socket_address
from malla.pilot.gateways import GatewayServer, bound_hosts, servers_by_port, translate_server_tls
from malla.pilot.http_connection_manager import build_http_connection_manager, hcm_filter
from malla.pilot.network_filters import route_clusters, tls_inspector
from malla.pilot.proto_values import typed
from malla.pilot.routes_match import match_applies
from malla.pilot.snapshot import MeshSnapshot, Proxy
from malla.pilot.tcp_proxy_policy import tcp_proxy_to
from malla.pilot.virtual_services import Destinations

Listener = listener_pb2.Listener
WILDCARD = "0.0.0.0"


def build_gateway_listeners(proxy: Proxy, snapshot: MeshSnapshot) -> list[Listener]:
    destinations = Destinations(proxy, snapshot)
    out = []
    for port, servers in servers_by_port(proxy, snapshot).items():
        bind = next((s.server.bind for s in servers if s.server.bind), proxy.ip or WILDCARD)
        name = names.listener_name(bind, port)
        listener = Listener(name=name, address=socket_address(bind, port), traffic_direction=base_pb2.OUTBOUND)
        # Without SO_REUSEPORT, a second gateway on the same address and port fails to bind
        # (and says so) instead of silently taking half the connections.
        listener.enable_reuse_port.value = False
        listener.filter_chains.extend(_chains(servers, port, proxy, snapshot, destinations))
        if any(
            c.filter_chain_match.server_names or c.filter_chain_match.transport_protocol for c in listener.filter_chains
        ):
            listener.listener_filters.append(tls_inspector())
        if listener.filter_chains:
            out.append(listener)
    return out


def _chains(
    servers: list[GatewayServer], port: int, proxy: Proxy, snapshot: MeshSnapshot, destinations: Destinations
) -> list[lc.FilterChain]:
    chains: list[lc.FilterChain] = []
    claimed: set[tuple[str, ...]] = set()
    plain_http = False
    for server in servers:
        if is_auto_passthrough(server):
            chains += auto_passthrough_chains(server, proxy, snapshot, claimed=claimed)
        elif server.passthrough:
            chains += _passthrough_chains(server, proxy, snapshot, destinations, claimed)
        elif server.terminates_tls:
            key = tuple(server.server_names())
            if key in claimed:
                continue  # Envoy refuses two chains with one match: the first server keeps it
            claimed.add(key)
            chains.append(_tls_chain(server, snapshot))
        elif server.protocol.is_http and not plain_http:
            plain_http = True
            manager = build_http_connection_manager(
                stat_prefix=f"outbound_{names.listener_name(WILDCARD, port)}",
                route_name=server.route_name,
                mesh=snapshot.mesh,
                gateway=True,
            )
            chains.append(lc.FilterChain(name=server.route_name, filters=[hcm_filter(manager)]))
        elif server.protocol.is_tcp and () not in claimed:
            chain = _tcp_chain(server, proxy, snapshot, destinations)
            if chain is not None:
                claimed.add(())
                chains.append(chain)
    return chains


def _tls_chain(server: GatewayServer, snapshot: MeshSnapshot) -> lc.FilterChain:
    match = lc.FilterChainMatch(server_names=server.server_names(), transport_protocol="tls")
    manager = build_http_connection_manager(
        stat_prefix=f"outbound_{names.listener_name(WILDCARD, server.port)}",
        route_name=server.route_name,
        mesh=snapshot.mesh,
        gateway=True,
    )
    chain = lc.FilterChain(name=server.route_name, filter_chain_match=match, filters=[hcm_filter(manager)])
    chain.transport_socket.name = TLS_SOCKET
    chain.transport_socket.typed_config.CopyFrom(typed(translate_server_tls(server, mesh=snapshot.mesh)))
    return chain


def _passthrough_chains(
    server: GatewayServer, proxy: Proxy, snapshot: MeshSnapshot, destinations: Destinations, claimed: set
) -> list[lc.FilterChain]:
    out = []
    for _host, vs in bound_hosts(server, proxy, snapshot):
        for tls in vs.spec.tls:
            for match in tls.match:
                if not _applies(match, server, proxy, vs.namespace):
                    continue
                sni = sorted({h for h in match.sni_hosts if any(host_matches(p, h) for _, p in server.hosts())})
                if not sni or tuple(sni) in claimed:
                    continue
                claimed.add(tuple(sni))
                clusters = route_clusters(tls.route, _cluster_for(destinations, vs.namespace, server.port))
                out.append(
                    lc.FilterChain(
                        name=clusters[0][0],
                        filter_chain_match=lc.FilterChainMatch(server_names=sni),
                        filters=[tcp_proxy_to(clusters, stat_prefix=clusters[0][0], proxy=proxy, snapshot=snapshot)],
                    )
                )
    return out


def _tcp_chain(
    server: GatewayServer, proxy: Proxy, snapshot: MeshSnapshot, destinations: Destinations
) -> lc.FilterChain | None:
    for _host, vs in bound_hosts(server, proxy, snapshot):
        for tcp in vs.spec.tcp:
            if not tcp.match or any(_applies(m, server, proxy, vs.namespace) for m in tcp.match):
                clusters = route_clusters(tcp.route, _cluster_for(destinations, vs.namespace, server.port))
                name = clusters[0][0]
                terminal = tcp_proxy_to(clusters, stat_prefix=name, proxy=proxy, snapshot=snapshot)
                return lc.FilterChain(name=name, filters=[terminal])
    return None


def _applies(match: Any, server: GatewayServer, proxy: Proxy, namespace: str) -> bool:
    return match_applies(
        match,
        port=server.port,
        proxy_labels=proxy.labels,
        proxy_namespace=proxy.namespace,
        gateway=server.key,
        config_namespace=namespace,
    )


def _cluster_for(destinations: Destinations, namespace: str, port: int) -> Any:
    return lambda d: destinations.cluster_for(d, namespace=namespace, port=port)
