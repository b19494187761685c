"""Kubernetes Services given as plain dicts -> services and endpoints.

Enough of Istio's kube registry to run the samples without a cluster:
ClusterIP services (EDS), headless ones (``clusterIP: None``, passthrough)
and ExternalName (DNS). Endpoints are the self-registered workloads in the
service's namespace whose labels match its selector; ``targetPort`` is a
number, or a name looked up in the workload's port names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from malla.pilot.protocol import protocol_from_port
from malla.pilot.serviceentry import workload_endpoint
from malla.pilot.services import (
    DEFAULT_DOMAIN,
    Endpoint,
    Resolution,
    Service,
    ServicePort,
    Workload,
    frozen_map,
    kube_fqdn,
    labels_match,
)

EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"


def service_from_kube(
    body: Mapping[str, Any], *, domain: str = DEFAULT_DOMAIN, default_export_to: frozenset[str] = frozenset({"*"})
) -> Service:
    """One ``v1/Service`` object; raises ValueError naming the field that is wrong."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    name = meta.get("name")
    if not name:
        raise ValueError("Service: metadata.name is required")
    namespace = meta.get("namespace") or "default"
    ports = tuple(_port(p, i, ref=f"Service {namespace}/{name}") for i, p in enumerate(spec.get("ports") or []))
    resolution, addresses = Resolution.CLIENT_SIDE_LB, _cluster_ips(spec)
    if spec.get("type") == "ExternalName":
        resolution = Resolution.DNS
    elif spec.get("clusterIP") == "None":
        resolution = Resolution.PASSTHROUGH
    export = (meta.get("annotations") or {}).get(EXPORT_TO_ANNOTATION)
    selector = spec.get("selector")
    return Service(
        hostname=kube_fqdn(name, namespace, domain),
        namespace=namespace,
        ports=ports,
        resolution=resolution,
        addresses=addresses,
        export_to=frozenset(x.strip() for x in export.split(",")) if export else default_export_to,
        selector=frozen_map(selector) if selector else None,
        source=f"Service {namespace}/{name}",
        name=name,
    )


def _cluster_ips(spec: Mapping[str, Any]) -> tuple[str, ...]:
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return tuple(ip for ip in ips if ip != "None")


def _port(p: Mapping[str, Any], index: int, *, ref: str) -> ServicePort:
    number = p.get("port")
    if not isinstance(number, int) or not 0 < number < 65536:
        raise ValueError(f"{ref}: spec.ports[{index}].port must be a port number (1-65535), got {number!r}")
    target = p.get("targetPort")
    name = p.get("name") or ""
    return ServicePort(
        name=name or str(number),
        port=number,
        protocol=protocol_from_port(
            port=number, name=name, app_protocol=p.get("appProtocol"), transport=p.get("protocol") or "TCP"
        ),
        target_port=target if isinstance(target, int) else None,
        target_port_name=target if isinstance(target, str) else None,
    )


def endpoints_from_kube(
    body: Mapping[str, Any], service: Service, *, workloads: Iterable[Workload], trust_domain: str
) -> dict[int, list[Endpoint]]:
    out: dict[int, list[Endpoint]] = {p.port: [] for p in service.ports}
    external = (body.get("spec") or {}).get("externalName")
    for sp in service.ports:
        if service.resolution is Resolution.DNS and external:
            out[sp.port].append(Endpoint(address=external, port=sp.port, service_port=sp.port))
        elif service.selector is not None:
            out[sp.port] = [
                workload_endpoint(w, sp, trust_domain=trust_domain)
                for w in workloads
                if w.namespace == service.namespace and labels_match(service.selector, w.labels)
            ]
    return out
