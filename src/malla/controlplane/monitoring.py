"""The monitoring endpoint (15014): Prometheus metrics of the control plane.

Istio's names, spelt as istiod exposes them (no ``_total`` added, so
Istio's dashboards and malla's Grafana JSON read them unchanged):

* ``pilot_xds`` connected proxies; ``pilot_total_xds_rejects`` NACKs by type
  (per current connection); ``pilot_total_xds_internal_errors`` proxies whose
  translation failed;
* ``pilot_xds_pushes`` proxies pushed, ``pilot_xds_push_time`` seconds to
  build and publish a push, ``pilot_proxy_convergence_time`` seconds from the
  first config or registry change a push carries (debounce included) to its
  end, once per proxy pushed, as Istio observes it. These three are counted
  as pushes happen (``DiscoveryService.push_listeners``), not read back from
  the short list of recent pushes, so they only ever grow;
* ``citadel_server_root_cert_expiry_timestamp`` when the CA runs, and the
  certificates agents report holding (``citadel_server_workload_certificates``);
* malla's own ``malla_config_resources``, ``malla_workloads``, and the
  process' CPU and memory.

Gauges read from the control plane are computed when scraped, so nothing
on the push path waits on a scrape.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Sequence
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from malla.discovery.service import PushRecord

if TYPE_CHECKING:
    from malla.controlplane.server import ControlPlane

CONVERGENCE_BUCKETS = (0.1, 0.5, 1, 3, 5, 10, 20, 30)  # Istio's buckets for pilot_proxy_convergence_time
PUSH_TIME_BUCKETS = (0.01, 0.1, 0.5, 1, 3, 5, 10, 20, 30)


def istio_counter(name: str, documentation: str, *, labels: dict[str, str], value: float) -> Metric:
    """A counter under istiod's exact name (prometheus_client would append ``_total``)."""
    metric = Metric(name, documentation, "unknown")
    metric.add_sample(name, labels, value)
    return metric


class _Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.total = 0.0

    def observe(self, value: float, times: int = 1) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += times
        self.total += value * times

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        running, buckets = 0, []
        for bound, count in zip([*map(str, self.buckets), "+Inf"], self.counts, strict=True):
            running += count
            buckets.append((bound, float(running)))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.total)


class PushMetrics:
    """Pushes counted as they happen (called on the push thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.proxies_pushed = 0
        self.convergence = _Histogram(CONVERGENCE_BUCKETS)
        self.push_time = _Histogram(PUSH_TIME_BUCKETS)

    def on_push(self, record: PushRecord) -> None:
        with self._lock:
            self.proxies_pushed += record.proxies
            self.push_time.observe(record.seconds)
            if record.proxies:
                self.convergence.observe(record.convergence, times=record.proxies)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            yield istio_counter("pilot_xds_pushes", "Config pushed to proxies (one per proxy and push).",
                                labels={"type": "all"}, value=self.proxies_pushed)
            yield self.push_time.family("pilot_xds_push_time", "Seconds to build and publish one push.")
            yield self.convergence.family(
                "pilot_proxy_convergence_time",
                "Seconds from the first change a push carries to the proxy having it queued (per proxy).",
            )


class _ControlPlaneCollector(Collector):
    def __init__(self, cp: ControlPlane, pushes: PushMetrics) -> None:
        self.cp = cp
        self.pushes = pushes

    def collect(self) -> Iterator[Metric]:
        cp = self.cp
        proxies = cp.proxy_status()
        connected = GaugeMetricFamily("pilot_xds", "Connected xDS proxies.", labels=["version"])
        connected.add_metric(["malla"], len(proxies))
        yield connected
        by_type: dict[str, int] = {}
        for p in proxies:
            for t in p["types"]:
                by_type[t["type"]] = by_type.get(t["type"], 0) + int(t["nacks"])
        rejects = Metric("pilot_total_xds_rejects", "Responses rejected by proxies (NACKs), by type.", "unknown")
        for type_name, n in sorted(by_type.items()):
            rejects.add_sample("pilot_total_xds_rejects", {"type": type_name}, n)
        yield rejects
        failed = sum(1 for why in dict(cp.discovery.rejected_nodes).values() if why.startswith("translation failed"))
        yield istio_counter("pilot_total_xds_internal_errors", "Proxies whose config could not be generated.",
                            labels={}, value=failed)
        yield from self.pushes.collect()
        resources = GaugeMetricFamily("malla_config_resources", "Istio resources in the config store.")
        resources.add_metric([], len(cp.store))
        yield resources
        workloads = GaugeMetricFamily("malla_workloads", "Workloads registered with the control plane.")
        workloads.add_metric([], len(cp.discovery.workloads()))
        yield workloads
        yield from _citadel(cp)


def _citadel(cp: ControlPlane) -> Iterator[Metric]:
    citadel = cp.citadel
    if citadel is None:
        return
    roots = citadel.authority.trust_bundle
    if roots:
        expiry = GaugeMetricFamily("citadel_server_root_cert_expiry_timestamp",
                                   "Unix time, in seconds, when the CA's root certificate expires.")
        expiry.add_metric([], max(r.not_valid_after_utc.timestamp() for r in roots))
        yield expiry
    held = GaugeMetricFamily("citadel_server_workload_certificates",
                             "Workload certificates agents report holding, by state.", labels=["state"])
    states: dict[str, int] = {}
    for report in citadel.board.items():
        state = str(report.get("state") or "unknown")
        states[state] = states.get(state, 0) + 1
    for state, n in sorted(states.items()):
        held.add_metric([state], n)
    yield held


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        pass


class MonitoringServer:
    def __init__(self, cp: ControlPlane, *, host: str, port: int) -> None:
        self.registry = CollectorRegistry()
        self.pushes = PushMetrics()
        cp.discovery.push_listeners.append(self.pushes.on_push)
        self.registry.register(_ControlPlaneCollector(cp, self.pushes))
        ProcessCollector(registry=self.registry)
        self.host, self.port = host, port
        self._server: Any = None

    def start(self) -> int:
        self._server = make_server(self.host, self.port, make_wsgi_app(self.registry), server_class=_Server,
                                   handler_class=_QuietHandler)
        # A short poll interval: shutdown() waits for one, and ``malla down`` should not.
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         name="malla-monitoring", daemon=True).start()
        return int(self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
