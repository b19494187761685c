"""Istio's metrics and Zipkin traces from a real mesh: real agents, real Envoys, a real Prometheus.

A client workload calls two services through its sidecar (``reviews``
answers 200, ``details`` 404); every proxy's agent turns Envoy's access logs
into Istio's series on its own address, port 15020. The tests read them as a
user would: straight from the endpoints, through a Prometheus started with
the configuration ``malla prometheus-config`` prints, and as traces from the
control plane's Zipkin API.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from malla.controlplane.server import ControlPlane, ControlPlaneOptions
from malla.pilot.snapshot import XdsMode
from tests.e2e.mesh import App, Member, Mesh, tcp_line, wait_for
from tests.telemetry.conftest import Prometheus

pytestmark = [pytest.mark.envoy]

QUERY = "sum(rate(istio_requests_total[1m])) by (source_workload, destination_service, response_code)"


def api(cp: ControlPlane, path: str, **params: Any) -> httpx.Response:
    assert cp.state is not None
    return httpx.get(cp.state.api_url + path, params=params, timeout=10, trust_env=False)


def metrics_url(cp: ControlPlane, member: Member) -> str:
    groups = api(cp, "/api/v1/telemetry/targets").json()
    found = [g for g in groups if g["labels"]["__meta_malla_address"] == member.address]
    assert found, f"no scrape target for {member.app.name} at {member.address}: {groups}"
    labels = found[0]["labels"]
    return f"http://{found[0]['targets'][0]}{labels['__metrics_path__']}"


def series(cp: ControlPlane, member: Member, name: str) -> list[tuple[dict[str, str], float]]:
    """Samples called ``name`` on the member's merged metrics endpoint."""
    text = httpx.get(metrics_url(cp, member), timeout=10, trust_env=False).text
    return [(dict(s.labels), s.value) for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name]


def find(samples: list[tuple[dict[str, str], float]], **labels: str) -> float:
    return sum(v for got, v in samples if all(got.get(k) == want for k, want in labels.items()))


@pytest.fixture
def traffic_mesh(mesh: Mesh) -> Iterator[tuple[Mesh, Member, Member, Member]]:
    reviews, details, client = mesh.start(App("reviews", "v1"), App("details", "v1", args=("--status", "404")),
                                          clients=1)
    yield mesh, client, reviews, details


def test_both_proxies_report_istio_metrics_with_istio_labels(traffic_mesh) -> None:
    mesh, client, reviews, _ = traffic_mesh
    http = client.http()
    for _ in range(5):
        assert http.get("http://reviews:9080/").status == 200
    host = f"reviews.{mesh.namespace}.svc.cluster.local"
    wanted = dict(source_workload="client", destination_workload="reviews", destination_service=host,
                  response_code="200", request_protocol="http")

    server = wait_for(lambda: series(mesh.cp, reviews, "istio_requests_total"),
                      lambda s: find(s, reporter="destination", **wanted) >= 5, timeout=30,
                      what="the server's sidecar to report 5 requests")
    labels = next(got for got, _ in server if got.get("reporter") == "destination")
    assert labels["source_workload_namespace"] == mesh.namespace
    assert labels["destination_workload_namespace"] == mesh.namespace
    assert labels["destination_app"] == "reviews" and labels["destination_version"] == "v1"
    assert labels["source_app"] == "client"
    assert labels["destination_service_name"] == "reviews"
    assert labels["destination_service_namespace"] == mesh.namespace
    assert labels["response_flags"] == "-" and labels["grpc_response_status"] == ""
    # The caller's identity is proven by its certificate when the mesh speaks mTLS.
    if labels["connection_security_policy"] == "mutual_tls":
        assert labels["source_principal"] == f"spiffe://cluster.local/ns/{mesh.namespace}/sa/client"
    else:
        assert labels["connection_security_policy"] == "none" and labels["source_principal"] == "unknown"

    client_side = wait_for(lambda: series(mesh.cp, client, "istio_requests_total"),
                           lambda s: find(s, reporter="source", **wanted) >= 5, timeout=30,
                           what="the client's sidecar to report 5 requests")
    labels = next(got for got, _ in client_side if got.get("reporter") == "source")
    assert labels["destination_version"] == "v1" and labels["connection_security_policy"] == "unknown"
    buckets = series(mesh.cp, client, "istio_request_duration_milliseconds_count")
    assert find(buckets, reporter="source", destination_workload="reviews") >= 5
    sizes = series(mesh.cp, reviews, "istio_response_bytes_sum")
    assert find(sizes, reporter="destination", source_workload="client") > 0
    envoy_own = series(mesh.cp, reviews, "envoy_server_live")
    assert envoy_own and envoy_own[0][1] == 1, "Envoy's own /stats/prometheus is merged in"


