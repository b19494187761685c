"""The service registry: every service and endpoint the mesh knows, indexed.

What comes in: ServiceEntry and WorkloadEntry configs, Kubernetes Services
as plain dicts, and self-registered ``Workload``s. What goes out: a frozen
``Registry`` answering "which service is host H, seen from namespace N" and
"which endpoints serve port P of it". A workload that no Kubernetes Service
or ServiceEntry declares still forms a service: ``APP.NAMESPACE.svc.DOMAIN``
named after its ``app`` label (or its name), with its named ports, which is
what ``malla run --name reviews --port 9080`` relies on.

Host names resolve as Kubernetes DNS would from a namespace: ``reviews``,
``reviews.default``, ``reviews.default.svc`` and the FQDN all find
``reviews.default.svc.cluster.local``; ``*.example.com`` ServiceEntries
match names under them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from malla.config.model import Config
from malla.pilot.kube import endpoints_from_kube, service_from_kube
from malla.pilot.protocol import protocol_from_port
from malla.pilot.serviceentry import endpoints_from_service_entry, services_from_service_entry, workload_endpoint
from malla.pilot.services import (
    DEFAULT_DOMAIN,
    Endpoint,
    Service,
    ServicePort,
    Workload,
    frozen_map,
    kube_fqdn,
)

ServiceKey = tuple[str, str]  # (namespace, hostname)


@dataclass(frozen=True)
class Registry:
    services: tuple[Service, ...] = ()  # sorted by (hostname, namespace)
    endpoints: Mapping[ServiceKey, Mapping[int, tuple[Endpoint, ...]]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    domain: str = DEFAULT_DOMAIN
    problems: tuple[str, ...] = ()  # inputs that were skipped, with why

    def __post_init__(self) -> None:
        by_host: dict[str, list[Service]] = defaultdict(list)
        for s in self.services:
            by_host[s.hostname].append(s)
        object.__setattr__(self, "_by_host", {h: tuple(v) for h, v in by_host.items()})

    def services_for_host(self, hostname: str) -> tuple[Service, ...]:
        return self._by_host.get(hostname, ())  # type: ignore[attr-defined]

    def service(self, hostname: str, *, namespace: str) -> Service | None:
        """The service with exactly this host name that ``namespace`` sees (its own first)."""
        visible = [s for s in self.services_for_host(hostname) if s.visible_from(namespace)]
        same = [s for s in visible if s.namespace == namespace]
        return (same or visible or [None])[0]

    def lookup(self, name: str, *, namespace: str) -> Service | None:
        """Resolve a name as a client in ``namespace`` would: short, partly and fully qualified."""
        name = name.lower().rstrip(".")
        for candidate in (
            name,
            f"{name}.{namespace}.svc.{self.domain}",
            f"{name}.svc.{self.domain}",
            f"{name}.{self.domain}",
        ):
            found = self.service(candidate, namespace=namespace)
            if found:
                return found
        wildcards = [s for s in self.visible_services(namespace) if s.hostname.startswith("*.")]
        matching = [s for s in wildcards if name.endswith(s.hostname[1:])]
        return max(matching, key=lambda s: len(s.hostname), default=None)

    def visible_services(self, namespace: str) -> tuple[Service, ...]:
        """One service per host name, as ``namespace`` sees them, sorted by host name."""
        seen: dict[str, Service] = {}
        for s in self.services:
            if s.hostname not in seen and s.visible_from(namespace):
                chosen = self.service(s.hostname, namespace=namespace)
                if chosen:
                    seen[s.hostname] = chosen
        return tuple(seen.values())

    def endpoints_of(self, service: Service, port: int) -> tuple[Endpoint, ...]:
        return self.endpoints.get(service.key, {}).get(port, ())


def build_registry(
    *,
    configs: Iterable[Config] = (),
    kube_services: Iterable[Mapping] = (),
    workloads: Iterable[Workload] = (),
    domain: str = DEFAULT_DOMAIN,
    trust_domain: str = DEFAULT_DOMAIN,
    default_export_to: Iterable[str] = ("*",),
) -> Registry:
    """Services declared by Kubernetes Services, then ServiceEntries, then formed by workloads alone.

    ``default_export_to`` applies to services that do not say (MeshConfig.defaultServiceExportTo).
    """
    configs = sorted(configs, key=lambda c: (c.namespace, c.name))
    workloads = sorted(workloads, key=lambda w: (w.namespace, w.name, w.address))
    entries = [c for c in configs if c.kind == "ServiceEntry"]
    workload_entries = [c for c in configs if c.kind == "WorkloadEntry"]
    services: dict[ServiceKey, Service] = {}
    endpoints: dict[ServiceKey, dict[int, list[Endpoint]]] = defaultdict(lambda: defaultdict(list))
    problems: list[str] = []
    export = frozenset(default_export_to)

    def add(service: Service, eps: Mapping[int, list[Endpoint]]) -> None:
        kept = services.setdefault(service.key, service)
        if kept is not service:
            problems.append(f"{service.source}: host {service.hostname} is already defined by {kept.source}")
        for port, found in eps.items():
            endpoints[kept.key][port] += found

    for body in kube_services:
        try:
            svc = service_from_kube(body, domain=domain, default_export_to=export)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        add(svc, endpoints_from_kube(body, svc, workloads=workloads, trust_domain=trust_domain))
    for cfg in entries:
        for svc in services_from_service_entry(cfg, default_export_to=export):
            eps = endpoints_from_service_entry(
                cfg, svc, workload_entries=workload_entries, workloads=workloads, trust_domain=trust_domain
            )
            add(svc, eps)
    for svc, eps in _implicit_services(
        workloads, known=services.keys(), domain=domain, trust_domain=trust_domain, export_to=export
    ):
        add(svc, eps)
    return Registry(
        services=tuple(sorted(services.values(), key=lambda s: (s.hostname, s.namespace))),
        endpoints=MappingProxyType(
            {
                key: MappingProxyType({p: _sorted(e) for p, e in sorted(ports.items())})
                for key, ports in endpoints.items()
            }
        ),
        domain=domain,
        problems=tuple(problems),
    )


def _sorted(endpoints: list[Endpoint]) -> tuple[Endpoint, ...]:
    unique = {(e.address, e.port, e.workload): e for e in endpoints}
    return tuple(sorted(unique.values(), key=lambda e: e.sort_key))


def service_name_of(workload: Workload) -> str:
    """The service a self-registered workload forms when nothing declares one: its ``app`` label."""
    return workload.labels.get("app") or workload.name


def _implicit_services(
    workloads: list[Workload], *, known: Iterable[ServiceKey], domain: str, trust_domain: str, export_to: frozenset[str]
) -> Iterable[tuple[Service, dict[int, list[Endpoint]]]]:
    groups: dict[ServiceKey, list[Workload]] = defaultdict(list)
    for w in workloads:
        groups[(w.namespace, kube_fqdn(service_name_of(w), w.namespace, domain))].append(w)
    taken = set(known)
    for (namespace, host), members in sorted(groups.items()):
        if (namespace, host) in taken:
            continue
        port_by_name: dict[str, int] = {}
        for w in members:
            for name, number in w.ports.items():
                if name not in port_by_name and number not in port_by_name.values():
                    port_by_name[name] = number
        ports = tuple(
            ServicePort(name=n, port=p, protocol=protocol_from_port(port=p, name=n))
            for n, p in sorted(port_by_name.items(), key=lambda kv: (kv[1], kv[0]))
        )
        name = service_name_of(members[0])
        service = Service(
            hostname=host,
            namespace=namespace,
            ports=ports,
            selector=frozen_map({"app": name}) if "app" in members[0].labels else None,
            export_to=export_to,
            source=f"workload {namespace}/{name}",
            name=name,
        )
        eps = {
            sp.port: [workload_endpoint(w, sp, trust_domain=trust_domain) for w in members if sp.name in w.ports]
            for sp in ports
        }
        yield service, eps
