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

With a Sidecar, the per-port TCP listeners hold the services of its
catch-all egress listener, and an egress listener with a port of its own
gets its own listener (``listeners_egress``), which takes that port on the
proxy's address when it binds there.
"""

from __future__ import annotations

from collections import defaultdict

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.core.v3 import base_pb2

from malla.pilot import names
from malla.pilot.endpoints import socket_address
from malla.pilot.http_connection_manager import build_http_connection_manager, hcm_filter
from malla.pilot.listeners_egress import build_egress_listeners
from malla.pilot.network_filters import tls_inspector
from malla.pilot.outbound_chains import sni_chains, tcp_chain
from malla.pilot.protocol import Protocol, effective_protocol
from malla.pilot.services import Service
from malla.pilot.sidecar_ingress import bound_inbound_ports
from malla.pilot.sidecar_scope import SidecarScope
from malla.pilot.snapshot import MeshSnapshot, Proxy
from malla.pilot.virtual_services import Destinations

Listener = listener_pb2.Listener


def outbound_port(proxy: Proxy, snapshot: MeshSnapshot) -> int:
    return proxy.outbound_port or snapshot.mesh.outbound_port


def build_outbound_listeners(proxy: Proxy, snapshot: MeshSnapshot, scope: SidecarScope) -> list[Listener]:
    taken = {(proxy.ip, outbound_port(proxy, snapshot)), *bound_inbound_ports(proxy, snapshot)}
    egress = build_egress_listeners(proxy, snapshot, scope, taken=taken)
    taken |= {(x.address.socket_address.address, x.address.socket_address.port_value) for x in egress}
    tcp = build_tcp_listeners(proxy, snapshot, scope, taken=taken)
    return [build_http_proxy_listener(proxy, snapshot), *tcp, *egress]


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


def build_tcp_listeners(
    proxy: Proxy, snapshot: MeshSnapshot, scope: SidecarScope, *, taken: set[tuple[str, int]]
) -> list[Listener]:
    """The catch-all egress listener's TCP and TLS service ports, each on the proxy's address unless ``taken``."""
    catch_all = scope.catch_all
    if catch_all is None:
        return []
    scope = scope.only(catch_all)
    by_port: dict[int, list[tuple[Service, Protocol]]] = defaultdict(list)
    for service in scope.services:
        for port in service.ports:
            protocol = effective_protocol(port.protocol, sniffing=snapshot.mesh.protocol_sniffing)
            if protocol.is_tcp and (proxy.ip, port.port) not in taken:
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
