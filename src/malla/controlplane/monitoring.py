"""The monitoring endpoint (15014): Prometheus metrics of the control plane and a debug view.

Istio's names where Istio has one: ``pilot_xds_pushes``,
``pilot_proxy_convergence_time``, ``pilot_xds`` (connected proxies),
``pilot_total_xds_rejects``. Values are read from the control plane when
scraped (a custom collector), so nothing on the push path waits on metrics.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
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


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        pass


class MonitoringServer:
    def __init__(self, cp: ControlPlane, *, host: str, port: int) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_ControlPlaneCollector(cp))
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
