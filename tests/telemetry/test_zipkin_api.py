"""The built-in collector speaks Zipkin's v2 API: what a Zipkin client or UI sends and asks.

The routes are the control plane's (``zipkin_routes``) on a Starlette app,
called over HTTP in process; spans live in SQLite in a temporary home.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from malla.controlplane.zipkin import span_store, with_collector, zipkin_routes
from malla.pilot.snapshot import MeshConfig
from malla.telemetry.spans import SpanStore

TRACE = "5af7183fb1d4cf5f5af7183fb1d4cf5f"
NOW_US = int(time.time() * 1e6)


def span(span_id: str, service: str, *, parent: str | None = None, trace: str = TRACE, name: str = "get /",
         kind: str = "SERVER", ts: int = NOW_US, duration: int = 1000, **tags: str) -> dict[str, Any]:
    out: dict[str, Any] = {"traceId": trace, "id": span_id, "name": name, "kind": kind, "timestamp": ts,
                           "duration": duration, "localEndpoint": {"serviceName": service}, "tags": tags}
    if parent:
        out["parentId"] = parent
    return out


CALL = [
    span("000000000000000a", "ingressgateway.istio-system", kind="CLIENT", ts=NOW_US, duration=9000),
    span("000000000000000b", "productpage.default", parent="000000000000000a", ts=NOW_US + 100, duration=8000),
    span("000000000000000c", "productpage.default", parent="000000000000000b", kind="CLIENT", name="reviews:9080",
         ts=NOW_US + 200, duration=5000),
    span("000000000000000d", "reviews.default", parent="000000000000000c", name="reviews:9080", ts=NOW_US + 300,
         duration=4000, error="true"),
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SpanStore]:
    s = span_store(tmp_path)
    yield s
    s.close()


class Api:
    """HTTP calls to the collector's routes, in process."""

    def __init__(self, store: SpanStore) -> None:
        self.app = Starlette(routes=zipkin_routes(store))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(call())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)


@pytest.fixture
def client(store: SpanStore) -> Api:
    return Api(store)


def post(client: Api, spans: list[dict[str, Any]]) -> Any:
    return client.post("/api/v2/spans", content=json.dumps(spans), headers={"content-type": "application/json"})


def test_spans_posted_are_one_trace_in_time_order(client: Api) -> None:
    assert post(client, list(reversed(CALL))).status_code == 202
    trace = client.get(f"/api/v2/trace/{TRACE}").json()
    assert [s["id"] for s in trace] == ["000000000000000a", "000000000000000b", "000000000000000c", "000000000000000d"]
    assert trace[3]["parentId"] == "000000000000000c" and trace[3]["tags"] == {"error": "true"}


def test_ids_are_normalized_as_zipkin_does(client: Api) -> None:
    post(client, [span("ABC", "Reviews.Default", trace="0000000000000000" + "00000000000000FF", name="GET /X")])
    found = client.get("/api/v2/trace/ff").json()
    assert found[0]["traceId"] == "00000000000000ff" and found[0]["id"] == "0000000000000abc"
    assert found[0]["localEndpoint"]["serviceName"] == "reviews.default" and found[0]["name"] == "get /x"
    assert client.get("/api/v2/trace/00000000000000000000000000000ff").status_code == 200


def test_services_and_their_span_names(client: Api) -> None:
    post(client, CALL)
    assert client.get("/api/v2/services").json() == [
        "ingressgateway.istio-system", "productpage.default", "reviews.default"]
    assert client.get("/api/v2/spans", params={"serviceName": "productpage.default"}).json() == ["get /", "reviews:9080"]
    missing = client.get("/api/v2/spans")
    assert missing.status_code == 400 and "serviceName is required" in missing.text


def test_trace_queries_filter_by_service_span_duration_tags_and_limit(client: Api) -> None:
    post(client, CALL)
    other = "1" * 32
    post(client, [span("00000000000000e1", "ratings.default", trace=other, ts=NOW_US + 10, duration=100)])

    def ids(**params: Any) -> list[str]:
        return [t[0]["traceId"] for t in client.get("/api/v2/traces", params=params).json()]

    assert ids() == [TRACE, other]  # newest first
    assert ids(serviceName="ratings.default") == [other]
    assert ids(serviceName="reviews.default", spanName="reviews:9080") == [TRACE]
    assert ids(minDuration=1000) == [TRACE]
    assert ids(annotationQuery="error") == [TRACE] and ids(annotationQuery="error=false") == []
    assert ids(limit=1) == [TRACE]
    assert ids(endTs=(NOW_US - 60_000_000) // 1000, lookback=1000) == []
    assert client.get("/api/v2/traces", params={"limit": "ten"}).status_code == 400


def test_unknown_and_malformed_traces(client: Api) -> None:
    missing = client.get("/api/v2/trace/" + "2" * 32)
    assert missing.status_code == 404 and "not found" in missing.text
    assert client.get("/api/v2/trace/not-hex").status_code == 400


@pytest.mark.parametrize("payload, message", [
    ({"traceId": TRACE}, "must be a JSON list of spans"),
    ([span("a", "x"), {"traceId": "xyz", "id": "a"}], "span[1].traceId"),
    ([{"traceId": TRACE, "id": "not-an-id"}], "span[0].id"),
    ([dict(span("a", "x"), timestamp=-5)], "span[0].timestamp"),
])
def test_malformed_spans_are_refused_naming_the_span_and_field(client: Api, payload: Any, message: str) -> None:
    answer = client.post("/api/v2/spans", content=json.dumps(payload))
    assert answer.status_code == 400 and message in answer.text
    assert client.get("/api/v2/services").json() == []


def test_gzip_bodies_are_accepted(client: Api) -> None:
    body = gzip.compress(json.dumps(CALL[:1]).encode())
    assert client.post("/api/v2/spans", content=body, headers={"content-encoding": "gzip"}).status_code == 202
    assert client.get("/api/v2/services").json() == ["ingressgateway.istio-system"]


def test_dependencies_link_services_through_parent_spans(client: Api) -> None:
    post(client, CALL)
    assert client.get("/api/v2/dependencies").json() == [
        {"parent": "ingressgateway.istio-system", "child": "productpage.default", "callCount": 1, "errorCount": 0},
        {"parent": "productpage.default", "child": "reviews.default", "callCount": 1, "errorCount": 1},
    ]


def test_spans_outlive_the_control_plane_in_its_home(tmp_path: Path) -> None:
    first = span_store(tmp_path)
    first.add(CALL)
    first.close()
    again = span_store(tmp_path)
    assert len(again.trace(TRACE)) == 4
    again.close()


def test_the_oldest_spans_go_beyond_the_limit(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "t.sqlite3", max_spans=500)
    for n in range(1200):
        store.add([span(f"{n + 1:016x}", "s", trace=f"{n + 1:032x}")])
    assert store.trace(f"{1:032x}") == [] and len(store.trace(f"{1200:032x}")) == 1
    store.close()


def test_the_builtin_collector_is_the_tracer_unless_one_is_named() -> None:
    assert with_collector(MeshConfig(), host="127.0.0.1", port=20001).zipkin_address == "127.0.0.1:20001"
    assert with_collector(MeshConfig(), host="0.0.0.0", port=20001).zipkin_address == "127.0.0.1:20001"
    external = MeshConfig(zipkin_address="jaeger.example.com:9411")
    assert with_collector(external, host="127.0.0.1", port=20001) is external
