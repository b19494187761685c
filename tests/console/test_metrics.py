"""Istio's metrics in, rates, percentiles and Kiali's health out (pure parts of the console)."""

from __future__ import annotations

import math

import pytest

from malla.console.health import DEGRADED, FAILURE, HEALTHY, NO_DATA, request_health
from malla.console.istio_metrics import SeriesKey, parse_istio_metrics
from malla.console.timeseries import MetricsStore
from malla.console.traffic import effective, histogram_quantile, summarize
from tests.console.fakes import Flow, istio_text


def key(reporter: str = "destination", destination: str = "reviews", security: str = "mutual_tls",
        version: str = "v1") -> SeriesKey:
    known = destination != "unknown"
    return SeriesKey(
        reporter=reporter, source_workload="productpage", source_namespace="default", source_version="v1",
        destination_service="reviews.default.svc.cluster.local", destination_service_name="reviews",
        destination_service_namespace="default", destination_workload=destination,
        destination_namespace="default" if known else "unknown", destination_version=version if known else "",
        protocol="http", security=security,
    )


def test_parse_keeps_istio_families_and_sums_labels_the_console_does_not_group_by() -> None:
    text = istio_text([Flow("productpage", "reviews", "reviews", rps=1, codes={"200": 0.75, "503": 0.25})], elapsed=8)
    text += ('istio_requests_total{reporter="destination",source_workload="productpage",source_workload_namespace="default",'
             'source_version="v1",destination_service="reviews.default.svc.cluster.local",destination_service_name="reviews",'
             'destination_service_namespace="default",destination_workload="reviews",destination_workload_namespace="default",'
             'destination_version="v1",request_protocol="http",response_code="503",response_flags="UF",'
             'source_principal="spiffe://cluster.local/ns/default/sa/productpage",connection_security_policy="mutual_tls"} 3\n')
    parsed = parse_istio_metrics(text)
    assert list(parsed) == [key()]
    counters = parsed[key()]
    assert counters["req:200"] == pytest.approx(6)
    assert counters["req:503"] == pytest.approx(2 + 3)  # response_flags "-" and "UF" summed
    assert counters["le:+Inf"] == pytest.approx(8)
    assert not any(name.startswith("envoy") for name in counters)


def test_labels_the_console_does_not_read_are_cut_even_with_quotes_and_commas_in_them() -> None:
    text = ('# TYPE istio_requests_total counter\n'
            'istio_requests_total{reporter="destination",source_principal="a\\"b,c=\\"d",source_workload="productpage",'
            'source_workload_namespace="default",source_version="v1",destination_service="reviews.default.svc.cluster.local",'
            'destination_service_name="reviews",destination_service_namespace="default",destination_workload="reviews",'
            'destination_workload_namespace="default",destination_version="v1",request_protocol="http",'
            'response_code="200",connection_security_policy="mutual_tls"} 5\n'
            '# TYPE istio_request_bytes histogram\n'
            'istio_request_bytes_bucket{reporter="destination",le="+Inf"} 5\n')
    assert parse_istio_metrics(text) == {key(): {"req:200": 5.0}}


def test_parse_counts_grpc_errors_and_tcp_bytes() -> None:
    labels = ('reporter="destination",source_workload="a",source_workload_namespace="ns",destination_service="b.ns.svc.cluster.local",'
              'destination_service_name="b",destination_service_namespace="ns",destination_workload="b",'
              'destination_workload_namespace="ns"')
    text = (f'istio_requests_total{{{labels},request_protocol="grpc",response_code="200",grpc_response_status="14"}} 4\n'
            f'istio_requests_total{{{labels},request_protocol="grpc",response_code="200",grpc_response_status="0"}} 6\n'
            f'istio_tcp_sent_bytes_total{{{labels},request_protocol="tcp"}} 1000\n')
    parsed = parse_istio_metrics(text)
    grpc = next(c for k, c in parsed.items() if k.protocol == "grpc")
    tcp = next(c for k, c in parsed.items() if k.protocol == "tcp")
    assert grpc["grpc_err"] == 4 and grpc["req:200"] == 10
    assert tcp == {"tcp_sent": 1000}
    traffic = summarize(parsed.items())
    assert traffic.error_percent == pytest.approx(40)
    assert traffic.health == FAILURE


