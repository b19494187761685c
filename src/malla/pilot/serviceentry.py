"""ServiceEntry and WorkloadEntry -> services and endpoints (Istio's serviceentry registry).

One ``Service`` per host of a ServiceEntry; a port without ``protocol`` is
read from its name as Kubernetes ports are (``http-web`` is HTTP), since
malla does not sniff protocols. Endpoints come from its inline
``endpoints``, from WorkloadEntries and self-registered workloads its
``workloadSelector`` picks in the same namespace, or, for DNS resolution
with no endpoints at all, from the host names themselves, as Istio does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from malla.config.model import Config
from malla.pilot.protocol import parse_protocol, protocol_from_port
from malla.pilot.services import (
    Endpoint,
    Resolution,
    Service,
    ServicePort,
    Workload,
    Health,
    frozen_map,
    labels_match,
    spiffe_id,
)

_RESOLUTION = {
    "NONE": Resolution.PASSTHROUGH,
    "STATIC": Resolution.CLIENT_SIDE_LB,
    "DNS": Resolution.DNS,
    "DNS_ROUND_ROBIN": Resolution.DNS_ROUND_ROBIN,
}
TLS_MODE_LABEL = "security.istio.io/tlsMode"


def services_from_service_entry(
    config: Config, *, default_export_to: frozenset[str] = frozenset({"*"})
) -> list[Service]:
    spec = config.spec
    ports = tuple(
        ServicePort(
            name=p.name or str(p.number),
            port=p.number,
            protocol=parse_protocol(p.protocol) if p.protocol else protocol_from_port(port=p.number, name=p.name or ""),
            target_port=p.target_port or None,
        )
        for p in spec.ports
    )
    selector = frozen_map(spec.workload_selector.labels) if spec.workload_selector else None
    return [
        Service(
            hostname=host,
            namespace=config.namespace,
            ports=ports,
            resolution=_RESOLUTION[spec.resolution or "NONE"],
            addresses=tuple(spec.addresses),
            mesh_external=(spec.location or "MESH_EXTERNAL") == "MESH_EXTERNAL",
            export_to=frozenset(spec.export_to) or default_export_to,
            selector=selector,
            subject_alt_names=tuple(spec.subject_alt_names),
            source=config.ref,
            name=host.split(".", 1)[0],
        )
        for host in spec.hosts
    ]


def endpoints_from_service_entry(
    config: Config,
    service: Service,
    *,
    workload_entries: Iterable[Config],
    workloads: Iterable[Workload],
    trust_domain: str,
) -> dict[int, list[Endpoint]]:
    """Endpoints per service port of one host of a ServiceEntry."""
    spec = config.spec
    out: dict[int, list[Endpoint]] = {p.port: [] for p in service.ports}
    entries: list[tuple[Any, str]] = [(e, f"{config.ref}.endpoints[{i}]") for i, e in enumerate(spec.endpoints)]
    if service.selector is not None:
        entries += [
            (we.spec, f"{we.namespace}/{we.name}")
            for we in workload_entries
            if we.namespace == config.namespace and labels_match(service.selector, we.spec.labels or {})
        ]
    for sp in service.ports:
        for entry, origin in entries:
            out[sp.port].append(
                _entry_endpoint(entry, sp, namespace=config.namespace, origin=origin, trust_domain=trust_domain)
            )
        if service.selector is not None:
            out[sp.port] += [
                workload_endpoint(w, sp, trust_domain=trust_domain)
                for w in workloads
                if w.namespace == config.namespace and labels_match(service.selector, w.labels)
            ]
        if (
            not entries
            and service.selector is None
            and service.resolution in (Resolution.DNS, Resolution.DNS_ROUND_ROBIN)
        ):
            out[sp.port].append(
                Endpoint(address=service.hostname, port=sp.target_port or sp.port, service_port=sp.port)
            )
    return out


def _entry_endpoint(entry: Any, sp: ServicePort, *, namespace: str, origin: str, trust_domain: str) -> Endpoint:
    labels = dict(entry.labels or {})
    port = (entry.ports or {}).get(sp.name) or sp.target_port or sp.port
    tls_mode = labels.get(TLS_MODE_LABEL) or ("istio" if entry.service_account else "disabled")
    sa = (
        spiffe_id(trust_domain=trust_domain, namespace=namespace, service_account=entry.service_account)
        if entry.service_account
        else ""
    )
    return Endpoint(
        address=entry.address or "",
        port=port,
        service_port=sp.port,
        labels=frozen_map(labels),
        locality=entry.locality or "",
        weight=entry.weight or 1,
        service_account=sa,
        network=entry.network or "",
        tls_mode=tls_mode,
        workload=origin,
        namespace=namespace,
    )


def workload_endpoint(workload: Workload, sp: ServicePort, *, trust_domain: str) -> Endpoint:
    """A self-registered workload as an endpoint of one service port."""
    port = _workload_port(workload.ports, sp)
    return Endpoint(
        address=workload.address,
        port=port,
        service_port=sp.port,
        labels=workload.labels,
        locality=workload.locality,
        weight=workload.weight,
        health=Health.HEALTHY if workload.healthy else Health.UNHEALTHY,
        service_account=spiffe_id(
            trust_domain=trust_domain, namespace=workload.namespace, service_account=workload.service_account
        ),
        network=workload.network,
        tls_mode="istio" if workload.sidecar else "disabled",
        workload=f"{workload.namespace}/{workload.name}",
        namespace=workload.namespace,
    )


def _workload_port(ports: Mapping[str, int], sp: ServicePort) -> int:
    if sp.target_port_name and sp.target_port_name in ports:
        return ports[sp.target_port_name]
    if sp.name in ports:
        return ports[sp.name]
    return sp.target_port or sp.port
