"""The workload's merged metrics endpoint: Istio's port 15020, ``/stats/prometheus``.

Istio's agent serves, on 15020, its own metrics merged with Envoy's
``/stats/prometheus``; malla's does the same with Istio's standard metrics
(``IstioMetrics``) first, then Envoy's. Many workloads share one host, so
it binds the workload's own loopback address (``127.0.1.7:15020``); when
that port is taken there (a gateway on 127.0.0.1 beside another one), it
takes any free port on the same address and says which.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from malla.telemetry.metrics import IstioMetrics

log = logging.getLogger(__name__)

METRICS_PORT = 15020
METRICS_PATH = "/stats/prometheus"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

EnvoyStats = Callable[[], bytes]  # Envoy's own /stats/prometheus text, b"" when it cannot be read


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class MetricsEndpoint:
    def __init__(self, metrics: IstioMetrics, *, address: str, envoy_stats: EnvoyStats,
                 port: int = METRICS_PORT) -> None:
        self.metrics = metrics
        self.envoy_stats = envoy_stats
        self.host, self.wanted_port = address, port
        self._server: _Server | None = None
        self._serving = False

    @property
    def bound(self) -> bool:
        return self._server is not None

    @property
    def address(self) -> str:
        """``host:port`` it serves on (after ``bind``)."""
        assert self._server is not None, "the metrics endpoint is not bound"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self._server.server_address[1]}"

    def bind(self) -> str:
        """Take the port now (before the agent forks; the socket is not inherited), serve later."""
        if self._server is not None:
            return self.address
        handler = _handler(self)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_class = type("MetricsServer", (_Server,), {"address_family": family})
        try:
            self._server = server_class((self.host, self.wanted_port), handler)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            log.info("port %d is taken on %s; serving metrics on a free port there", self.wanted_port, self.host)
            self._server = server_class((self.host, 0), handler)
        return self.address

    def start(self) -> str:
        """Serve (binding first if ``bind`` was not called); returns ``host:port``."""
        address = self.bind()
        assert self._server is not None
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                         name="malla-metrics", daemon=True).start()
        self._serving = True
        return address

    def body(self) -> bytes:
        envoy = self.envoy_stats()
        return self.metrics.exposition() + (b"\n" + envoy if envoy else b"")

    def stop(self) -> None:
        if self._server is not None:
            if self._serving:
                self._server.shutdown()
            self._server.server_close()
            self._serving = False
            self._server = None


def _handler(endpoint: MetricsEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path in (METRICS_PATH, "/metrics"):
                self._send(200, endpoint.body(), CONTENT_TYPE)
            elif path == "/healthz/ready":
                self._send(200, b"ok\n", "text/plain")
            else:
                self._send(404, f"not found; metrics are at {METRICS_PATH}\n".encode(), "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
            pass

    return Handler