def test_tcp_connections_are_counted_on_both_sides(mesh: Mesh) -> None:
    mongo, client = mesh.start(App("mongo", "v1", ports=("27017/tcp",), args=("--tcp",)), clients=1)
    for _ in range(3):
        assert tcp_line(client.address, 27017).startswith("mongo v1")
    host = f"mongo.{mesh.namespace}.svc.cluster.local"
    closed = wait_for(lambda: series(mesh.cp, client, "istio_tcp_connections_closed_total"),
                      lambda s: find(s, reporter="source", destination_service=host) >= 3, timeout=30,
                      what="the client's sidecar to report 3 closed TCP connections")
    # A TCP peer sends no metadata: the caller names it from the registry, by its address.
    assert find(closed, reporter="source", destination_workload="mongo", source_workload="client") >= 3
    opened = series(mesh.cp, client, "istio_tcp_connections_opened_total")
    assert find(opened, reporter="source", destination_service=host, request_protocol="tcp") >= 3
    line = f"mongo v1 {mongo.info['pid']}\n".encode()
    sent = wait_for(lambda: series(mesh.cp, mongo, "istio_tcp_sent_bytes_total"),
                    lambda s: find(s, reporter="destination", destination_service=host) >= 3 * len(line),
                    timeout=30, what="the server's sidecar to count the bytes it sent")
    assert find(sent, reporter="destination", destination_workload="mongo") >= 3 * len(line)


