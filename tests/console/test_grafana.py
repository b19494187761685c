"""Grafana dashboards: the shipped JSON is what the generator writes, over Istio's metric names."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import pytest

from malla.console.grafana import DASHBOARDS, render

ISTIO_METRICS = {
    "istio_requests_total", "istio_request_duration_milliseconds_bucket", "istio_request_bytes_bucket",
    "istio_response_bytes_bucket", "istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total",
    "pilot_xds", "pilot_xds_pushes", "pilot_total_xds_rejects", "pilot_total_xds_internal_errors",
    "pilot_proxy_convergence_time_bucket", "pilot_xds_push_time_bucket", "malla_config_resources", "malla_workloads",
    "process_resident_memory_bytes", "process_cpu_seconds_total",
}
PROMQL_WORDS = {"sum", "irate", "rate", "round", "by", "or", "on", "vector", "histogram_quantile", "le", "label_values"}


def shipped(name: str) -> str:
    return resources.files("malla").joinpath("data", "grafana", name).read_text(encoding="utf-8")


def expressions(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_shipped_dashboard_is_the_generated_one(name: str) -> None:
    assert shipped(name) == render(name), f"run: python -m malla.console.grafana (data/grafana/{name} is stale)"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_queries_use_istio_metric_names_and_balanced_brackets(name: str) -> None:
    dashboard = json.loads(shipped(name))
    exprs = expressions(dashboard)
    assert exprs
    for expr in exprs:
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        bare = re.sub(r'"[^"]*"', '""', expr)  # label values may hold anything
        bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", bare)
        metrics = {w for w in re.findall(r"[a-z_][a-z0-9_]*", bare) if w not in PROMQL_WORDS}
        metrics -= {w for w in metrics if w.startswith(("source_", "destination_", "response_", "connection_"))}
        metrics -= {"type", "instance"}
        assert metrics <= ISTIO_METRICS, (expr, metrics - ISTIO_METRICS)


def test_dashboards_have_unique_uids_and_a_prometheus_data_source_variable() -> None:
    loaded = [json.loads(shipped(name)) for name in DASHBOARDS]
    assert len({d["uid"] for d in loaded}) == len(loaded)
    for d in loaded:
        assert d["templating"]["list"][0] == {"name": "datasource", "label": "Data source", "type": "datasource",
                                               "query": "prometheus", "current": {}}
        assert len({p["id"] for p in d["panels"]}) == len(d["panels"])


def test_service_dashboard_reads_istios_standard_queries() -> None:
    exprs = expressions(json.loads(shipped("istio-service-dashboard.json")))
    assert 'round(sum(irate(istio_requests_total{reporter=~"$qrep",destination_service="$service"}[$__rate_interval])), 0.001)' in exprs
    assert ('histogram_quantile(0.99, sum(irate(istio_request_duration_milliseconds_bucket{reporter="destination",'
            'destination_service="$service"}[$__rate_interval])) by (le))') in exprs
    mesh = expressions(json.loads(shipped("istio-mesh-dashboard.json")))
    assert ('sum(irate(istio_requests_total{reporter=~"source|waypoint",response_code!~"5.*"}[$__rate_interval])) / '
            'sum(irate(istio_requests_total{reporter=~"source|waypoint"}[$__rate_interval]))') in mesh
