"""The service model translation works on: services, their ports and endpoints.

Istio's ``pilot/pkg/model/service.go`` in small. A ``Service`` is one host
name (FQDN) in one namespace with its ports; an ``Endpoint`` is one workload
instance serving one of those ports. They are built from ServiceEntry,
WorkloadEntry, Kubernetes Services and self-registered ``Workload``s by the
modules named after those sources; ``registry`` indexes them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from malla.pilot.protocol import Protocol

DEFAULT_DOMAIN = "cluster.local"


class Resolution(enum.StrEnum):
    """How a sidecar finds a service's endpoints (Istio's model.Resolution)."""

    CLIENT_SIDE_LB = "ClientSideLB"  # endpoints from the registry, over EDS
    DNS = "DNS"  # STRICT_DNS: every address a name resolves to
    DNS_ROUND_ROBIN = "DNSRoundRobin"  # LOGICAL_DNS: the first address, re-resolved
    PASSTHROUGH = "Passthrough"  # ORIGINAL_DST: wherever the caller was going


class Health(enum.StrEnum):
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    DRAINING = "DRAINING"


def frozen_map(items: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """A read-only, key-sorted copy: labels and port maps stay hashable-by-content and ordered."""
    return MappingProxyType(dict(sorted((items or {}).items())))


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    protocol: Protocol
    target_port: int | None = None  # ServiceEntry targetPort / Kubernetes numeric targetPort
    target_port_name: str | None = None  # Kubernetes named targetPort


@dataclass(frozen=True)
class Service:
    """One host name in one namespace (Istio's model.Service)."""

    hostname: str
    namespace: str
    ports: tuple[ServicePort, ...]
    resolution: Resolution = Resolution.CLIENT_SIDE_LB
    addresses: tuple[str, ...] = ()
    mesh_external: bool = False
    export_to: frozenset[str] = frozenset({"*"})
    selector: Mapping[str, str] | None = None  # None: no selector; {} selects all in the namespace
    subject_alt_names: tuple[str, ...] = ()
    source: str = ""  # "ServiceEntry default/ratings", for messages
    name: str = ""  # the short name: Kubernetes Service name, or the first host label

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.port == number), None)

    def port_named(self, name: str) -> ServicePort | None:
        return next((p for p in self.ports if p.name == name), None)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.hostname)

    def visible_from(self, namespace: str) -> bool:
        """Istio's exportTo: '*' everyone, '.' own namespace, '~' no one, or named namespaces."""
        if "*" in self.export_to:
            return True
        if "~" in self.export_to:
            return False
        if namespace == self.namespace and "." in self.export_to:
            return True
        return namespace in self.export_to


@dataclass(frozen=True)
class Endpoint:
    """One instance of a service port (Istio's IstioEndpoint)."""

    address: str  # IP, host name (DNS services) or unix:///path
    port: int
    service_port: int  # the Service port this endpoint serves
    labels: Mapping[str, str] = field(default_factory=frozen_map)
    locality: str = ""  # region/zone/subzone
    weight: int = 1
    health: Health = Health.HEALTHY
    service_account: str = ""  # spiffe://td/ns/NS/sa/NAME once resolved
    network: str = ""
    tls_mode: str = "disabled"  # "istio" when a sidecar terminates mTLS for it
    workload: str = ""  # "default/reviews-v2", for messages
    namespace: str = ""  # the workload's, where its PeerAuthentication lives

    @property
    def sort_key(self) -> tuple[str, int, str]:
        return (self.address, self.port, self.workload)


@dataclass(frozen=True)
class Workload:
    """A workload that registered itself: what ``malla run`` (the agent) tells the control plane.

    ``ports`` maps port names to the ports its sidecar accepts traffic on:
    {"http": 9080}. With ``sidecar`` true the workload speaks Istio mTLS.
    """

    name: str
    namespace: str
    labels: Mapping[str, str]
    address: str
    ports: Mapping[str, int]
    service_account: str = "default"
    locality: str = ""
    network: str = ""
    weight: int = 1
    healthy: bool = True
    sidecar: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", frozen_map(self.labels))
        object.__setattr__(self, "ports", MappingProxyType(dict(sorted(self.ports.items()))))


def spiffe_id(*, trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """A label selector: every key present with the same value (empty selects everything)."""
    return all(labels.get(k) == v for k, v in selector.items())


def kube_fqdn(name: str, namespace: str, domain: str = DEFAULT_DOMAIN) -> str:
    return f"{name}.{namespace}.svc.{domain}"
