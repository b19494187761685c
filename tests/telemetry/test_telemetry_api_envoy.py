"""Istio's Telemetry API in a real mesh: real agents and Envoys, Telemetry applied as a user would.

The control plane (``conftest``) samples 100% of requests by MeshConfig;
Telemetry resources in the test's namespace change that per namespace and
per workload, and turn on Istio's ``envoy`` access log with a CEL filter,
on HTTP requests and on TCP connections.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.mesh import App, Member, Mesh, tcp_line, wait_for
from tests.telemetry.test_mesh_telemetry import api

pytestmark = [pytest.mark.envoy]


def envoy_stdout(member: Member) -> Path:
    """Where the agent puts its sidecar's stdout: the ``envoy`` provider's access log."""
    return member.home / "workloads" / member.node_id.split("~")[2] / "envoy.out"


def requests_logged(member: Member) -> list[str]:
    path = envoy_stdout(member)
    text = path.read_text(errors="replace") if path.exists() else ""
    return [line for line in text.splitlines() if line.startswith("[") and '"GET ' in line]


def test_envoy_access_log_with_a_cel_filter_logs_only_errors(mesh: Mesh) -> None:
    _, _, client = mesh.start(App("reviews", "v1"), App("details", "v1", args=("--status", "404")), clients=1)
    mesh.apply(f"""
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: errors-only, namespace: {mesh.namespace}}}
spec:
  accessLogging:
  - providers: [{{name: envoy}}]
    filter: {{expression: "response.code >= 400"}}
""")
    http = client.http()
    assert http.get("http://reviews:9080/fine").status == 200
    assert http.get("http://details:9080/missing").status == 404
    lines = wait_for(lambda: requests_logged(client), lambda found: any("/missing" in line for line in found),
                     timeout=30, interval=0.2, what=f"the 404 in {envoy_stdout(client)}")
    # One Envoy worker writes in request order: the 200 came first, so it would be here by now.
    assert not any("/fine" in line for line in lines), lines
    (line,) = [line for line in lines if "/missing" in line]
    assert '"GET /missing HTTP/1.1" 404 ' in line and f"outbound|9080||details.{mesh.namespace}" in line


def test_workload_sampling_and_custom_tags_override_the_namespace(mesh: Mesh) -> None:
    _, client = mesh.start(App("reviews", "v1"), clients=1)
    mesh.apply(f"""
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: no-traces, namespace: {mesh.namespace}}}
spec:
  tracing:
  - randomSamplingPercentage: 0.0
""")
    headers = client.http().get("http://reviews:9080/quiet").json()["headers"]
    assert headers["x-b3-sampled"] == "0", "the namespace's 0% replaces the mesh's 100%"

    mesh.apply(f"""
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: client-traces, namespace: {mesh.namespace}}}
spec:
  selector: {{matchLabels: {{app: client}}}}
  tracing:
  - randomSamplingPercentage: 100.0
    customTags:
      team: {{literal: {{value: payments}}}}
""")
    # A new connection: one opened before the update keeps the listener config it started with.
    headers = client.http().get("http://reviews:9080/traced").json()["headers"]
    assert headers["x-b3-sampled"] == "1"
    trace_id = headers["x-b3-traceid"]
    spans = wait_for(lambda: api(mesh.cp, f"/api/v2/trace/{trace_id}"),
                     lambda r: r.status_code == 200 and len(r.json()) >= 2, timeout=60, interval=0.5,
                     what=f"trace {trace_id} at the collector").json()
    by_service = {s["localEndpoint"]["serviceName"]: s for s in spans}
    assert by_service[f"client.{mesh.namespace}"]["tags"]["team"] == "payments"
    assert "team" not in by_service[f"reviews.{mesh.namespace}"].get("tags", {}), "the tag is the client's only"


def tcp_connections_logged(member: Member, cluster: str) -> list[str]:
    """Lines of the ``envoy`` log for TCP connections (no method, path or protocol) to ``cluster``."""
    path = envoy_stdout(member)
    text = path.read_text(errors="replace") if path.exists() else ""
    return [line for line in text.splitlines() if '"- - -" 0 ' in line and f" {cluster} " in line]


def test_envoy_access_log_logs_each_tcp_connection_once_when_it_closes(mesh: Mesh) -> None:
    mongo, client = mesh.start(App("mongo", "v1", ports=("27017/tcp",)), clients=1)
    mesh.apply(f"""
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: tcp-logs, namespace: {mesh.namespace}}}
spec:
  accessLogging:
  - providers: [{{name: envoy}}]
""")
    for _ in range(2):
        assert tcp_line(client.address, 27017).startswith("mongo v1")
    outbound = f"outbound|27017||mongo.{mesh.namespace}.svc.cluster.local"
    sent = wait_for(lambda: tcp_connections_logged(client, outbound), lambda found: len(found) >= 2, timeout=30,
                    interval=0.2, what=f"two closed connections in {envoy_stdout(client)}")
    received = wait_for(lambda: tcp_connections_logged(mongo, "inbound|27017||"), lambda found: len(found) >= 2,
                        timeout=30, interval=0.2, what=f"two closed connections in {envoy_stdout(mongo)}")
    # The agent's metrics log flushes on connect too; had the file log followed, each connection would
    # show twice, its on-connect line first and with nothing sent yet.
    assert len(sent) == 2 and len(received) == 2, (sent, received)
    answer = len(f"mongo v1 {mongo.info['pid']}\n")
    assert all(f'"-" 0 {answer} ' in line for line in [*sent, *received]), (sent, received)
