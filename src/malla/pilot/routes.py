"""All route configurations of one proxy, each named by a listener that uses it."""

from __future__ import annotations

from envoy.config.route.v3 import route_pb2

from malla.pilot import names
from malla.pilot.listeners_outbound import outbound_port
from malla.pilot.listeners_transparent import http_ports
from malla.pilot.routes_gateway import build_gateway_route_configs
from malla.pilot.routes_sidecar import build_inbound_route_configs, build_outbound_route_config
from malla.pilot.sidecar_scope import SidecarScope, build_scope
from malla.pilot.snapshot import CaptureMode, MeshSnapshot, Proxy

RouteConfiguration = route_pb2.RouteConfiguration


def build_routes(
    proxy: Proxy,
    snapshot: MeshSnapshot,
    *,
    scope: SidecarScope | None = None,
    outbound: list[RouteConfiguration] | None = None,
) -> list[RouteConfiguration]:
    """Every route configuration the proxy's listeners name, sorted by name (``outbound``: already built)."""
    if proxy.is_router:
        out = build_gateway_route_configs(proxy, snapshot)
    else:
        if outbound is None:
            outbound = build_outbound_routes(proxy, snapshot, scope or build_scope(proxy, snapshot))
        out = [*outbound, *build_inbound_route_configs(proxy, snapshot)]
    return sorted(out, key=lambda r: r.name)


def build_outbound_routes(proxy: Proxy, snapshot: MeshSnapshot, scope: SidecarScope) -> list[RouteConfiguration]:
    """A sidecar's outbound route configurations: one per HTTP port (transparent), or the HTTP proxy's."""
    if proxy.capture is CaptureMode.TRANSPARENT:
        return [
            build_outbound_route_config(proxy, snapshot, scope, name=names.outbound_route_name(port), port=port)
            for port in http_ports(scope)
        ]
    name = names.outbound_route_name(outbound_port(proxy, snapshot))
    return [build_outbound_route_config(proxy, snapshot, scope, name=name)]
