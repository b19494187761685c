"""The monitoring endpoint (15014): Prometheus metrics of the control plane and a debug view.

Istio's names where Istio has one: ``pilot_xds_pushes``,
``pilot_proxy_convergence_time``, ``pilot_xds`` (connected proxies),
``pilot_total_xds_rejects``. Values are read from the control plane when
scraped (a custom collector), so nothing on the push path waits on metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from malla.controlplane.server import ControlPlane


class _ControlPlaneCollector(Collector):
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def collect(self) -> Iterator[Metric]:
        cp = self.cp
        proxies = cp.proxy_status()
        connected = GaugeMetricFamily("pilot_xds", "Connected xDS proxies.", labels=["version"])
        connected.add_metric(["malla"], len(proxies))
        yield connected
        rejects = CounterMetricFamily("pilot_total_xds_rejects", "Responses rejected by proxies (NACKs).", labels=["type"])
        by_type: dict[str, int] = {}
        for p in proxies:
            for t in p["types"]:
                by_type[t["type"]] = by_type.get(t["type"], 0) + int(t["nacks"])
        for type_name, n in sorted(by_type.items()):
            rejects.add_metric([type_name], n)
        yield rejects
        pushes = CounterMetricFamily("pilot_xds_pushes", "Pushes of new config to proxies.", labels=["type"])
        pushes.add_metric(["all"], sum(r.proxies for r in cp.discovery.pushes))
        yield pushes
        resources = GaugeMetricFamily("malla_config_resources", "Istio resources in the config store.")
        resources.add_metric([], len(cp.store))
        yield resources
        workloads = GaugeMetricFamily("malla_workloads", "Workloads registered with the control plane.")
        workloads.add_metric([], len(cp.discovery.workloads()))
        yield workloads


class MonitoringServer:
    def __init__(self, cp: ControlPlane, *, host: str, port: int) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_ControlPlaneCollector(cp))
        self.host, self.port = host, port
        self._server: Any = None

    def start(self) -> int:
        self._server, _thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        return int(self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
