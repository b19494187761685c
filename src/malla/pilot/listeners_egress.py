"""A Sidecar's egress listeners with a port (or a Unix socket) of their own.

``egress[].port`` makes a listener for that port alone, exposing only the
listener's ``hosts``; ``bind`` says where it listens, ``captureMode`` whether
it binds at all. With explicit capture (the app dials its sidecar) every
such listener binds, as Istio's do on a proxy without interception:
``bind`` or the proxy's own address. With transparent capture only
``captureMode: NONE`` (and Unix socket) listeners bind, at ``bind`` or
127.0.0.1 (Istio's default); the others are served by the redirected
listeners, whose routes already follow the egress listener of their port
(``sidecar_scope``).

The listener's protocol is the port's, else the protocol its services give
the port. HTTP listeners carry their route configuration inline (named
after the port, or the socket): the services of this listener that have the
port, or all their HTTP ports on an ``HTTP_PROXY`` port or a socket. TCP
and TLS listeners forward as the catch-all's per-port listeners do, to
``outbound|PORT||HOST``; a service without the port but with a single port
is reached on that one (Istio's rule for a user-chosen port). A listener
that would take the address and port of another is left out.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2

from malla.pilot import names
from malla.pilot.endpoints import socket_address
from malla.pilot.http_connection_manager import build_http_connection_manager, hcm_filter
from malla.pilot.network_filters import tls_inspector
from malla.pilot.outbound_chains import sni_chains, tcp_chain
from malla.pilot.protocol import Protocol, effective_protocol, parse_protocol
from malla.pilot.routes_sidecar import build_outbound_route_config
from malla.pilot.services import Service
from malla.pilot.sidecar_scope import EgressScope, SidecarScope
from malla.pilot.snapshot import CaptureMode, MeshSnapshot, Proxy
from malla.pilot.virtual_services import Destinations

Listener = listener_pb2.Listener
UNIX_PREFIX = "unix://"
LOOPBACK = "127.0.0.1"


def egress_address(egress: EgressScope, proxy: Proxy) -> str | None:
    """Where a port-owning egress listener binds, or None when redirection serves it instead."""
    if proxy.capture is CaptureMode.EXPLICIT:
        return egress.bind or proxy.ip
    if egress.capture_mode == "NONE" or egress.bind.startswith(UNIX_PREFIX):
        return egress.bind or LOOPBACK
    return None


def build_egress_listeners(
    proxy: Proxy, snapshot: MeshSnapshot, scope: SidecarScope, *, taken: set[tuple[str, int]]
) -> list[Listener]:
    """One listener per egress listener with a port that binds; ``taken``: (address, port) already in use."""
    out = []
    used = set(taken)
    for egress in scope.port_listeners:
        address = egress_address(egress, proxy)
        if address is None or egress.port is None or (address, egress.port) in used or not egress.services:
            continue
        listener = _listener(egress, address, proxy=proxy, snapshot=snapshot, scope=scope)
        if listener is not None:
            used.add((address, egress.port))
            out.append(listener)
    return out


def egress_protocol(egress: EgressScope, *, sniffing: bool) -> Protocol:
    if egress.protocol:
        return effective_protocol(parse_protocol(egress.protocol), sniffing=sniffing)
    for service in egress.services:
        for sp in service.ports:
            if sp.port == egress.port:
                return effective_protocol(sp.protocol, sniffing=sniffing)
    return Protocol.TCP


def _listener(
    egress: EgressScope, address: str, *, proxy: Proxy, snapshot: MeshSnapshot, scope: SidecarScope
) -> Listener | None:
    port = egress.port or 0
    name = names.listener_name(address, port)
    protocol = egress_protocol(egress, sniffing=snapshot.mesh.protocol_sniffing)
    listener = Listener(name=name, address=socket_address(address, port), traffic_direction=base_pb2.OUTBOUND)
    if protocol.is_http:
        chain = _http_chain(egress, name, protocol=protocol, proxy=proxy, snapshot=snapshot, scope=scope)
        listener.filter_chains.append(chain)
        return listener
    chains = _tcp_chains(egress, port, protocol=protocol, proxy=proxy, snapshot=snapshot, scope=scope)
    if not chains:
        return None
    listener.filter_chains.extend(chains)
    if protocol.is_tls:
        listener.listener_filters.append(tls_inspector())
    return listener


def _http_chain(
    egress: EgressScope, name: str, *, protocol: Protocol, proxy: Proxy, snapshot: MeshSnapshot, scope: SidecarScope
) -> lc.FilterChain:
    every_port = not egress.port or protocol is Protocol.HTTP_PROXY
    route_name = egress.bind if not egress.port else names.outbound_route_name(egress.port)
    routes = build_outbound_route_config(
        proxy, snapshot, scope, name=route_name, port=None if every_port else egress.port, egress=egress
    )
    manager = build_http_connection_manager(
        stat_prefix=f"outbound_{name}",
        route_name=route_name,
        mesh=snapshot.mesh,
        forward_proxy=proxy.capture is CaptureMode.EXPLICIT,
    )
    # Inline: this route configuration belongs to this listener alone, and comes and goes with it.
    manager.ClearField("rds")
    manager.route_config.CopyFrom(routes)
    return lc.FilterChain(name=name, filters=[hcm_filter(manager)])


def _tcp_chains(
    egress: EgressScope, port: int, *, protocol: Protocol, proxy: Proxy, snapshot: MeshSnapshot, scope: SidecarScope
) -> list[lc.FilterChain]:
    own = scope.only(egress)
    destinations = Destinations(proxy, snapshot)
    if protocol.is_tls:
        served = [s for s in egress.services if any(sp.port == port for sp in s.ports)]
        return sni_chains(served, port, proxy, snapshot, own, destinations) if served else []
    for service in egress.services:
        target = service_port(service, port)
        if target is not None:
            return [tcp_chain(service, port, proxy, snapshot, own, destinations, service_port=target)]
    return []


def service_port(service: Service, port: int) -> int | None:
    """The service port a listener on ``port`` reaches: the same number, else the service's only port."""
    numbers = [sp.port for sp in service.ports]
    if port in numbers:
        return port
    return numbers[0] if len(numbers) == 1 else None
