"""The graph, validations and scrape targets built from plain inputs (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from malla.config.parse import parse_text
from malla.console.graph import build_graph
from malla.console.istio_metrics import parse_istio_metrics
from malla.console.pages import proxies_page
from malla.console.poller import scrape_urls
from malla.console.timeseries import MetricsStore
from malla.console.validations import build_validations
from tests.console.fakes import Flow, istio_text


def workload(name: str, address: str, *, version: str = "v1", sidecar: bool = True) -> dict[str, Any]:
    """A registered workload, as ``malla run --name NAME --version V`` registers it."""
    return {"name": name, "namespace": "default", "address": address, "labels": {"app": name, "version": version},
            "ports": {"http": 9080}, "sidecar": sidecar}


def graph_of(flows_by_target: dict[str, list[Flow]], workloads: list[dict[str, Any]]) -> dict[str, Any]:
    store = MetricsStore()
    for now, elapsed in ((100.0, 0.0), (110.0, 10.0)):
        for target, flows in flows_by_target.items():
            store.record(target, parse_istio_metrics(istio_text(flows, elapsed=elapsed)), now=now)
    return build_graph(store.rates(now=110, window=60), workloads, window=60)


def edges(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in graph["edges"]}


def test_edges_go_caller_to_service_to_workload_with_the_destinations_figures() -> None:
    g = graph_of({
        "pp": [Flow("productpage", "reviews", "reviews", reporter="source", rps=7)],
        "rv": [Flow("productpage", "reviews", "reviews", rps=5, codes={"200": 0.8, "503": 0.2}, latency_bucket=100)],
    }, [workload("productpage", "127.0.1.1"), workload("reviews", "127.0.1.2")])
    e = edges(g)
    caller = e["workload:default/productpage@v1->service:default/reviews"]
    served = e["service:default/reviews->workload:default/reviews@v1"]
    for edge in (caller, served):
        assert edge["rps"] == pytest.approx(5)  # the destination's report, not the source's 7
        assert edge["errorPercent"] == pytest.approx(20)
        assert edge["p95Ms"] == pytest.approx(50 + 50 * 0.95)
        assert edge["mtls"] is True and edge["health"] == "Failure"
        assert edge["label"] == "5.00 rps\n20.0% err\np95 98 ms"
    nodes = {n["id"]: n for n in g["nodes"]}
    assert nodes["workload:default/reviews@v1"]["inbound"]["rps"] == pytest.approx(5)
    assert nodes["workload:default/productpage@v1"]["outbound"]["rps"] == pytest.approx(5)
    assert nodes["service:default/reviews"]["health"] == "Failure"


def test_each_version_of_a_workload_is_a_node_of_its_own() -> None:
    g = graph_of({
        "v1": [Flow("productpage", "reviews", "reviews", rps=3)],
        "v2": [Flow("productpage", "reviews", "reviews", rps=1, destination_version="v2", codes={"500": 1.0})],
    }, [workload("reviews", "127.0.1.2"), workload("reviews", "127.0.1.3", version="v2")])
    e = edges(g)
    assert e["service:default/reviews->workload:default/reviews@v1"]["health"] == "Healthy"
    assert e["service:default/reviews->workload:default/reviews@v2"]["health"] == "Failure"
    assert e["workload:default/productpage@v1->service:default/reviews"]["rps"] == pytest.approx(4)
    labels = {n["id"]: n["label"] for n in g["nodes"]}
    assert labels["workload:default/reviews@v2"] == "reviews\nv2"


def test_calls_that_never_reached_a_sidecar_and_unknown_callers_are_drawn() -> None:
    g = graph_of({
        "pp": [Flow("productpage", "reviews", "unknown", reporter="source", rps=1, codes={"503": 1.0})],
        "rv": [Flow("unknown", "reviews", "reviews", rps=2, mtls=False, source_version="unknown")],
    }, [workload("productpage", "127.0.1.1"), workload("reviews", "127.0.1.2")])
    e = edges(g)
    assert e["workload:default/productpage@v1->service:default/reviews"]["errorPercent"] == pytest.approx(100)
    assert e["unknown->service:default/reviews"]["rps"] == pytest.approx(2)
    assert e["unknown->service:default/reviews"]["mtls"] is False
    assert e["service:default/reviews->workload:default/reviews@v1"]["rps"] == pytest.approx(2)
    assert {n["id"]: n["kind"] for n in g["nodes"]}["unknown"] == "unknown"


def test_failures_reported_with_only_the_requested_host_land_on_that_service() -> None:
    short = Flow("productpage", "reviews", "unknown", reporter="source", rps=1, codes={"503": 1.0})
    renamed = istio_text([short], elapsed=10).replace('destination_service="reviews.default.svc.cluster.local"',
                                                      'destination_service="reviews"')
    renamed = renamed.replace('destination_service_namespace="default"', 'destination_service_namespace="unknown"')
    store = MetricsStore()
    store.record("pp", {}, now=0)
    store.record("pp", parse_istio_metrics(renamed), now=10)
    g = build_graph(store.rates(now=10, window=60), [workload("productpage", "127.0.1.1"), workload("reviews", "127.0.1.2")],
                    window=60)
    e = edges(g)
    assert e["workload:default/productpage@v1->service:default/reviews"]["errorPercent"] == pytest.approx(100)
    assert not any(n["id"].startswith("service:unknown/") for n in g["nodes"])


def test_registered_workloads_without_traffic_are_idle_nodes_under_their_service() -> None:
    g = graph_of({}, [workload("reviews", "127.0.1.2"), workload("reviews", "127.0.1.3", version="v2"),
                      workload("reviews", "127.0.1.4", version="v2"), workload("db", "127.0.1.5", version="")])
    nodes = {n["id"]: n for n in g["nodes"]}
    assert nodes["workload:default/reviews@v2"]["instances"] == 2
    assert nodes["workload:default/db"]["label"] == "db"
    assert nodes["service:default/reviews"]["host"] == "reviews.default.svc.cluster.local"
    assert all(n["idle"] and n["health"] == "NA" for n in g["nodes"])
    assert set(edges(g)) == {"service:default/reviews->workload:default/reviews@v1",
                             "service:default/reviews->workload:default/reviews@v2", "service:default/db->workload:default/db"}


def test_scrape_targets_announced_by_proxies_win_over_the_guess() -> None:
    groups = [{"targets": ["127.0.0.1:40123"], "labels": {"__metrics_path__": "/stats/prometheus"}}]
    workloads = [workload("gw", "127.0.0.1"), workload("a", "127.0.1.5"), workload("db", "127.0.1.6", sidecar=False)]
    assert scrape_urls(workloads, groups) == ["http://127.0.0.1:40123/stats/prometheus", "http://127.0.1.5:15020/stats/prometheus"]


def test_validations_join_file_problems_and_analysis_to_resources() -> None:
    text = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings}
"""
    configs = parse_text(text, path="mesh.yaml").configs
    problems = {"bad.yaml": [{"level": "error", "message": "spec.hosts: field required", "resource": "Gateway default/gw"}]}
    data = build_validations(configs, problems, [workload("reviews", "127.0.1.2")])
    by_ref = {r["ref"]: r for r in data["items"]}
    dr = by_ref["DestinationRule default/reviews"]
    assert dr["status"] == "error"
    assert [m["code"] for m in dr["messages"]] == ["IST0173"]  # subset v3 selects no registered workload
    assert "v3" in dr["messages"][0]["message"]
    vs = by_ref["VirtualService default/ratings"]
    assert [m["code"] for m in vs["messages"]] == ["IST0101"]  # no workload forms the ratings service
    assert data["otherProblems"][0]["file"] == "bad.yaml"
    assert data["counts"] == {"valid": 0, "warning": 0, "error": 2}


def test_proxies_page_shows_envoys_reason_for_a_rejection() -> None:
    proxy = {
        "node": "sidecar~127.0.1.2~reviews-v1-abc.default~default.svc.cluster.local", "mode": "SotW", "envoyVersion": "1.40.0",
        "connectedAt": 0, "snapshotVersion": "abc123", "problem": None,
        "types": [
            {"type": "Cluster", "state": "SYNCED", "sentVersion": "v1", "ackedVersion": "v1", "error": None, "rejected": [], "nacks": 0},
            {"type": "Listener", "state": "REJECTED", "sentVersion": "v2", "ackedVersion": "v1", "nacks": 1,
             "error": "Error adding/updating listener(s) 0.0.0.0_9080: duplicate listener <address>", "rejected": ["0.0.0.0_9080"]},
        ],
    }
    html = proxies_page([proxy])
    assert 'class="badge bad">REJECTED</span> sidecar~127.0.1.2~reviews-v1-abc.default' in html
    assert "duplicate listener &lt;address&gt;" in html  # Envoy's words, escaped
    assert "rejected: 0.0.0.0_9080" in html