def test_prometheus_with_the_printed_config_sees_requests_by_workload_service_and_code(
    traffic_mesh, tmp_path: Path
) -> None:
    mesh, client, _, _ = traffic_mesh
    assert mesh.cp.state is not None
    env = dict(os.environ, MALLA_HOME=str(mesh.cp.home))
    printed = subprocess.run(
        [sys.executable, "-m", "malla", "prometheus-config", "--scrape-interval", "1s", "--refresh-interval", "1s"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    assert mesh.cp.state.api_url + "/api/v1/telemetry/targets" in printed.stdout
    config = tmp_path / "prometheus.yml"
    config.write_text(printed.stdout)
    prometheus = Prometheus(config, tmp_path)
    stop = threading.Event()
    sender = threading.Thread(target=_send, args=(client, stop), daemon=True)
    try:
        prometheus.wait_ready()
        sender.start()
        host = f"{{}}.{mesh.namespace}.svc.cluster.local"
        wanted = {("client", host.format("reviews"), "200"), ("client", host.format("details"), "404")}

        def seen() -> dict[tuple[str, str, str], float]:
            rows = prometheus.query(QUERY)
            return {(r["metric"].get("source_workload", ""), r["metric"].get("destination_service", ""),
                     r["metric"].get("response_code", "")): float(r["value"][1]) for r in rows}

        rates = wait_for(seen, lambda got: all(got.get(k, 0) > 0 for k in wanted), timeout=90, interval=1.0,
                         what=f"prometheus to answer {QUERY} with {sorted(wanted)}")
        assert {k for k in rates if k[1].endswith(mesh.namespace + ".svc.cluster.local")} == wanted
        up = prometheus.query('up{job="malla-controlplane"}')
        assert up and up[0]["value"][1] == "1", prometheus.targets()
        assert float(prometheus.query("sum(pilot_xds)")[0]["value"][1]) >= 3
    finally:
        stop.set()
        prometheus.stop()


def _send(client: Member, stop: threading.Event) -> None:
    http = client.http()
    while not stop.wait(0.1):
        for url in ("http://reviews:9080/", "http://details:9080/"):
            http.get(url)


def test_a_request_through_two_sidecars_is_one_trace_with_a_span_per_proxy(traffic_mesh) -> None:
    mesh, client, _, _ = traffic_mesh
    reply = client.http().get("http://reviews:9080/traced")
    assert reply.status == 200
    headers = reply.json()["headers"]
    trace_id = headers["x-b3-traceid"]  # what the client's sidecar started and the app received
    spans = wait_for(lambda: api(mesh.cp, f"/api/v2/trace/{trace_id}"),
                     lambda r: r.status_code == 200 and len(r.json()) >= 2, timeout=60, interval=0.5,
                     what=f"trace {trace_id} to have a span from each sidecar").json()
    by_service = {s["localEndpoint"]["serviceName"]: s for s in spans}
    caller, callee = by_service[f"client.{mesh.namespace}"], by_service[f"reviews.{mesh.namespace}"]
    assert caller["kind"] == "CLIENT" and callee["kind"] == "SERVER"
    assert callee["parentId"] == caller["id"], "the server's span is a child of the client's"
    assert callee["id"] == headers["x-b3-spanid"]
    assert callee["tags"]["http.status_code"] == "200"
    assert {s["traceId"] for s in spans} == {trace_id}
    services = api(mesh.cp, "/api/v2/services").json()
    assert {f"client.{mesh.namespace}", f"reviews.{mesh.namespace}"} <= set(services)
    names = api(mesh.cp, "/api/v2/spans", serviceName=f"reviews.{mesh.namespace}").json()
    assert callee["name"] in names


class ExternalZipkin:
    """Someone else's Zipkin: takes ``POST /api/v2/spans`` (JSON) on loopback and keeps the spans."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = self.headers.get("content-length")
                body = self.rfile.read(int(length)) if length else _chunked(self.rfile)
                if self.path == "/api/v2/spans":
                    outer.spans.extend(json.loads(body))
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"


def _chunked(stream: Any) -> bytes:
    data = b""
    while size := int(stream.readline().strip() or b"0", 16):
        data += stream.read(size)
        stream.readline()
    stream.readline()
    return data


def test_spans_go_to_an_external_zipkin_when_one_is_named(tmp_path: Path) -> None:
    """``malla up --zipkin-address HOST:PORT``: the proxies send there, the built-in collector gets nothing."""
    external = ExternalZipkin()
    options = ControlPlaneOptions(home=tmp_path / "home", xds_port=0, api_port=0, monitoring_port=0, ca_port=0,
                                  ca_join_port=0)
    options = dataclasses.replace(options, mesh=options.mesh.with_(zipkin_address=external.address,
                                                                   trace_sampling=100.0))
    cp = ControlPlane(options)
    cp.start()
    mesh = Mesh(cp, namespace="external-zipkin", mode=XdsMode.SOTW, workdir=tmp_path)
    try:
        _, client = mesh.start(App("reviews", "v1"), clients=1)
        trace_id = client.http().get("http://reviews:9080/").json()["headers"]["x-b3-traceid"]
        spans = wait_for(lambda: [s for s in external.spans if s["traceId"] == trace_id], lambda s: len(s) >= 2,
                         timeout=60, interval=0.5, what=f"the external Zipkin to receive trace {trace_id}")
        assert {s["localEndpoint"]["serviceName"] for s in spans} == {"client.external-zipkin",
                                                                      "reviews.external-zipkin"}
        assert api(cp, f"/api/v2/trace/{trace_id}").status_code == 404
    finally:
        mesh.close()
        cp.stop()
        external.server.shutdown()
