"""Fake workload agents for the console's tests: Istio's metrics as Prometheus text, over HTTP.

``Flow`` describes one caller -> service -> workload flow as one proxy
reports it, at a steady rate: counters grow with wall time, so any two
scrapes give the configured rate whatever their timing. ``FakeAgent`` serves
the text of its flows on ``<address>:15020/stats/prometheus`` (a loopback
address of its own, as malla's workloads have).
"""

from __future__ import annotations

import random
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


@dataclass
class Flow:
    source: str
    service: str  # service name; host is NAME.NAMESPACE.svc.cluster.local
    destination: str  # destination workload ("unknown" when the call never reached a sidecar)
    reporter: str = "destination"
    namespace: str = "default"
    rps: float = 10.0
    codes: dict[str, float] = field(default_factory=lambda: {"200": 1.0})  # response code -> share
    latency_bucket: float = 50  # every request lands in the bucket ending here (the one before it is empty)
    mtls: bool = True
    protocol: str = "http"
    source_version: str = "v1"
    destination_version: str = "v1"

    def labels(self, code: str) -> dict[str, str]:
        return {
            "reporter": self.reporter, "source_workload": self.source, "source_workload_namespace": self.namespace,
            "source_version": self.source_version, "source_canonical_service": self.source, "destination_service": f"{self.service}.{self.namespace}.svc.cluster.local",
            "destination_service_name": self.service, "destination_service_namespace": self.namespace,
            "destination_workload": self.destination,
            "destination_workload_namespace": self.namespace if self.destination != "unknown" else "unknown",
            "destination_version": self.destination_version if self.destination != "unknown" else "unknown",
            "request_protocol": self.protocol, "response_code": code, "response_flags": "-",
            "connection_security_policy": ("mutual_tls" if self.mtls else "none") if self.reporter == "destination" else "unknown",
        }


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


def istio_text(flows: list[Flow], *, elapsed: float) -> str:
    """Istio's families as an agent serves them, with counters for ``elapsed`` seconds of traffic."""
    lines = ["# HELP envoy_cluster_upstream_rq_total Envoy's own stats are served too.",
             "# TYPE envoy_cluster_upstream_rq_total counter", 'envoy_cluster_upstream_rq_total{cluster_name="x"} 7',
             "# TYPE istio_requests_total counter"]
    for f in flows:
        for code, share in f.codes.items():
            lines.append(f"istio_requests_total{{{_labels(f.labels(code))}}} {f.rps * share * elapsed:.6f}")
    lines.append("# TYPE istio_request_duration_milliseconds histogram")
    for f in flows:
        for code, share in f.codes.items():
            labels = f.labels(code)
            n = f.rps * share * elapsed
            for bound in BUCKETS:
                count = n if bound >= f.latency_bucket else 0.0
                lines.append(f'istio_request_duration_milliseconds_bucket{{{_labels(labels)},le="{bound}"}} {count:.6f}')
            lines.append(f'istio_request_duration_milliseconds_bucket{{{_labels(labels)},le="+Inf"}} {n:.6f}')
            lines.append(f"istio_request_duration_milliseconds_sum{{{_labels(labels)}}} {n * f.latency_bucket:.6f}")
            lines.append(f"istio_request_duration_milliseconds_count{{{_labels(labels)}}} {n:.6f}")
    return "\n".join(lines) + "\n"


def free_loopback_address() -> str:
    """A loopback address whose port 15020 is free (outside the range malla hands to workloads)."""
    for _ in range(200):
        address = f"127.{random.randint(200, 250)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
        with socket.socket() as s:
            try:
                s.bind((address, 15020))
            except OSError:
                continue
            return address
    raise AssertionError("no free loopback address for a fake agent")


class FakeAgent:
    """One workload instance's metrics endpoint."""

    def __init__(self, name: str, flows: list[Flow], *, app: str | None = None, namespace: str = "default",
                 version: str = "v1") -> None:
        self.name, self.app, self.namespace, self.version = name, app or name, namespace, version
        self.flows = flows
        self.started = time.time()
        self.address = free_loopback_address()
        self.scrapes = 0
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                if self.path != "/stats/prometheus":
                    self.send_error(404)
                    return
                agent.scrapes += 1
                body = istio_text(agent.flows, elapsed=time.time() - agent.started).encode()
                self.send_response(200)
                self.send_header("content-type", "text/plain; version=0.0.4")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer((self.address, 15020), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def registration(self, port: int = 9080) -> dict[str, Any]:
        return {"name": self.name, "namespace": self.namespace, "address": self.address,
                "labels": {"app": self.app, "version": self.version}, "ports": {"http": port}}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
