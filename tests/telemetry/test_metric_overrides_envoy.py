"""Telemetry metric overrides through real agents and real Envoys, read from each workload's port 15020.

A client calls ``reviews`` through its sidecar after a namespace Telemetry
turned off the client side's request count, removed ``request_protocol``
from every metric and gave the server side's request count a literal and a
request-header label. What a Prometheus scraping the two endpoints would
see is asserted: the client reports no ``istio_requests_total`` (its other
metrics still count), the server does, with the new labels and without
the removed one.
"""

from __future__ import annotations

import pytest

from tests.e2e.mesh import App, Mesh, wait_for
from tests.telemetry.test_mesh_telemetry import find, series

pytestmark = [pytest.mark.envoy]

TELEMETRY = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: metrics}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT}
      disabled: true
    - tagOverrides:
        request_protocol: {operation: REMOVE}
    - match: {metric: REQUEST_COUNT, mode: SERVER}
      tagOverrides:
        build: {value: "'v1'"}
        user: {value: "request.headers['x-user']"}
"""


def test_a_namespace_telemetry_disables_removes_and_adds_labels(mesh: Mesh) -> None:
    reviews, client = mesh.start(App("reviews", "v1"), clients=1)
    mesh.apply(TELEMETRY)
    http = client.http()
    for _ in range(5):
        assert http.get("http://reviews:9080/", headers={"x-user": "alice"}).status == 200

    server = wait_for(lambda: series(mesh.cp, reviews, "istio_requests_total"),
                      lambda s: find(s, reporter="destination", source_workload="client") >= 5, timeout=30,
                      what="the server's sidecar to count 5 requests")
    labels = next(got for got, _ in server if got.get("reporter") == "destination")
    assert labels["build"] == "v1" and labels["user"] == "alice"
    assert "request_protocol" not in labels
    assert labels["destination_workload"] == "reviews" and labels["response_code"] == "200"

    durations = wait_for(lambda: series(mesh.cp, client, "istio_request_duration_milliseconds_count"),
                         lambda s: find(s, reporter="source", destination_workload="reviews") >= 5, timeout=30,
                         what="the client's sidecar to time 5 requests")
    assert all("request_protocol" not in got and "build" not in got for got, _ in durations)
    client_counts = series(mesh.cp, client, "istio_requests_total")
    assert find(client_counts, reporter="source") == 0, client_counts