def test_rates_come_from_increases_between_scrapes() -> None:
    store = MetricsStore()
    store.record("t", {key(): {"req:200": 100}}, now=1000)
    assert store.rates(now=1000, window=60) == {}  # a first scrape is only a baseline
    store.record("t", {key(): {"req:200": 150}}, now=1005)
    store.record("t", {key(): {"req:200": 200}}, now=1010)
    assert store.rates(now=1010, window=60)[key()]["req:200"] == pytest.approx(10)


def test_a_restarted_proxy_and_a_new_flow_count_from_zero() -> None:
    store = MetricsStore()
    other = key(version="v2")
    store.record("t", {key(): {"req:200": 500}}, now=0)
    store.record("t", {key(): {"req:200": 30}, other: {"req:200": 20}}, now=10)  # reset to 0 then 30; other is new
    rates = store.rates(now=10, window=60)
    assert rates[key()]["req:200"] == pytest.approx(3)
    assert rates[other]["req:200"] == pytest.approx(2)


def test_rates_of_a_target_that_left_fade_over_the_window() -> None:
    store = MetricsStore()
    for t in (0, 10, 20):
        store.record("gone", {key(): {"req:200": 10.0 * t}}, now=t)
    store.retain([], now=20)
    assert store.rates(now=20, window=60)[key()]["req:200"] == pytest.approx(10)
    assert store.rates(now=40, window=60)[key()]["req:200"] == pytest.approx(5)
    assert store.rates(now=90, window=60) == {}


def test_steps_say_when_nothing_was_scraped() -> None:
    store = MetricsStore()
    for t in (100, 105, 110, 115):
        store.record("t", {key(): {"req:200": 4.0 * t}}, now=t)
    steps = store.steps(now=120, span=40, step=10)
    assert [t for t, _ in steps] == [90, 100, 110, 120]
    assert steps[0][1] is None and steps[1][1] is None  # before any increase was seen
    assert steps[2][1] is not None and steps[2][1][key()]["req:200"] == pytest.approx(4)
    assert steps[3][1] is not None and steps[3][1][key()]["req:200"] == pytest.approx(4)


@pytest.mark.parametrize(("q", "expected"), [(0.5, 25 + 25 * 25 / 75), (0.95, 25 + 25 * 70 / 75), (0.25, 25.0), (0.1, 16.0)])
def test_histogram_quantile_interpolates_inside_the_bucket(q: float, expected: float) -> None:
    buckets = {10.0: 0.0, 25.0: 25.0, 50.0: 100.0, math.inf: 100.0}  # cumulative, as Prometheus keeps them
    assert histogram_quantile(q, buckets) == pytest.approx(expected)


def test_histogram_quantile_in_the_inf_bucket_is_the_last_finite_bound() -> None:
    assert histogram_quantile(0.99, {100.0: 50.0, math.inf: 100.0}) == 100.0
    assert histogram_quantile(0.5, {100.0: 0.0, math.inf: 0.0}) is None


def test_the_destination_report_wins_and_source_only_calls_stay() -> None:
    rates = {
        key("source"): {"req:200": 10},
        key("destination"): {"req:200": 10},
        key("source", destination="unknown", security="unknown"): {"req:503": 1},
    }
    kept = effective(rates)
    assert set(kept) == {key("destination"), key("source", destination="unknown", security="unknown")}
    assert effective({key("source"): {"req:200": 3}}) == {key("source"): {"req:200": 3}}


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        ({}, HEALTHY),
        ({"http_5xx": 0.01}, DEGRADED),  # Kiali: any 5xx is degraded
        ({"http_5xx": 9.9}, DEGRADED),
        ({"http_5xx": 10}, FAILURE),  # ... and 10 % is a failure
        ({"http_4xx": 9.9}, HEALTHY),  # client errors are tolerated up to 10 %
        ({"http_4xx": 10}, DEGRADED),
        ({"http_4xx": 20}, FAILURE),
        ({"http_4xx": 15, "http_5xx": 12}, FAILURE),  # the worst wins
    ],
)
def test_kiali_default_tolerances(errors: dict[str, float], expected: str) -> None:
    assert request_health(totals={"http": 100}, errors=errors) == expected


def test_no_requests_is_no_health_information() -> None:
    assert request_health(totals={}, errors={}) == NO_DATA
    assert request_health(totals={"grpc": 10}, errors={"grpc_err": 0.5}) == DEGRADED
