"""The console's JSON API: the graph, one service, one workload, config validations.

``/api/v1/graph``, ``/api/v1/services/{ns}/{name}``,
``/api/v1/workloads/{ns}/{name}`` and ``/api/v1/validations``, served by the
control plane's HTTP API app next to its own views. Time parameters are
seconds (``window`` for figures, ``span`` and ``step`` for charts); a value
out of range is answered 400 naming the parameter and what is allowed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from malla.console.details import service_detail, workload_detail
from malla.console.graph import build_graph
from malla.console.validations import build_validations

if TYPE_CHECKING:
    from malla.console.mount import Console


class BadParameter(ValueError):
    pass


def seconds_param(request: Request, name: str, *, default: float, low: float, high: float) -> float:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw.removesuffix("s"))
    except ValueError:
        raise BadParameter(f"query parameter {name}={raw!r} is not a number of seconds; allowed: {low:g} to {high:g}") from None
    if not low <= value <= high:
        raise BadParameter(f"query parameter {name}={raw!r} is out of range; allowed: {low:g} to {high:g} seconds")
    return value


def _bad(exc: BadParameter) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=400)


def api_routes(console: Console) -> list[Route]:
    history = console.store.history

    def window_of(request: Request) -> float:
        return seconds_param(request, "window", default=console.window, low=console.poller.interval, high=history)

    def chart_of(request: Request) -> tuple[float, float]:
        span = seconds_param(request, "span", default=console.chart_span, low=console.poller.interval, high=history)
        step = seconds_param(request, "step", default=console.chart_step, low=console.poller.interval, high=span)
        return span, step

    async def graph(request: Request) -> JSONResponse:
        try:
            window = window_of(request)
        except BadParameter as exc:
            return _bad(exc)
        data = build_graph(console.store.rates(now=console.clock(), window=window), console.views.workloads(), window=window)
        data["scrape"] = console.scrape_status()
        return JSONResponse(data)

    async def detail(request: Request) -> JSONResponse:
        kind = "service" if request.url.path.startswith("/api/v1/services/") else "workload"
        ns, name = request.path_params["namespace"], request.path_params["name"]
        try:
            window = window_of(request)
            span, step = chart_of(request)
        except BadParameter as exc:
            return _bad(exc)
        build = service_detail if kind == "service" else workload_detail
        found = build(console.store, console.views.workloads(), namespace=ns, name=name, now=console.clock(),
                      window=window, span=span, step=step)
        if found is None:
            return JSONResponse({"error": f"no {kind} {ns}/{name}: it is not registered and has no traffic"}, status_code=404)
        return JSONResponse(found)

    async def validations(_: Request) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(console.validations))

    return [
        Route("/api/v1/graph", graph),
        Route("/api/v1/services/{namespace}/{name}", detail),
        Route("/api/v1/workloads/{namespace}/{name}", detail),
        Route("/api/v1/validations", validations),
    ]


def validations_json(console: Console) -> dict[str, Any]:
    views = console.views
    return build_validations(list(views.configs()), views.problems(), views.workloads())
