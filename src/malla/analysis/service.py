"""Kubernetes Service checks: port names Istio can take a protocol from (IST0118, IST0150)."""

from __future__ import annotations

from collections.abc import Mapping

from malla.analysis import kube
from malla.analysis.context import AnalysisContext
from malla.analysis.protocols import UNSUPPORTED, service_port_protocol
from malla.analysis.registry import analyzer

# Services the gateway controllers create for themselves; their port names are not the user's.
_MANAGED_GATEWAY_LABEL = "gateway.istio.io/managed"
_MANAGED_GATEWAY_CONTROLLERS = frozenset(
    {"istio.io-gateway-controller", "istio.io-mesh-controller", "istio.io-eastwest-controller"}
)


def is_istio_control_plane(labels: Mapping[str, str]) -> bool:
    """Istio's own workloads carry an ``istio`` label or ``release: istio``."""
    return "istio" in labels or labels.get("release") == "istio"


@analyzer(
    "service.PortNameAnalyzer",
    "Checks the port names associated with each service",
    "PortNameIsNotUnderNamingConvention",
    "ExternalNameServiceTypeInvalidPortName",
)
def port_name_analyzer(ctx: AnalysisContext) -> None:
    for svc in ctx.kube("Service"):
        labels = svc.labels
        if is_istio_control_plane(labels) or labels.get(_MANAGED_GATEWAY_LABEL) in _MANAGED_GATEWAY_CONTROLLERS:
            continue
        external_name = kube.spec(svc).get("type") == "ExternalName"
        for i, port in enumerate(kube.service_ports(svc)):
            name = str(port.get("name") or "")
            unsupported = service_port_protocol(port) == UNSUPPORTED
            # An ExternalName service's "tcp" port stops Envoy forwarding unmatched TCP traffic.
            if not (unsupported or (external_name and name == "tcp")):
                continue
            where = f"spec.ports[{i}]"
            if external_name:
                ctx.report(svc, "ExternalNameServiceTypeInvalidPortName", field=where)
            else:
                number = port.get("port")
                ctx.report(
                    svc,
                    "PortNameIsNotUnderNamingConvention",
                    name,
                    number if isinstance(number, int) else 0,
                    kube.target_port_text(port),
                    field=where,
                )


ANALYZERS = (port_name_analyzer,)
