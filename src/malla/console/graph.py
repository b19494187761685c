"""The service graph: workloads and services as nodes, traffic as edges (Kiali's workload graph).

In: per-second rates over a window (``timeseries.MetricsStore.rates``) and
the registered workloads (the API's ``/api/v1/workloads`` items). Out: the
JSON behind ``/api/v1/graph``: nodes per workload and per service, edges
caller -> service -> serving workload, each with requests/s, error %, p95
latency, mTLS share and Kiali's health. Registered workloads without
traffic still appear (idle), with the service they form, so a new mesh is
not an empty page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from malla.console.health import COLOURS, worst
from malla.console.istio_metrics import UNKNOWN, Counters, SeriesKey
from malla.console.timeseries import Rates
from malla.console.traffic import Traffic, effective

DEFAULT_DOMAIN = "cluster.local"


def workload_id(namespace: str, name: str, version: str = "") -> str:
    """One node per workload version: ``malla run --name reviews --version v2`` is workload reviews, version v2."""
    return f"workload:{namespace}/{name}" + (f"@{version}" if version else "")


def service_id(namespace: str, name: str) -> str:
    return f"service:{namespace}/{name}"


def service_of(key: SeriesKey) -> tuple[str, str, str]:
    """(namespace, name, host) of the service a series went to.

    A call that found no upstream may be reported with only the host it asked for: a Kubernetes
    name (``reviews``, ``reviews.default.svc.cluster.local``) still names the service, as DNS would
    resolve it from the caller's namespace, so its failures land on that service's node.
    """
    host = key.destination_service
    name = key.destination_service_name if key.destination_service_name != UNKNOWN else host
    namespace = key.destination_service_namespace
    if namespace == UNKNOWN and host != UNKNOWN:
        parts = host.split(".")
        if len(parts) == 1:
            name, namespace = host, key.source_namespace
        elif len(parts) >= 3 and parts[2] == "svc":
            name, namespace = parts[0], parts[1]
    return namespace, name, host


def registered_service(workload: Mapping[str, Any]) -> str:
    """The service a self-registered workload forms: its ``app`` label, else its name (malla's registry rule)."""
    return str((workload.get("labels") or {}).get("app") or workload["name"])


def source_node(key: SeriesKey) -> str:
    if key.source_workload == UNKNOWN:
        return "unknown"
    return workload_id(key.source_namespace, key.source_workload, key.source_version)


def destination_node(key: SeriesKey) -> str | None:
    if not key.destination_known:
        return None
    return workload_id(key.destination_namespace, key.destination_workload, key.destination_version)


@dataclass
class _Node:
    id: str
    kind: str  # workload, service or unknown
    namespace: str
    name: str
    host: str = ""
    instances: int = 0
    version: str = ""

    def json(self, inbound: Traffic, outbound: Traffic) -> dict[str, Any]:
        if self.kind == "workload":
            health = worst(inbound.health, outbound.health)
        else:
            health = inbound.health if self.kind == "service" else outbound.health
        url = f"/console/{self.kind}s/{self.namespace}/{self.name}" if self.kind != "unknown" else None
        return {
            "id": self.id, "kind": self.kind, "namespace": self.namespace, "name": self.name,
            "label": self.name if not self.version else f"{self.name}\n{self.version}",
            "host": self.host or None, "instances": self.instances, "version": self.version or None,
            "health": health, "idle": inbound.requests == 0 and outbound.requests == 0 and outbound.tcp_bytes == 0
            and inbound.tcp_bytes == 0, "inbound": inbound.to_json(), "outbound": outbound.to_json(), "url": url,
        }


class _Graph:
    def __init__(self) -> None:
        self.nodes: dict[str, _Node] = {}
        self.edges: dict[tuple[str, str], Traffic] = {}
        self.inbound: dict[str, Traffic] = {}
        self.outbound: dict[str, Traffic] = {}

    def node(self, node: _Node) -> _Node:
        return self.nodes.setdefault(node.id, node)

    def edge(self, source: str, target: str) -> Traffic:
        return self.edges.setdefault((source, target), Traffic())

    def add_workloads(self, workloads: Sequence[Mapping[str, Any]], *, domain: str) -> None:
        for w in workloads:
            ns, name = str(w["namespace"]), str(w["name"])
            version = str((w.get("labels") or {}).get("version") or "")
            node = self.node(_Node(workload_id(ns, name, version), "workload", ns, name, version=version))
            node.instances += 1
            svc = registered_service(w)
            self.node(_Node(service_id(ns, svc), "service", ns, svc, host=f"{svc}.{ns}.svc.{domain}"))
            self.edge(service_id(ns, svc), node.id)

    def add_series(self, key: SeriesKey, counters: Counters) -> None:
        src = source_node(key)
        if src == "unknown":
            self.node(_Node("unknown", "unknown", UNKNOWN, UNKNOWN))
        else:
            self.node(_Node(src, "workload", key.source_namespace, key.source_workload, version=key.source_version))
        ns, name, host = service_of(key)
        svc = self.node(_Node(service_id(ns, name), "service", ns, name, host=host))
        svc.host = svc.host if svc.host and svc.host != UNKNOWN else host
        self.edge(src, svc.id).add(key, counters)
        self.inbound.setdefault(svc.id, Traffic()).add(key, counters)
        self.outbound.setdefault(src, Traffic()).add(key, counters)
        dst_id = destination_node(key)
        if dst_id is not None:
            dst = self.node(_Node(dst_id, "workload", key.destination_namespace, key.destination_workload,
                                  version=key.destination_version))
            self.edge(svc.id, dst.id).add(key, counters)
            self.inbound.setdefault(dst.id, Traffic()).add(key, counters)


def edge_label(traffic: Traffic) -> str:
    """What the graph writes on an edge, one figure a line: rate, error share, p95 (or bytes/s for TCP)."""
    if traffic.requests == 0 and traffic.tcp_bytes > 0:
        return format_bytes(traffic.tcp_bytes) + "/s"
    if traffic.requests == 0:
        return ""
    parts = [f"{traffic.requests:.2f} rps"]
    error = traffic.error_percent or 0.0
    parts.append(f"{error:.1f}% err")
    p95 = traffic.quantile_ms(0.95)
    if p95 is not None:
        parts.append(f"p95 {p95:.0f} ms" if p95 >= 10 else f"p95 {p95:.1f} ms")
    return "\n".join(parts)


def format_bytes(value: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{value:.0f} B"
        value /= 1000
    return f"{value:.1f} GB"


def build_graph(rates: Rates, workloads: Sequence[Mapping[str, Any]], *, window: float,
                domain: str = DEFAULT_DOMAIN) -> dict[str, Any]:
    graph = _Graph()
    graph.add_workloads(workloads, domain=domain)
    for key, counters in sorted(effective(rates).items()):
        graph.add_series(key, counters)
    nodes = [
        n.json(graph.inbound.get(n.id, Traffic()), graph.outbound.get(n.id, Traffic()))
        for n in sorted(graph.nodes.values(), key=lambda n: n.id)
    ]
    edges = []
    for (source, target), traffic in sorted(graph.edges.items()):
        data = traffic.to_json()
        mtls = traffic.mtls_percent
        edges.append({
            "id": f"{source}->{target}", "source": source, "target": target,
            "protocol": _protocol(traffic), "label": edge_label(traffic), "mtls": bool(mtls and mtls > 0),
            "idle": traffic.requests == 0 and traffic.tcp_bytes == 0, **data,
        })
    return {"windowSeconds": window, "nodes": nodes, "edges": edges, "healthColours": COLOURS}


def _protocol(traffic: Traffic) -> str:
    if traffic.requests == 0 and traffic.tcp_bytes > 0:
        return "tcp"
    best = max(traffic.totals.items(), key=lambda kv: kv[1], default=("http", 0.0))
    return best[0]
