"""Bookinfo's telemetry, as Istio's observability tasks show it: traces and metrics through the gateway.

The demo mesh (``malla.demo.bookinfo.Demo``: control plane, six workloads
with sidecars, the ingress gateway) traces every request. A request enters
at the gateway with a B3 trace id of the test's choosing; the Bookinfo
services pass the trace headers on, so the whole call tree (gateway ->
productpage -> reviews -> ratings) is one trace in the control plane's
Zipkin API, each hop a span of the proxy it crossed. The gateway and the
sidecars report the same requests in Istio's metrics.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from malla.demo.bookinfo import Demo, DemoError
from tests.e2e.mesh import wait_for

pytestmark = [pytest.mark.envoy, pytest.mark.xdist_group("bookinfo-telemetry")]

GATEWAY = "ingressgateway.istio-system"
CHAIN = (GATEWAY, "productpage.default", "reviews.default", "ratings.default")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    # The demo takes Istio's ports when they look free; another demo starting at the same instant
    # (another xdist worker: pytest 9 ignores xdist_group) can take one first. Then start again.
    for attempt in range(3):
        d = Demo(home=tmp_path_factory.mktemp("bookinfo"), gateway_port=0, usual_ports=False)
        try:
            d.start()
            break
        except DemoError as exc:
            d.stop()
            if "cannot serve" not in str(exc) or attempt == 2:
                raise
    try:
        yield d
    finally:
        d.stop()


def zipkin(demo: Demo, path: str, **params: Any) -> httpx.Response:
    assert demo.cp is not None and demo.cp.state is not None
    return httpx.get(demo.cp.state.api_url + path, params=params, timeout=10, trust_env=False)


def traced_page(demo: Demo) -> str:
    """GET the product page with a trace id of our own; return the id."""
    trace_id = secrets.token_hex(16)
    headers = {"x-b3-traceid": trace_id, "x-b3-spanid": secrets.token_hex(8), "x-b3-sampled": "1"}
    r = httpx.get(demo.product_url, headers=headers, timeout=15)
    assert r.status_code == 200, r.text[:500]
    return trace_id


def hop_parents(spans: list[dict[str, Any]]) -> dict[str, set[str]]:
    """For each service, the services whose spans its spans are children of."""
    service_of = {s["id"]: s["localEndpoint"]["serviceName"] for s in spans}
    out: dict[str, set[str]] = {}
    for s in spans:
        parent = service_of.get(s.get("parentId", ""))
        if parent is not None:
            out.setdefault(s["localEndpoint"]["serviceName"], set()).add(parent)
    return out


def test_one_request_is_one_trace_through_gateway_productpage_reviews_and_ratings(demo: Demo) -> None:
    # reviews v1 does not call ratings: ask again until the load balancer picked v2 or v3.
    for _ in range(12):
        trace_id = traced_page(demo)
        spans = wait_for(lambda t=trace_id: zipkin(demo, f"/api/v2/trace/{t}"),
                         lambda r: r.status_code == 200 and _services(r.json()) >= {*CHAIN[:3], "details.default"},
                         timeout=60, interval=0.5, what=f"trace {trace_id} to reach the collector").json()
        if "ratings.default" in _services(spans):
            break
    else:
        raise AssertionError("no trace reached ratings in 12 requests: reviews v2/v3 never answered")
    spans = wait_for(lambda: zipkin(demo, f"/api/v2/trace/{trace_id}").json(),
                     lambda s: {*CHAIN} <= _services(s) and "ratings.default" in hop_parents(s), timeout=30,
                     what="the ratings hop's spans")
    assert {s["traceId"] for s in spans} == {trace_id}
    parents = hop_parents(spans)
    # Each hop's server span hangs under the previous hop's client span (productpage also calls details).
    for caller, callee in zip(CHAIN, CHAIN[1:]):
        assert caller in parents[callee], f"{callee}'s spans are not children of {caller}'s: {parents}"
    assert "productpage.default" in parents["details.default"]
    kinds = {(s["localEndpoint"]["serviceName"], s["kind"]) for s in spans}
    for service in CHAIN[1:]:
        assert (service, "SERVER") in kinds, f"{service} has no server span: {sorted(kinds)}"
    reviews = [s for s in spans if s["localEndpoint"]["serviceName"] == "reviews.default" and s["kind"] == "SERVER"]
    assert reviews[0]["tags"]["istio.canonical_revision"] in ("v2", "v3")


def test_zipkin_api_lists_the_services_and_their_dependencies(demo: Demo) -> None:
    traced_page(demo)
    services = wait_for(lambda: zipkin(demo, "/api/v2/services").json(),
                        lambda s: {*CHAIN[:3], "details.default"} <= set(s), timeout=60,
                        what="the collector to list Bookinfo's services")
    assert {*CHAIN[:3], "details.default"} <= set(services)
    names = zipkin(demo, "/api/v2/spans", serviceName="productpage.default").json()
    assert names, "productpage's span names"
    found = zipkin(demo, "/api/v2/traces", serviceName="productpage.default", limit=3).json()
    assert 1 <= len(found) <= 3 and all(t for t in found)
    links = {(d["parent"], d["child"]) for d in zipkin(demo, "/api/v2/dependencies").json()}
    assert (GATEWAY, "productpage.default") in links and ("productpage.default", "details.default") in links


def test_the_gateway_and_productpage_report_the_same_requests(demo: Demo) -> None:
    for _ in range(3):
        traced_page(demo)
    targets = {g["labels"]["workload"]: g for g in zipkin(demo, "/api/v1/telemetry/targets").json()}
    assert {"ingressgateway", "productpage", "reviews", "ratings", "details"} <= set(targets)
    wanted = dict(source_workload="ingressgateway", destination_workload="productpage", response_code="200",
                  destination_service="productpage.default.svc.cluster.local")
    gateway = wait_for(lambda: requests(targets["ingressgateway"]),
                       lambda rows: count(rows, reporter="source", **wanted) >= 3, timeout=30,
                       what="the gateway to report its requests to productpage")
    assert targets["ingressgateway"]["labels"]["proxy_kind"] == "router"
    row = next(r for r, _ in gateway if r.get("reporter") == "source")
    assert (row["source_workload_namespace"], row["destination_version"]) == ("istio-system", "v1")
    server = wait_for(lambda: requests(targets["productpage"]),
                      lambda rows: count(rows, reporter="destination", **wanted) >= 3, timeout=30,
                      what="productpage's sidecar to report the gateway's requests")
    row = next(r for r, _ in server if r.get("reporter") == "destination" and r["source_workload"] == "ingressgateway")
    assert row["source_principal"] == "spiffe://cluster.local/ns/istio-system/sa/ingressgateway-service-account"
    assert row["connection_security_policy"] == "mutual_tls"


def requests(target: dict[str, Any]) -> list[tuple[dict[str, str], float]]:
    url = f"http://{target['targets'][0]}{target['labels']['__metrics_path__']}"
    text = httpx.get(url, timeout=10, trust_env=False).text
    return [(dict(s.labels), s.value) for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "istio_requests_total"]


def count(rows: list[tuple[dict[str, str], float]], **labels: str) -> float:
    return sum(v for got, v in rows if all(got.get(k) == want for k, want in labels.items()))


def _services(spans: list[dict[str, Any]]) -> set[str]:
    return {s["localEndpoint"]["serviceName"] for s in spans}
