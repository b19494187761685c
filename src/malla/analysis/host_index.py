"""The hosts a namespace can route to: ServiceEntry hosts and Kubernetes Services, by visibility.

Each entry is keyed by (scope, FQDN), where the scope is ``*`` or the one
namespace it is exported to (ServiceEntry ``exportTo``, the Service
``networking.istio.io/exportTo`` annotation). A lookup from a namespace tries
the all-namespaces scope, then the namespaces the looking resource exports
to, then wildcard ServiceEntry hosts, as Istio's analyzers do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from malla.analysis import kube
from malla.analysis.context import AnalysisContext
from malla.analysis.hosts import (
    EXPORT_ALL,
    EXPORT_LOCAL,
    EXPORT_TO_ANNOTATION,
    annotation_scopes,
    export_scopes,
    is_wildcard,
    service_fqdn,
    to_fqdn,
)


@dataclass(frozen=True)
class HostEntry:
    """A routable host: its ports, what defined it, and a ServiceEntry's workload selector."""

    ports: tuple[int, ...]
    source: str  # "ServiceEntry ns/name" or "Service ns/name"
    workload_selector: Mapping[str, str] = field(default_factory=dict)


class HostIndex:
    """Visible hosts, built once per analysis run from ServiceEntries and Services."""

    def __init__(self, ctx: AnalysisContext) -> None:
        self._domain = ctx.mesh.cluster_domain
        self._entries: dict[tuple[str, str], HostEntry] = {}
        for se in ctx.configs("ServiceEntry"):
            ports = tuple(p.number or 0 for p in se.spec.ports)
            selector = dict(se.spec.workload_selector.labels) if se.spec.workload_selector else {}
            entry = HostEntry(ports, se.ref, selector)
            for scope in export_scopes(se.spec.export_to, se.namespace):
                for host in se.spec.hosts:
                    self._entries[(scope, to_fqdn(host, se.namespace, cluster_domain=self._domain))] = entry
        for svc in ctx.kube("Service"):
            ns = kube.namespace_of(svc) or ""
            ports = tuple(p.get("port") for p in kube.service_ports(svc) if isinstance(p.get("port"), int))
            entry = HostEntry(ports, f"Service {ns}/{svc.name}")
            fqdn = service_fqdn(svc.name, ns, cluster_domain=self._domain)
            for scope in annotation_scopes(kube.annotations(svc).get(EXPORT_TO_ANNOTATION), ns):
                self._entries[(scope, fqdn)] = entry
        self._wildcards = sorted(
            ((scope, host, entry) for (scope, host), entry in self._entries.items() if is_wildcard(host)),
            key=lambda t: (-len(t[1]), t[0], t[1]),
        )

    def lookup(self, host: str, *, namespace: str, export_to: Sequence[str] = ()) -> HostEntry | None:
        """The entry ``host`` names when written in ``namespace`` by a resource exported to ``export_to``."""
        fqdn = to_fqdn(host, namespace, cluster_domain=self._domain)
        if found := self._entries.get((EXPORT_ALL, fqdn)):
            return found
        scopes = [namespace] if not export_to else [namespace if e == EXPORT_LOCAL else e for e in export_to]
        for scope in scopes:
            if found := self._entries.get((scope, fqdn)):
                return found
        bare = host[1:] if is_wildcard(host) else host
        for scope, se_host, entry in self._wildcards:
            if scope in (EXPORT_ALL, namespace) and bare.endswith(se_host[1:]):
                return entry
        return None
