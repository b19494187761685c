"""All route configurations of one proxy, each named by a listener that uses it."""

from __future__ import annotations

from envoy.config.route.v3 import route_pb2

from malla.pilot import names
from malla.pilot.listeners_outbound import outbound_port
from malla.pilot.listeners_transparent import http_ports
from malla.pilot.routes_gateway import build_gateway_route_configs
from malla.pilot.routes_sidecar import build_inbound_route_config, build_outbound_route_config
from malla.pilot.sidecar_scope import SidecarScope, build_scope
from malla.pilot.snapshot import CaptureMode, MeshSnapshot, Proxy

RouteConfiguration = route_pb2.RouteConfiguration


def build_routes(
    proxy: Proxy, snapshot: MeshSnapshot, *, scope: SidecarScope | None = None
) -> list[RouteConfiguration]:
    """Every route configuration the proxy's listeners name, sorted by name."""
    if proxy.is_router:
        out = build_gateway_route_configs(proxy, snapshot)
    else:
        scope = scope or build_scope(proxy, snapshot)
        if proxy.capture is CaptureMode.TRANSPARENT:
            out = [
                build_outbound_route_config(proxy, snapshot, scope, name=names.outbound_route_name(port), port=port)
                for port in http_ports(scope)
            ]
        else:
            name = names.outbound_route_name(outbound_port(proxy, snapshot))
            out = [build_outbound_route_config(proxy, snapshot, scope, name=name)]
        out += [build_inbound_route_config(p) for p in proxy.inbound if p.protocol.is_http]
    return sorted(out, key=lambda r: r.name)
