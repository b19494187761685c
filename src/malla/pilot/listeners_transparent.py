"""A sidecar's listeners when iptables/nftables redirect its traffic (transparent capture).

Istio's layout: ``virtualOutbound`` on 15001 takes every redirected
outbound connection and hands it to the listener for its original
destination (``use_original_dst``), or passes it through (ALLOW_ANY, to
``PassthroughCluster``) or drops it (REGISTRY_ONLY, ``BlackHoleCluster``).
Those listeners do not bind: ``0.0.0.0_9080`` for HTTP ports (route
configuration ``9080``), ``VIP_PORT`` for TCP services with an address,
``240.240.x.y_PORT`` for TCP services without one (the VIP mesh DNS answers,
see ``vips``), ``0.0.0.0_PORT`` for TLS ones (by SNI).
``virtualInbound`` on 15006 restores the original destination and picks a
chain by port as in explicit capture; ports the workload does not declare
pass through to ``InboundPassthroughCluster``.
"""

from __future__ import annotations

from collections import defaultdict

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2

from malla.pilot import names
from malla.pilot.endpoints import socket_address
from malla.pilot.http_connection_manager import build_http_connection_manager, hcm_filter
from malla.pilot.listeners_inbound import inbound_chains
from malla.pilot.listeners_outbound import sni_chains, tcp_chain
from malla.pilot.network_filters import tcp_proxy_filter, tls_inspector
from malla.pilot.protocol import effective_protocol
from malla.pilot.proto_values import typed
from malla.pilot.services import Service
from malla.pilot.sidecar_scope import SidecarScope
from malla.pilot.snapshot import MeshSnapshot, Proxy
from malla.pilot.virtual_services import Destinations
from malla.pilot.vips import auto_vips

Listener = listener_pb2.Listener
WILDCARD = "0.0.0.0"


def build_transparent_listeners(proxy: Proxy, snapshot: MeshSnapshot, scope: SidecarScope) -> list[Listener]:
    out = [
        _virtual_outbound(snapshot, scope),
        *http_ports_listeners(scope, snapshot),
        *_tcp_listeners(proxy, snapshot, scope),
    ]
    out.append(_virtual_inbound(proxy, snapshot))
    return out


def http_ports(scope: SidecarScope) -> list[int]:
    return sorted({p.port for s in scope.services for p in s.ports if p.protocol.is_http})


def http_ports_listeners(scope: SidecarScope, snapshot: MeshSnapshot) -> list[Listener]:
    out = []
    for port in http_ports(scope):
        name = names.listener_name(WILDCARD, port)
        manager = build_http_connection_manager(
            stat_prefix=f"outbound_{name}", route_name=names.outbound_route_name(port), mesh=snapshot.mesh
        )
        out.append(_unbound(name, WILDCARD, port, [lc.FilterChain(name=name, filters=[hcm_filter(manager)])]))
    return out


def _unbound(name: str, address: str, port: int, chains: list[lc.FilterChain]) -> Listener:
    return Listener(
        name=name,
        address=socket_address(address, port),
        traffic_direction=base_pb2.OUTBOUND,
        bind_to_port={"value": False},
        filter_chains=chains,
    )


def _tcp_listeners(proxy: Proxy, snapshot: MeshSnapshot, scope: SidecarScope) -> list[Listener]:
    taken = set(http_ports(scope))
    vips = auto_vips(snapshot.registry.services)
    groups: dict[tuple[str, int], list[tuple[Service, bool]]] = defaultdict(list)
    for service in scope.services:
        for sp in service.ports:
            protocol = effective_protocol(sp.protocol, sniffing=snapshot.mesh.protocol_sniffing)
            if not protocol.is_tcp:
                continue
            # Plain TCP has only the destination address to go by: a service without one is
            # dialled at the VIP mesh DNS answers for it. TLS is told apart by SNI instead.
            vip = () if protocol.is_tls or service.key not in vips else (vips[service.key],)
            for address in service.addresses or vip or (WILDCARD,):
                if address == WILDCARD and sp.port in taken:
                    continue  # an HTTP listener already owns 0.0.0.0 on this port
                groups[(address, sp.port)].append((service, protocol.is_tls))
    destinations = Destinations(proxy, snapshot)
    out = []
    for (address, port), members in sorted(groups.items()):
        tls = [s for s, is_tls in members if is_tls]
        if tls:
            chains = sni_chains(tls, port, proxy, snapshot, scope, destinations)
        else:
            chains = [tcp_chain(members[0][0], port, proxy, snapshot, scope, destinations)]
        listener = _unbound(names.listener_name(address, port), address, port, chains)
        if tls:
            listener.listener_filters.append(tls_inspector())
        out.append(listener)
    return out


def _virtual_outbound(snapshot: MeshSnapshot, scope: SidecarScope) -> Listener:
    port = snapshot.mesh.outbound_port
    target = names.BLACKHOLE_CLUSTER if scope.outbound_policy == "REGISTRY_ONLY" else names.PASSTHROUGH_CLUSTER
    chain = lc.FilterChain(
        name="virtualOutbound-catchall-tcp", filters=[tcp_proxy_filter(stat_prefix=target, clusters=[(target, 100)])]
    )
    return Listener(
        name=names.VIRTUAL_OUTBOUND_LISTENER,
        address=socket_address(WILDCARD, port),
        traffic_direction=base_pb2.OUTBOUND,
        use_original_dst={"value": True},
        filter_chains=[chain],
    )


def _virtual_inbound(proxy: Proxy, snapshot: MeshSnapshot) -> Listener:
    listener = Listener(
        name=names.VIRTUAL_INBOUND_LISTENER,
        address=socket_address(WILDCARD, snapshot.mesh.inbound_passthrough_port),
        traffic_direction=base_pb2.INBOUND,
        listener_filters=[
            lc.ListenerFilter(
                name="envoy.filters.listener.original_dst", typed_config=typed(original_dst_pb2.OriginalDst())
            ),
            tls_inspector(),
        ],
    )
    listener.filter_chains.extend(inbound_chains(proxy, snapshot))
    passthrough = names.INBOUND_PASSTHROUGH_CLUSTER
    listener.default_filter_chain.CopyFrom(
        lc.FilterChain(
            name=passthrough, filters=[tcp_proxy_filter(stat_prefix=passthrough, clusters=[(passthrough, 100)])]
        )
    )
    return listener
