"""The console's pages: graph, workloads, services, proxies, Istio config, traces.

Lists and tables are rendered here from the same data the JSON API serves;
the graph, the charts and the traces are drawn in the browser by small
scripts in ``static/`` that poll the JSON API (and the Zipkin API for
traces) every few seconds.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from malla.console.graph import build_graph
from malla.console.layout import badge, esc, health_badge, link, number, page, table

if TYPE_CHECKING:
    from malla.console.mount import Console

_STATE_KIND = {"SYNCED": "ok", "STALE": "warn", "REJECTED": "bad", "NOT SENT": "muted"}
_LEVEL_KIND = {"error": "bad", "warning": "warn", "info": "muted"}
_STATUS_KIND = {"valid": "ok", "warning": "warn", "error": "bad"}


def _html(text: str) -> HTMLResponse:
    return HTMLResponse(text, headers={"cache-control": "no-store"})


def graph_page() -> str:
    body = (
        '<div class="toolbar"><label>Window <select id="window">'
        '<option value="60">last 1 min</option><option value="300">last 5 min</option>'
        '<option value="600">last 10 min</option></select></label>'
        '<span class="legend" id="legend"></span><span id="graph-status" class="status">loading...</span></div>'
        '<div class="graph-wrap"><div id="cy" aria-label="service graph"></div>'
        '<aside id="summary" class="summary"><p class="muted">Select a node or an edge.</p></aside></div>'
        "<h2>Traffic</h2>"
        + table(["From", "To", "Protocol", "Requests/s", "Error %", "p95 ms", "mTLS", "Health"], [], id_="edges",
                empty="No traffic in this window.")
    )
    return page(title="Service graph", active="graph", body=body,
                scripts=["vendor/cytoscape.min.js", "common.js", "graph.js"])


def _traffic_cells(node: dict[str, Any], direction: str) -> list[str]:
    t = node[direction]
    return [number(t["rps"]), number(t["errorPercent"], digits=1), number(t["p95Ms"], digits=1)]


def list_page(console: Console, kind: str) -> str:
    graph = build_graph(console.store.rates(now=console.clock(), window=console.window), console.views.workloads(),
                        window=console.window)
    rows = []
    for n in graph["nodes"]:
        if n["kind"] != kind:
            continue
        name = link(n["url"], n["name"])
        if kind == "workload":
            rows.append([name, esc(n["namespace"]), esc(n["version"] or ""), str(n["instances"]),
                         health_badge(n["health"]), *_traffic_cells(n, "inbound"), number(n["outbound"]["rps"])])
        else:
            rows.append([name, esc(n["namespace"]), esc(n["host"] or ""), health_badge(n["health"]),
                         *_traffic_cells(n, "inbound")])
    if kind == "workload":
        headers = ["Workload", "Namespace", "Version", "Instances", "Health", "In req/s", "In error %", "In p95 ms",
                   "Out req/s"]
    else:
        headers = ["Service", "Namespace", "Host", "Health", "Req/s", "Error %", "p95 ms"]
    window = f'<p class="muted">Figures over the last {console.window:.0f} s.</p>'
    return page(title=f"{kind.title()}s", active=f"{kind}s", body=window + table(headers, rows, id_=f"{kind}s",
                empty=f"No {kind}s yet."))


def detail_page(kind: str, namespace: str, name: str) -> str:
    charts = "".join(
        f'<section class="direction" data-direction="{d}"><h2>{d.title()}</h2><div class="cards" id="cards-{d}"></div>'
        f'<div class="charts"><figure><figcaption>Requests/s</figcaption><div class="chart" id="chart-{d}-rps"></div></figure>'
        f'<figure><figcaption>Error %</figcaption><div class="chart" id="chart-{d}-errors"></div></figure>'
        f'<figure><figcaption>Latency ms (p50, p95, p99)</figcaption><div class="chart" id="chart-{d}-latency"></div></figure>'
        "</div></section>"
        for d in (("inbound",) if kind == "service" else ("inbound", "outbound"))
    )
    body = (
        f'<p><span id="health"></span> <span id="detail-status" class="status">loading...</span></p>{charts}'
        '<h2>Neighbours</h2><div class="neighbours"><div><h3>Inbound</h3><div id="neighbours-inbound"></div></div>'
        '<div><h3>Outbound</h3><div id="neighbours-outbound"></div></div></div>'
        '<h2 id="members-title"></h2><div id="members"></div>'
    )
    return page(title=f"{kind.title()} {namespace}/{name}", active=f"{kind}s", body=body,
                scripts=["common.js", "charts.js", "detail.js"],
                data={"kind": kind, "namespace": namespace, "name": name})


def _type_row(t: dict[str, Any]) -> list[str]:
    error = esc(t.get("error") or "")
    rejected = ", ".join(esc(r) for r in t.get("rejected") or [])
    reason = error + (f'<div class="muted">rejected: {rejected}</div>' if rejected else "")
    return [esc(t["type"]), badge(t["state"], _STATE_KIND.get(t["state"], "muted")), esc((t.get("sentVersion") or "")[:12]),
            esc((t.get("ackedVersion") or "")[:12]), str(t.get("nacks", 0)), f'<span class="reason">{reason}</span>']


def proxies_page(proxies: list[dict[str, Any]]) -> str:
    parts = []
    for p in sorted(proxies, key=lambda p: p["node"]):
        states = sorted({t["state"] for t in p["types"]})
        overall = "REJECTED" if "REJECTED" in states else "STALE" if "STALE" in states else "SYNCED" if states else "NOT SENT"
        connected = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p["connectedAt"])) if p.get("connectedAt") else "-"
        problem = f'<p class="problem">{esc(p["problem"])}</p>' if p.get("problem") else ""
        parts.append(
            f'<section class="proxy" data-node="{esc(p["node"])}"><h2>{badge(overall, _STATE_KIND.get(overall, "muted"))} '
            f'{esc(p["node"])}</h2><p class="muted">{esc(p["mode"])} xDS, Envoy {esc(p.get("envoyVersion") or "?")}, '
            f'connected {esc(connected)}, config version {esc((p.get("snapshotVersion") or "")[:12])}</p>{problem}'
            + table(["Type", "State", "Sent", "Acked", "NACKs", "Envoy's reason"], (_type_row(t) for t in p["types"]),
                    empty="No resources requested yet.")
            + "</section>"
        )
    body = "".join(parts) or '<p class="empty">No proxies are connected.</p>'
    return page(title="Proxies", active="proxies", body=body)


def _message(m: dict[str, Any]) -> str:
    where = " ".join(esc(x) for x in (m.get("code"), m.get("field")) if x)
    line = f':{m["line"]}' if m.get("line") else ""
    origin = f' <span class="muted">{esc(m.get("file") or "")}{line}</span>' if m.get("file") else ""
    return (f'<li>{badge(m["level"], _LEVEL_KIND.get(m["level"], "muted"))} <span class="muted">{esc(m["source"])}</span> '
            f"<b>{where}</b> {esc(m['message'])}{origin}</li>")


def config_page(data: dict[str, Any], *, status: str | None) -> str:
    rows = []
    for r in data["items"]:
        if status and r["status"] != status:
            continue
        messages = "".join(_message(m) for m in r["messages"])
        rows.append([badge(r["status"], _STATUS_KIND[r["status"]]), esc(r["kind"]), esc(r["namespace"]), esc(r["name"]),
                     f'<span class="muted">{esc(r["origin"] or "")}</span>',
                     f'<ul class="messages">{messages}</ul>' if messages else ""])
    c = data["counts"]
    filters = " ".join(
        f'<a href="/console/config?status={s}">{badge(f"{c[s]} {s}", _STATUS_KIND[s])}</a>' for s in ("valid", "warning", "error")
    )
    other = ""
    if data["otherProblems"]:
        other = '<h2>Other problems</h2><ul class="messages">' + "".join(_message(m) for m in data["otherProblems"]) + "</ul>"
    body = (f'<p>{filters} <a href="/console/config">all</a></p>'
            + table(["Status", "Kind", "Namespace", "Name", "Source", "Messages"], rows, id_="config",
                    empty="No Istio resources.") + other)
    return page(title="Istio config", active="config", body=body)


def traces_page(trace_id: str | None) -> str:
    if trace_id is None:
        body = ('<div class="toolbar"><label>Service <select id="service"></select></label> '
                '<label>Limit <input id="limit" type="number" value="20" min="1" max="200"></label> '
                '<button id="search">Search</button> <span id="traces-status" class="status"></span></div>'
                + table(["Trace", "Root", "Services", "Spans", "Duration ms", "Started", "Errors"], [], id_="traces",
                        empty="Search for traces of a service."))
        return page(title="Traces", active="traces", body=body, scripts=["common.js", "traces.js"])
    body = '<p id="trace-status" class="status">loading...</p><div id="waterfall" class="waterfall"></div><pre id="span-tags"></pre>'
    return page(title=f"Trace {trace_id}", active="traces", body=body, scripts=["common.js", "traces.js"],
                data={"trace": trace_id})


def page_routes(console: Console) -> list[Route]:
    async def home(_: Request) -> Response:
        return RedirectResponse("/console/graph", status_code=307)

    async def graph(_: Request) -> Response:
        return _html(graph_page())

    async def workloads(_: Request) -> Response:
        return _html(list_page(console, "workload"))

    async def services(_: Request) -> Response:
        return _html(list_page(console, "service"))

    async def detail(request: Request) -> Response:
        kind = "service" if request.url.path.startswith("/console/services/") else "workload"
        return _html(detail_page(kind, request.path_params["namespace"], request.path_params["name"]))

    async def proxies(_: Request) -> Response:
        return _html(proxies_page(await run_in_threadpool(console.views.proxies)))

    async def config(request: Request) -> Response:
        status = request.query_params.get("status")
        if status not in (None, "valid", "warning", "error"):
            text = f"<p>status={esc(status)} is not a status: use valid, warning or error.</p>"
            return HTMLResponse(page(title="Istio config", active="config", body=text), status_code=400)
        return _html(config_page(await run_in_threadpool(console.validations), status=status))

    async def traces(request: Request) -> Response:
        return _html(traces_page(request.path_params.get("trace_id")))

    return [
        Route("/", home),
        Route("/console", home),
        Route("/console/", home),
        Route("/console/graph", graph),
        Route("/console/workloads", workloads),
        Route("/console/services", services),
        Route("/console/workloads/{namespace}/{name}", detail),
        Route("/console/services/{namespace}/{name}", detail),
        Route("/console/proxies", proxies),
        Route("/console/config", config),
        Route("/console/traces", traces),
        Route("/console/traces/{trace_id}", traces),
    ]
