"""All listeners of one proxy: a router's from its Gateways, a sidecar's by how its traffic is captured."""

from __future__ import annotations

from envoy.config.listener.v3 import listener_pb2

from malla.pilot.listeners_egress import build_egress_listeners
from malla.pilot.listeners_gateway import build_gateway_listeners
from malla.pilot.listeners_inbound import build_inbound_listeners
from malla.pilot.listeners_outbound import build_outbound_listeners
from malla.pilot.listeners_transparent import build_transparent_listeners
from malla.pilot.sidecar_ingress import bound_inbound_ports
from malla.pilot.sidecar_scope import SidecarScope, build_scope
from malla.pilot.snapshot import CaptureMode, MeshSnapshot, Proxy
from malla.policy import add_policy
from malla.telemetry.proxy_config import add_telemetry

Listener = listener_pb2.Listener


def build_listeners(proxy: Proxy, snapshot: MeshSnapshot, *, scope: SidecarScope | None = None) -> list[Listener]:
    """Every listener the proxy needs, sorted by name."""
    if proxy.is_router:
        out = build_gateway_listeners(proxy, snapshot)
    else:
        scope = scope or build_scope(proxy, snapshot)
        if proxy.capture is CaptureMode.TRANSPARENT:
            # Plus what a Sidecar resource binds outside the capture (captureMode NONE, bind).
            taken = bound_inbound_ports(proxy, snapshot)
            out = build_transparent_listeners(proxy, snapshot, scope)
            out += build_inbound_listeners(proxy, snapshot) + build_egress_listeners(proxy, snapshot, scope, taken=taken)
        else:
            out = build_outbound_listeners(proxy, snapshot, scope) + build_inbound_listeners(proxy, snapshot)
    out = add_policy(out, proxy=proxy, snapshot=snapshot)
    return sorted(add_telemetry(out, proxy=proxy, snapshot=snapshot), key=lambda listener: listener.name)
