"""The console's JSON views and pages on a real control plane, with fake agents serving Istio's metrics."""

from __future__ import annotations

from typing import Any

import pytest

from tests.console.conftest import ConsoleMesh

pytestmark = pytest.mark.xdist_group("console")


def edge(graph: dict[str, Any], source: str, target: str) -> dict[str, Any]:
    found = {e["id"]: e for e in graph["edges"]}
    key = f"{source}->{target}"
    assert key in found, f"no edge {key}; edges: {sorted(found)}"
    return found[key]


def test_graph_edges_carry_rates_errors_latency_and_mtls(console_mesh: ConsoleMesh) -> None:
    graph = console_mesh.json("/api/v1/graph")
    pp, reviews = "workload:default/productpage@v1", "service:default/reviews"
    to_reviews = edge(graph, pp, reviews)
    # reviews v1 2/s + reviews v2 2/s (destination reports) + 0.5/s of 503s that reached no sidecar
    assert to_reviews["rps"] == pytest.approx(4.5, rel=0.1)
    assert to_reviews["errorPercent"] == pytest.approx(100 * (0.1 + 0.5) / 4.5, abs=0.2)
    assert to_reviews["p95Ms"] == pytest.approx(25 + 25 * (0.95 * 4.5 - 2) / 2.5, abs=0.5)
    assert to_reviews["health"] == "Failure" and to_reviews["mtls"] is True

    v2 = edge(graph, reviews, "workload:default/reviews@v2")
    assert v2["rps"] == pytest.approx(2, rel=0.1)
    assert v2["errorPercent"] == pytest.approx(5, abs=0.1)
    assert v2["p95Ms"] == pytest.approx(25 + 25 * 0.95, abs=0.5)
    assert v2["health"] == "Degraded"
    assert edge(graph, reviews, "workload:default/reviews@v1")["health"] == "Healthy"

    details = edge(graph, pp, "service:default/details")
    assert details["errorPercent"] == pytest.approx(30, abs=0.1)
    assert details["health"] == "Failure"  # Kiali: 4xx from 20 %
    assert details["mtls"] is False and details["mtlsPercent"] == 0
    assert edge(graph, "workload:default/reviews@v2", "service:default/ratings")["p95Ms"] == pytest.approx(1 + 4 * 0.95, abs=0.1)


def test_graph_nodes_and_scrape_status(console_mesh: ConsoleMesh) -> None:
    graph = console_mesh.json("/api/v1/graph", window=30)
    assert graph["windowSeconds"] == 30
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert {i for i, n in nodes.items() if n["kind"] == "workload"} == {
        "workload:default/productpage@v1", "workload:default/reviews@v1", "workload:default/reviews@v2",
        "workload:default/ratings@v1", "workload:default/details@v1"}
    assert {i for i, n in nodes.items() if n["kind"] == "service"} == {
        "service:default/productpage", "service:default/reviews", "service:default/ratings", "service:default/details"}
    assert nodes["workload:default/productpage@v1"]["outbound"]["rps"] == pytest.approx(8.5, rel=0.1)
    assert nodes["service:default/productpage"]["idle"] is True
    assert len(graph["scrape"]["targets"]) == 5 and graph["scrape"]["errors"] == {}


def test_service_view_has_figures_series_and_neighbours(console_mesh: ConsoleMesh) -> None:
    data = console_mesh.json("/api/v1/services/default/reviews", span=120, step=10)
    assert data["hosts"] == ["reviews.default.svc.cluster.local"]
    assert data["inbound"]["rps"] == pytest.approx(4.5, rel=0.1)
    assert data["health"] == "Failure"
    assert data["workloads"] == ["workload:default/reviews@v1", "workload:default/reviews@v2"]
    assert [n["node"] for n in data["neighbours"]["inbound"]] == ["workload:default/productpage@v1"]
    assert [n["node"] for n in data["neighbours"]["outbound"]] == ["workload:default/reviews@v1", "workload:default/reviews@v2"]
    series = data["series"]["inbound"]
    assert len(series) == 12
    seen = [p for p in series if p["rps"]]
    assert seen and seen[-1]["rps"] == pytest.approx(4.5, rel=0.15)


def test_workload_view_has_both_directions_and_its_versions(console_mesh: ConsoleMesh) -> None:
    data = console_mesh.json("/api/v1/workloads/default/reviews")
    assert data["inbound"]["rps"] == pytest.approx(4, rel=0.1)
    assert data["inbound"]["errorPercent"] == pytest.approx(100 * 0.1 / 4, abs=0.1)
    assert data["outbound"]["rps"] == pytest.approx(2, rel=0.1)
    assert [n["node"] for n in data["neighbours"]["outbound"]] == ["service:default/ratings"]
    assert sorted(i["address"] for i in data["instances"]) == sorted(a.address for a in console_mesh.agents[1:3])
    assert set(data["series"]) == {"inbound", "outbound"}
    versions = data["versions"]
    assert sorted(versions) == ["v1", "v2"]
    assert versions["v2"]["inbound"]["errorPercent"] == pytest.approx(5, abs=0.1)
    assert versions["v2"]["health"] == "Degraded" and versions["v1"]["health"] == "Healthy"
    assert versions["v1"]["outbound"]["rps"] == 0


def test_unknown_names_and_bad_parameters_are_explained(console_mesh: ConsoleMesh) -> None:
    missing = console_mesh.get("/api/v1/workloads/default/nope")
    assert missing.status_code == 404
    assert missing.json()["error"] == "no workload default/nope: it is not registered and has no traffic"
    bad = console_mesh.get("/api/v1/graph", window="soon")
    assert bad.status_code == 400
    assert bad.json()["error"] == "query parameter window='soon' is not a number of seconds; allowed: 5 to 900"
    assert console_mesh.get("/api/v1/graph", window="3600").status_code == 400


def test_validations_view_runs_the_analyzers_over_applied_config(console_mesh: ConsoleMesh) -> None:
    yaml = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-subsets, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v2, labels: {version: v2}}
  - {name: v9, labels: {version: v9}}
"""
    done = console_mesh.post("/api/v1/config", content=yaml, headers={"x-malla-source": "dr.yaml"})  # as `malla apply`
    assert done.status_code == 200, done.text
    data = console_mesh.json("/api/v1/validations")
    item = next(i for i in data["items"] if i["ref"] == "DestinationRule default/reviews-subsets")
    assert item["status"] == "error"
    assert [(m["source"], m["code"]) for m in item["messages"]] == [("analysis", "IST0173")]
    assert "v9" in item["messages"][0]["message"]
    page = console_mesh.get("/console/config", status="error")
    assert page.status_code == 200
    assert "reviews-subsets" in page.text and "IST0173" in page.text
