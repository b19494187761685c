"""Grafana dashboards over Istio's standard metrics: mesh, service, workload, control plane.

The queries are the ones Istio's own dashboards run (``istio_requests_total``
with ``reporter``, ``histogram_quantile`` over
``istio_request_duration_milliseconds_bucket``, ``pilot_xds*``), so a
Prometheus scraping malla's sidecars (``:15020/stats/prometheus``) and the
control plane (``:15014/metrics``) fills them as it fills Istio's. The JSON
shipped in ``malla/data/grafana`` is this module's output:
``python -m malla.console.grafana`` rewrites it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent.parent / "data" / "grafana"
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "[$__rate_interval]"


def _target(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False, table: bool = False) -> dict[str, Any]:
    target: dict[str, Any] = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref}
    if instant:
        target["instant"] = True
    if table:
        target["format"] = "table"
    return target


def _panel(kind: str, title: str, targets: list[dict[str, Any]], *, unit: str, pos: tuple[int, int, int, int],
           description: str = "") -> dict[str, Any]:
    x, y, w, h = pos
    return {
        "type": kind, "title": title, "description": description, "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h}, "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "right", "showLegend": True}} if kind == "timeseries" else {},
    }


def _row(title: str, y: int) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}


def _query_var(name: str, label: str, query: str, *, include_all: bool = False) -> dict[str, Any]:
    return {
        "name": name, "label": label, "type": "query", "datasource": DS, "query": {"query": query, "refId": name},
        "definition": query, "refresh": 2, "sort": 1, "includeAll": include_all, "multi": include_all,
        "allValue": ".*" if include_all else None, "current": {},
    }


def _reporter_var() -> dict[str, Any]:
    options = [{"text": "source", "value": "source|waypoint", "selected": True},
               {"text": "destination", "value": "destination", "selected": False}]
    return {"name": "qrep", "label": "Reporter", "type": "custom", "query": "source|waypoint,destination",
            "options": options, "current": options[0]}


def _dashboard(title: str, uid: str, panels: list[dict[str, Any]], variables: list[dict[str, Any]]) -> dict[str, Any]:
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    datasource = {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "current": {}}
    return {
        "title": title, "uid": uid, "tags": ["istio", "malla"], "editable": True, "schemaVersion": 39, "version": 1,
        "time": {"from": "now-30m", "to": "now"}, "refresh": "10s", "timezone": "browser", "graphTooltip": 1,
        "templating": {"list": [datasource, *variables]}, "panels": panels, "annotations": {"list": []}, "links": [],
    }


def _quantiles(selector: str, by: str = "") -> list[dict[str, Any]]:
    group = f"le{', ' + by if by else ''}"
    return [
        _target(f"histogram_quantile({q}, sum(irate(istio_request_duration_milliseconds_bucket{{{selector}}}{RATE})) by ({group}))",
                f"P{int(float(q) * 100)}{' ' + by if by else ''}", ref)
        for q, ref in (("0.50", "A"), ("0.90", "B"), ("0.99", "C"))
    ]


def mesh_dashboard() -> dict[str, Any]:
    src = 'reporter=~"source|waypoint"'
    volume = f"round(sum(irate(istio_requests_total{{{src}}}{RATE})), 0.001)"
    success = (f'sum(irate(istio_requests_total{{{src},response_code!~"5.*"}}{RATE})) / '
               f"sum(irate(istio_requests_total{{{src}}}{RATE}))")
    by_workload = "destination_workload, destination_workload_namespace, destination_service"
    table_targets = [
        _target(f"sum(irate(istio_requests_total{{{src}}}{RATE})) by ({by_workload})", "", "requests", instant=True, table=True),
        *(_target(f"histogram_quantile({q}, sum(irate(istio_request_duration_milliseconds_bucket{{{src}}}{RATE})) "
                  f"by (le, destination_workload, destination_workload_namespace))", "", ref, instant=True, table=True)
          for q, ref in (("0.50", "p50"), ("0.90", "p90"), ("0.99", "p99"))),
        _target(f'sum(irate(istio_requests_total{{{src},response_code!~"5.*"}}{RATE})) by (destination_workload, '
                f"destination_workload_namespace) / sum(irate(istio_requests_total{{{src}}}{RATE})) by "
                "(destination_workload, destination_workload_namespace)", "", "success", instant=True, table=True),
    ]
    tcp_targets = [
        _target(f"sum(irate(istio_tcp_received_bytes_total{{{src}}}{RATE})) by ({by_workload})", "", "received", instant=True, table=True),
        _target(f"sum(irate(istio_tcp_sent_bytes_total{{{src}}}{RATE})) by ({by_workload})", "", "sent", instant=True, table=True),
    ]
    panels = [
        _row("Global traffic", 0),
        _panel("stat", "Traffic volume", [_target(volume)], unit="reqps", pos=(0, 1, 6, 4)),
        _panel("stat", "Success rate (non-5xx)", [_target(success)], unit="percentunit", pos=(6, 1, 6, 4)),
        _panel("stat", "4xxs", [_target(f'round(sum(irate(istio_requests_total{{{src},response_code=~"4.*"}}{RATE})), 0.001) or vector(0)')],
               unit="reqps", pos=(12, 1, 6, 4)),
        _panel("stat", "5xxs", [_target(f'round(sum(irate(istio_requests_total{{{src},response_code=~"5.*"}}{RATE})), 0.001) or vector(0)')],
               unit="reqps", pos=(18, 1, 6, 4)),
        _panel("table", "HTTP/gRPC workloads", table_targets, unit="short", pos=(0, 5, 24, 10),
               description="Requests, latency and success per destination workload."),
        _panel("table", "TCP workloads", tcp_targets, unit="Bps", pos=(0, 15, 24, 8)),
        _panel("timeseries", "Requests by destination service",
               [_target(f"round(sum(irate(istio_requests_total{{{src}}}{RATE})) by (destination_service), 0.001)", "{{destination_service}}")],
               unit="reqps", pos=(0, 23, 24, 8)),
    ]
    return _dashboard("Istio Mesh Dashboard (malla)", "malla-istio-mesh", panels, [])


def _traffic_block(title: str, selector: str, y: int, *, tcp_metric: str) -> list[dict[str, Any]]:
    return [
        _panel("stat", f"{title} request volume", [_target(f"round(sum(irate(istio_requests_total{{{selector}}}{RATE})), 0.001)")],
               unit="reqps", pos=(0, y, 6, 4)),
        _panel("stat", f"{title} success rate (non-5xx)",
               [_target(f'sum(irate(istio_requests_total{{{selector},response_code!~"5.*"}}{RATE})) / '
                        f"(sum(irate(istio_requests_total{{{selector}}}{RATE})) or on () vector(1))")],
               unit="percentunit", pos=(6, y, 6, 4)),
        _panel("timeseries", f"{title} request duration", _quantiles(selector), unit="ms", pos=(12, y, 6, 4)),
        _panel("stat", f"TCP {tcp_metric.split('_')[2]} bytes", [_target(f"sum(irate({tcp_metric}{{{selector}}}{RATE}))")],
               unit="Bps", pos=(18, y, 6, 4)),
    ]


def _breakdown(title: str, selector: str, by: str, legend: str, y: int) -> list[dict[str, Any]]:
    return [
        _row(title, y),
        _panel("timeseries", "Requests by source and response code", [
            _target(f'round(sum(irate(istio_requests_total{{connection_security_policy="mutual_tls",{selector}}}{RATE})) '
                    f"by ({by}, response_code), 0.001)", f"{legend} : {{{{response_code}}}} (🔐mTLS)", "A"),
            _target(f'round(sum(irate(istio_requests_total{{connection_security_policy!="mutual_tls",{selector}}}{RATE})) '
                    f"by ({by}, response_code), 0.001)", f"{legend} : {{{{response_code}}}}", "B"),
        ], unit="reqps", pos=(0, y + 1, 12, 8)),
        _panel("timeseries", "Success rate (non-5xx) by source", [
            _target(f'sum(irate(istio_requests_total{{{selector},response_code!~"5.*"}}{RATE})) by ({by}) / '
                    f"sum(irate(istio_requests_total{{{selector}}}{RATE})) by ({by})", legend),
        ], unit="percentunit", pos=(12, y + 1, 12, 8)),
        _panel("timeseries", "Request duration", _quantiles(selector, by), unit="ms", pos=(0, y + 9, 12, 8)),
        _panel("timeseries", "Request and response size", [
            _target(f"histogram_quantile(0.50, sum(irate(istio_request_bytes_bucket{{{selector}}}{RATE})) by (le, {by}))",
                    f"request P50 {legend}", "A"),
            _target(f"histogram_quantile(0.50, sum(irate(istio_response_bytes_bucket{{{selector}}}{RATE})) by (le, {by}))",
                    f"response P50 {legend}", "B"),
        ], unit="decbytes", pos=(12, y + 9, 12, 8)),
    ]


def service_dashboard() -> dict[str, Any]:
    svc = 'destination_service="$service"'
    panels = [
        _row("General", 0),
        *_traffic_block("Client", f'reporter=~"$qrep",{svc}', 1, tcp_metric="istio_tcp_received_bytes_total"),
        *_traffic_block("Server", f'reporter="destination",{svc}', 5, tcp_metric="istio_tcp_sent_bytes_total"),
        *_breakdown("Client workloads", f'reporter=~"$qrep",{svc},source_workload=~"$srcwl",source_workload_namespace=~"$srcns"',
                    "source_workload, source_workload_namespace", "{{source_workload}}.{{source_workload_namespace}}", 9),
        *_breakdown("Service workloads", f'reporter="destination",{svc},destination_workload=~"$dstwl",'
                    'destination_workload_namespace=~"$dstns"', "destination_workload, destination_workload_namespace",
                    "{{destination_workload}}.{{destination_workload_namespace}}", 26),
    ]
    variables = [
        _query_var("service", "Service", "label_values(istio_requests_total, destination_service)"),
        _reporter_var(),
        _query_var("srcns", "Client workload namespace",
                   'label_values(istio_requests_total{destination_service="$service"}, source_workload_namespace)', include_all=True),
        _query_var("srcwl", "Client workload", 'label_values(istio_requests_total{destination_service="$service",'
                   'source_workload_namespace=~"$srcns"}, source_workload)', include_all=True),
        _query_var("dstns", "Service workload namespace",
                   'label_values(istio_requests_total{destination_service="$service"}, destination_workload_namespace)', include_all=True),
        _query_var("dstwl", "Service workload", 'label_values(istio_requests_total{destination_service="$service",'
                   'destination_workload_namespace=~"$dstns"}, destination_workload)', include_all=True),
    ]
    return _dashboard("Istio Service Dashboard (malla)", "malla-istio-service", panels, variables)


def workload_dashboard() -> dict[str, Any]:
    wl = 'destination_workload_namespace=~"$namespace",destination_workload=~"$workload"'
    out = 'source_workload_namespace=~"$namespace",source_workload=~"$workload"'
    panels = [
        _row("General", 0),
        *_traffic_block("Incoming", f'reporter=~"$qrep",{wl}', 1, tcp_metric="istio_tcp_sent_bytes_total"),
        *_breakdown("Inbound workloads", f'reporter=~"$qrep",{wl},source_workload=~"$srcwl",source_workload_namespace=~"$srcns"',
                    "source_workload, source_workload_namespace", "{{source_workload}}.{{source_workload_namespace}}", 5),
        *_breakdown("Outbound services", f'reporter="source",{out},destination_service=~"$dstsvc"',
                    "destination_service", "{{destination_service}}", 22),
    ]
    variables = [
        _query_var("namespace", "Namespace", "label_values(istio_requests_total, destination_workload_namespace)"),
        _query_var("workload", "Workload",
                   'label_values(istio_requests_total{destination_workload_namespace=~"$namespace"}, destination_workload)'),
        _reporter_var(),
        _query_var("srcns", "Inbound workload namespace", 'label_values(istio_requests_total{destination_workload="$workload",'
                   'destination_workload_namespace=~"$namespace"}, source_workload_namespace)', include_all=True),
        _query_var("srcwl", "Inbound workload", 'label_values(istio_requests_total{destination_workload="$workload",'
                   'destination_workload_namespace=~"$namespace",source_workload_namespace=~"$srcns"}, source_workload)',
                   include_all=True),
        _query_var("dstsvc", "Destination service", 'label_values(istio_requests_total{source_workload="$workload",'
                   'source_workload_namespace=~"$namespace"}, destination_service)', include_all=True),
    ]
    return _dashboard("Istio Workload Dashboard (malla)", "malla-istio-workload", panels, variables)


def control_plane_dashboard() -> dict[str, Any]:
    panels = [
        _row("Proxies", 0),
        _panel("stat", "Connected proxies", [_target("sum(pilot_xds)", "server reported")], unit="short", pos=(0, 1, 6, 4)),
        _panel("stat", "Config resources", [_target("sum(malla_config_resources)")], unit="short", pos=(6, 1, 6, 4)),
        _panel("stat", "Registered workloads", [_target("sum(malla_workloads)")], unit="short", pos=(12, 1, 6, 4)),
        _panel("stat", "Rejected config (NACKs)", [_target("sum(pilot_total_xds_rejects) or vector(0)")], unit="short",
               pos=(18, 1, 6, 4)),
        _row("Push information", 5),
        _panel("timeseries", "xDS pushes", [_target(f"sum(irate(pilot_xds_pushes{RATE})) by (type)", "{{type}}")],
               unit="ops", pos=(0, 6, 12, 8), description="Pushes of new config, counted per proxy."),
        _panel("timeseries", "Push errors", [
            _target("sum(pilot_total_xds_rejects) by (type)", "Rejected config ({{type}})", "A"),
            _target("pilot_total_xds_internal_errors", "Internal errors", "B"),
        ], unit="short", pos=(12, 6, 12, 8)),
        _panel("timeseries", "Proxy convergence time", [
            _target(f"histogram_quantile({q}, sum(rate(pilot_proxy_convergence_time_bucket{RATE})) by (le))", f"P{p}", ref)
            for q, p, ref in (("0.5", 50, "A"), ("0.9", 90, "B"), ("0.99", 99, "C"))
        ], unit="s", pos=(0, 14, 12, 8)),
        _panel("timeseries", "Push time", [
            _target(f"histogram_quantile(0.99, sum(rate(pilot_xds_push_time_bucket{RATE})) by (le, type))", "P99 {{type}}"),
        ], unit="s", pos=(12, 14, 12, 8)),
        _row("Resource usage", 22),
        _panel("timeseries", "Memory", [_target('process_resident_memory_bytes{job=~".*malla.*|.*istiod.*"}', "{{instance}}")],
               unit="bytes", pos=(0, 23, 12, 8)),
        _panel("timeseries", "CPU", [_target(f'irate(process_cpu_seconds_total{{job=~".*malla.*|.*istiod.*"}}{RATE})', "{{instance}}")],
               unit="short", pos=(12, 23, 12, 8)),
    ]
    return _dashboard("Istio Control Plane Dashboard (malla)", "malla-control-plane", panels, [])


DASHBOARDS = {
    "istio-mesh-dashboard.json": mesh_dashboard,
    "istio-service-dashboard.json": service_dashboard,
    "istio-workload-dashboard.json": workload_dashboard,
    "malla-control-plane-dashboard.json": control_plane_dashboard,
}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    out = Path((argv or sys.argv[1:] or [str(OUT_DIR)])[0])
    out.mkdir(parents=True, exist_ok=True)
    for name in DASHBOARDS:
        (out / name).write_text(render(name), encoding="utf-8")
        print(out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
