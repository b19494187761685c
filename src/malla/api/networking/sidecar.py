"""Sidecar (networking.istio.io v1, v1beta1, v1alpha3) and its messages.

Field for field the ``istio.networking.v1alpha3.Sidecar`` proto: which
workloads it selects, the inbound (ingress) and outbound (egress)
listeners of their proxies, the outbound traffic policy and inbound
connection pools. Reuses ``ServerTLSSettings`` (gateway.py),
``ConnectionPoolSettings`` and ``WorkloadSelector`` (destination_rule.py)
and ``Destination`` (virtual_service.py).
"""

from __future__ import annotations

from pydantic import Field

from malla.api.base import IstioModel, Str, UInt32, proto_enum
from malla.api.networking.destination_rule import ConnectionPoolSettings, WorkloadSelector
from malla.api.networking.gateway import ServerTLSSettings
from malla.api.networking.virtual_service import Destination

CaptureMode = proto_enum("DEFAULT", "IPTABLES", "NONE")


class SidecarPort(IstioModel):
    number: UInt32 | None = None
    protocol: Str | None = None
    name: Str | None = None
    target_port: UInt32 | None = None  # deprecated, no effect on sidecars


class IstioIngressListener(IstioModel):
    port: SidecarPort | None = None
    bind: Str | None = None
    capture_mode: CaptureMode | None = None
    default_endpoint: Str | None = None
    tls: ServerTLSSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None


class IstioEgressListener(IstioModel):
    port: SidecarPort | None = None
    bind: Str | None = None
    capture_mode: CaptureMode | None = None
    hosts: list[Str] = Field(default_factory=list)


class OutboundTrafficPolicy(IstioModel):
    mode: proto_enum("REGISTRY_ONLY", "ALLOW_ANY") | None = None
    egress_proxy: Destination | None = None


class Sidecar(IstioModel):
    """The spec of a Sidecar."""

    workload_selector: WorkloadSelector | None = None
    ingress: list[IstioIngressListener] = Field(default_factory=list)
    egress: list[IstioEgressListener] = Field(default_factory=list)
    inbound_connection_pool: ConnectionPoolSettings | None = None
    outbound_traffic_policy: OutboundTrafficPolicy | None = None
