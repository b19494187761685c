"""The built-in trace collector: Zipkin's v2 HTTP API on the control plane's API port.

Every sidecar's and gateway's Envoy sends its spans here with the Zipkin
tracer (``POST /api/v2/spans``, JSON) unless ``malla up --zipkin-address``
names an external Zipkin or Jaeger; ``MeshConfig.zipkin_address`` carries
the choice into translation (``with_collector``). Spans are kept in SQLite
in the home directory (``malla.telemetry.spans``), so Zipkin's UI, Jaeger's
Zipkin-compatible clients and ``curl`` read them with Zipkin's own queries:
``GET /api/v2/services``, ``/spans?serviceName=``, ``/remoteServices``,
``/traces``, ``/trace/{traceId}``, ``/dependencies``. Database work runs on
worker threads so the API's loop never waits on the disk.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from malla.pilot.snapshot import MeshConfig
from malla.telemetry.spans import SpanError, SpanStore, TraceQuery, parse_annotation_query

SPANS_FILE = "traces.sqlite3"
_WILDCARDS = ("0.0.0.0", "::", "")


def span_store(home: Path) -> SpanStore:
    """The collector's store in ``home`` (opened on first use)."""
    return SpanStore(Path(home) / SPANS_FILE)


def with_collector(mesh: MeshConfig, *, host: str, port: int) -> MeshConfig:
    """The mesh config with the built-in collector as tracer, unless an external one is set."""
    if mesh.zipkin_address:
        return mesh
    reachable = "127.0.0.1" if host in _WILDCARDS else host
    return mesh.with_(zipkin_address=f"[{reachable}]:{port}" if ":" in reachable else f"{reachable}:{port}")


def zipkin_routes(store: SpanStore) -> list[Route]:
    async def post_spans(request: Request) -> Response:
        body = await request.body()
        try:
            if request.headers.get("content-encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            payload = json.loads(body or b"[]")
            count = await run_in_threadpool(store.add, payload)
        except (ValueError, OSError) as exc:  # SpanError, bad JSON, bad gzip
            return PlainTextResponse(f"malformed spans: {exc}\n", status_code=400)
        return Response(status_code=202, headers={"x-malla-spans": str(count)})

    async def services(_: Request) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(store.services))

    async def span_names(request: Request) -> Response:
        service = request.query_params.get("serviceName")
        if not service:
            return PlainTextResponse("serviceName is required, e.g. ?serviceName=productpage.default\n", 400)
        return JSONResponse(await run_in_threadpool(store.span_names, service))

    async def remote_services(request: Request) -> Response:
        service = request.query_params.get("serviceName")
        if not service:
            return PlainTextResponse("serviceName is required, e.g. ?serviceName=productpage.default\n", 400)
        return JSONResponse(await run_in_threadpool(store.remote_services, service))

    async def traces(request: Request) -> Response:
        try:
            query = _trace_query(request.query_params)
        except ValueError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=400)
        now_us = int(time.time() * 1e6)
        return JSONResponse(await run_in_threadpool(lambda: store.traces(query, now_us=now_us)))

    async def trace(request: Request) -> Response:
        trace_id = request.path_params["trace_id"]
        try:
            spans = await run_in_threadpool(store.trace, trace_id)
        except SpanError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=400)
        if not spans:
            return PlainTextResponse(f"trace {trace_id} not found\n", status_code=404)
        return JSONResponse(spans)

    async def dependencies(request: Request) -> Response:
        try:
            end_ms = int(request.query_params.get("endTs") or time.time() * 1000)
            lookback_ms = int(request.query_params.get("lookback") or 86_400_000)
        except ValueError:
            return PlainTextResponse("endTs and lookback are milliseconds (integers)\n", status_code=400)
        links = await run_in_threadpool(
            lambda: store.dependencies(end_ts_us=end_ms * 1000, lookback_us=lookback_ms * 1000)
        )
        return JSONResponse(links)

    return [
        Route("/api/v2/spans", post_spans, methods=["POST"]),
        Route("/api/v2/spans", span_names, methods=["GET"]),
        Route("/api/v2/services", services, methods=["GET"]),
        Route("/api/v2/remoteServices", remote_services, methods=["GET"]),
        Route("/api/v2/traces", traces, methods=["GET"]),
        Route("/api/v2/trace/{trace_id}", trace, methods=["GET"]),
        Route("/api/v2/dependencies", dependencies, methods=["GET"]),
    ]


def _trace_query(params: Any) -> TraceQuery:
    """Zipkin's parameters: endTs and lookback in milliseconds, durations in microseconds."""

    def number(name: str) -> int | None:
        value = params.get(name)
        if value in (None, ""):
            return None
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{name}: {value!r} is not an integer") from None

    end_ms, lookback_ms = number("endTs"), number("lookback")
    return TraceQuery(
        service=params.get("serviceName") or None,
        remote_service=params.get("remoteServiceName") or None,
        span_name=None if params.get("spanName") in (None, "", "all") else params["spanName"],
        tags=parse_annotation_query(params.get("annotationQuery") or "") or None,
        min_duration=number("minDuration"),
        max_duration=number("maxDuration"),
        end_ts=end_ms * 1000 if end_ms is not None else None,
        lookback=lookback_ms * 1000 if lookback_ms is not None else None,
        limit=number("limit") or 10,
    )
