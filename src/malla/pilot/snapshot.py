"""What translation reads: ``MeshConfig``, ``MeshSnapshot`` and ``Proxy``.

``MeshConfig`` holds every tunable (Istio's MeshConfig plus what Istio reads
from environment flags), so that translation has no hidden inputs.
``MeshSnapshot`` is the world at one instant: configs indexed by kind,
namespace and name, the service registry, and a content hash that changes
exactly when an input does. ``Proxy`` is one connected Envoy as translation
needs to know it. All three are frozen; generators take them and nothing else.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from malla.api.base import Duration
from malla.config.model import Config
from malla.pilot.protocol import Protocol, protocol_from_port
from malla.pilot.destination_rules import MergedRule, destination_rule_for, host_matches, resolve_host
from malla.pilot.registry import Registry, build_registry
from malla.pilot.services import DEFAULT_DOMAIN, Service, Workload, frozen_map, labels_match

_SECOND = 1_000_000_000


@dataclass(frozen=True)
class RetryDefaults:
    """The retry policy every HTTP route gets unless a VirtualService says otherwise (Istio's)."""

    attempts: int = 2
    retry_on: str = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    retriable_status_codes: tuple[int, ...] = (503,)
    host_selection_retry_max_attempts: int = 5


@dataclass(frozen=True)
class MeshConfig:
    """Every tunable of translation and of the push path, in one frozen object."""

    trust_domain: str = DEFAULT_DOMAIN
    domain: str = DEFAULT_DOMAIN  # DNS suffix of Kubernetes-style host names
    root_namespace: str = "istio-system"
    outbound_traffic_policy: str = "ALLOW_ANY"  # or REGISTRY_ONLY
    default_retries: RetryDefaults = field(default_factory=RetryDefaults)
    # Off: a port of undeclared protocol is plain TCP. On is reserved: sniffing (http_inspector)
    # is not generated yet, and such ports then get no outbound listener.
    protocol_sniffing: bool = False
    connect_timeout: Duration = field(default_factory=lambda: Duration(10 * _SECOND))
    tcp_keepalive: bool = False
    dns_refresh_rate: Duration = field(default_factory=lambda: Duration(60 * _SECOND))
    enable_auto_mtls: bool = True
    default_mtls_mode: str = "PERMISSIVE"  # PeerAuthentication mode when none applies
    h2_upgrade_policy: str = "DO_NOT_UPGRADE"
    default_lb_policy: str = "LEAST_REQUEST"
    locality_lb_enabled: bool = True
    default_service_export_to: tuple[str, ...] = ("*",)
    default_virtual_service_export_to: tuple[str, ...] = ("*",)
    default_destination_rule_export_to: tuple[str, ...] = ("*",)
    outbound_port: int = 15001  # a sidecar's HTTP proxy listener (the app's HTTP_PROXY)
    inbound_passthrough_port: int = 15006
    sds_cluster: str | None = None  # None: secrets over ADS; else the agent's SDS cluster (Istio's "sds-grpc")
    system_ca_bundle: str = "/etc/ssl/certs/ca-certificates.crt"  # SIMPLE TLS with no caCertificates
    access_log_path: str | None = None  # Envoy file access log on every HTTP connection manager
    # Tracing (malla.telemetry.proxy_config): Envoy's Zipkin tracer on every HTTP connection manager
    # when an address is set, sending to the Zipkin v2 API at host:port; percent of requests sampled.
    zipkin_address: str | None = None
    trace_sampling: float = 1.0  # Istio's defaultConfig.tracing.sampling
    debounce_after: Duration = field(default_factory=lambda: Duration(_SECOND // 10))
    debounce_max: Duration = field(default_factory=lambda: Duration(10 * _SECOND))

    def with_(self, **changes: Any) -> MeshConfig:
        return replace(self, **changes)


class ProxyKind(enum.StrEnum):
    SIDECAR = "sidecar"
    ROUTER = "router"  # an ingress or egress gateway


class CaptureMode(enum.StrEnum):
    """How the app's traffic reaches its sidecar."""

    EXPLICIT = "explicit"  # the app uses the sidecar as its HTTP proxy; TCP services on local ports
    TRANSPARENT = "transparent"  # redirected by iptables/nftables to 15001/15006 (original_dst)


class XdsMode(enum.StrEnum):
    SOTW = "sotw"
    DELTA = "delta"


@dataclass(frozen=True)
class InboundPort:
    """A port the proxy accepts mesh traffic on (``port``) and where its app listens (``app_port``)."""

    port: int
    app_port: int
    name: str = ""
    protocol: Protocol = Protocol.TCP


@dataclass(frozen=True)
class Proxy:
    """One connected Envoy: who it is and what it serves.

    ``ip`` is the address peers reach it at (its endpoints' address);
    ``app_address`` is where its application listens.
    """

    id: str
    namespace: str
    kind: ProxyKind = ProxyKind.SIDECAR
    labels: Mapping[str, str] = field(default_factory=frozen_map)
    ip: str = "127.0.0.1"
    app_address: str = "127.0.0.1"
    service_account: str = "default"
    inbound: tuple[InboundPort, ...] = ()
    outbound_port: int | None = None  # None: MeshConfig.outbound_port
    locality: str = ""
    network: str = ""
    xds_mode: XdsMode = XdsMode.SOTW
    capture: CaptureMode = CaptureMode.EXPLICIT
    workload_name: str = ""  # what metrics call it (source_workload); "": no peer metadata headers
    access_log_service: str = ""  # the agent's access-log socket (Istio metrics); "": none
    metrics_address: str = ""  # host:port of its merged /stats/prometheus (a scrape target, not translated)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", frozen_map(self.labels))

    @property
    def is_router(self) -> bool:
        return self.kind is ProxyKind.ROUTER


@dataclass(frozen=True, eq=False)
class MeshSnapshot:
    """The whole world at one instant; build with :meth:`build`."""

    mesh: MeshConfig
    configs: tuple[Config, ...]
    registry: Registry
    version: str

    @classmethod
    def build(
        cls,
        *,
        configs: Iterable[Config] = (),
        kube_services: Iterable[Mapping[str, Any]] = (),
        workloads: Iterable[Workload] = (),
        mesh: MeshConfig | None = None,
    ) -> MeshSnapshot:
        mesh = mesh or MeshConfig()
        configs = tuple(sorted(configs, key=lambda c: (c.kind, c.namespace, c.name)))
        kube_services, workloads = list(kube_services), list(workloads)
        registry = build_registry(
            configs=configs,
            kube_services=kube_services,
            workloads=workloads,
            domain=mesh.domain,
            trust_domain=mesh.trust_domain,
            default_export_to=mesh.default_service_export_to,
        )
        version = _content_hash(mesh, configs, registry)
        return cls(mesh=mesh, configs=configs, registry=registry, version=version)

    def __post_init__(self) -> None:
        index: dict[str, dict[str, dict[str, Config]]] = defaultdict(lambda: defaultdict(dict))
        for c in self.configs:
            index[c.kind][c.namespace][c.name] = c
        frozen = {
            k: MappingProxyType({ns: MappingProxyType(names) for ns, names in v.items()}) for k, v in index.items()
        }
        object.__setattr__(self, "_index", MappingProxyType(frozen))
        rules_by_host: dict[str, list[Config]] = defaultdict(list)
        for c in self.configs_of("DestinationRule"):
            rules_by_host[resolve_host(c.spec.host or "", namespace=c.namespace, domain=self.mesh.domain)].append(c)
        object.__setattr__(self, "_rules_by_host", {h: tuple(v) for h, v in rules_by_host.items()})
        object.__setattr__(self, "_wildcard_rule_hosts", tuple(h for h in rules_by_host if h.startswith("*")))

    def configs_of(self, kind: str, namespace: str | None = None) -> tuple[Config, ...]:
        """Configs of one kind (in one namespace), sorted by namespace and name."""
        by_ns = self._index.get(kind, {})  # type: ignore[attr-defined]
        spaces = [namespace] if namespace is not None else sorted(by_ns)
        return tuple(by_ns[ns][n] for ns in spaces if ns in by_ns for n in sorted(by_ns[ns]))

    def config(self, kind: str, namespace: str, name: str) -> Config | None:
        return self._index.get(kind, {}).get(namespace, {}).get(name)  # type: ignore[attr-defined]

    def destination_rules_for_host(self, hostname: str) -> tuple[Config, ...]:
        """DestinationRules whose host (resolved in their namespace) is or covers ``hostname``."""
        by_host = self._rules_by_host  # type: ignore[attr-defined]
        hosts = [hostname, *(h for h in self._wildcard_rule_hosts if h != hostname and host_matches(h, hostname))]  # type: ignore[attr-defined]
        found = [c for host in hosts for c in by_host.get(host, ())]
        return tuple(sorted(found, key=lambda c: (c.namespace, c.name)))

    def destination_rule(self, proxy: Proxy, service: Service) -> MergedRule | None:
        """The DestinationRule(s) ``proxy`` applies to ``service``, merged (see ``destination_rules``)."""
        return destination_rule_for(
            self.destination_rules_for_host(service.hostname),
            service,
            proxy_namespace=proxy.namespace,
            proxy_labels=proxy.labels,
            root_namespace=self.mesh.root_namespace,
            domain=self.mesh.domain,
            default_export=self.mesh.default_destination_rule_export_to,
        )

    def sidecar_scope(self, proxy: Proxy) -> Config | None:
        """The Sidecar resource for a proxy, as Istio picks it: own namespace with a
        matching selector, else its namespace's selector-less one, else the root namespace's."""
        own = self.configs_of("Sidecar", proxy.namespace)
        for c in own:
            sel = c.spec.workload_selector
            if sel is not None and sel.labels and labels_match(sel.labels, proxy.labels):
                return c
        for c in own:
            if c.spec.workload_selector is None or not c.spec.workload_selector.labels:
                return c
        root = [
            c
            for c in self.configs_of("Sidecar", self.mesh.root_namespace)
            if c.spec.workload_selector is None or not c.spec.workload_selector.labels
        ]
        return root[0] if root else None


def _content_hash(mesh: MeshConfig, configs: tuple[Config, ...], registry: Registry) -> str:
    digest = hashlib.sha256()
    digest.update(repr(mesh).encode())
    for c in configs:
        digest.update(json.dumps(c.to_dict(), sort_keys=True, default=str).encode())
    digest.update(repr(registry.services).encode())
    digest.update(repr(sorted((k, {p: e for p, e in v.items()}) for k, v in registry.endpoints.items())).encode())
    return digest.hexdigest()[:16]


def sidecar_for(
    workload: Workload,
    *,
    app_ports: Mapping[str, int] | None = None,
    app_address: str = "127.0.0.1",
    proxy_id: str | None = None,
    capture: CaptureMode = CaptureMode.EXPLICIT,
    outbound_port: int | None = None,
) -> Proxy:
    """The sidecar of a self-registered workload.

    It serves the workload's registered ports at the workload's address; the app
    listens at ``app_address`` on ``app_ports[name]`` (the same number when not given).
    """
    app_ports = app_ports or {}
    inbound = tuple(
        InboundPort(
            port=port,
            app_port=app_ports.get(name, port),
            name=name,
            protocol=protocol_from_port(port=port, name=name),
        )
        for name, port in sorted(workload.ports.items(), key=lambda kv: kv[1])
    )
    return Proxy(
        id=proxy_id
        or f"sidecar~{workload.address}~{workload.name}.{workload.namespace}~{workload.namespace}.svc.cluster.local",
        namespace=workload.namespace,
        labels=workload.labels,
        ip=workload.address,
        app_address=app_address,
        service_account=workload.service_account,
        inbound=inbound,
        outbound_port=outbound_port,
        locality=workload.locality,
        network=workload.network,
        capture=capture,
    )
