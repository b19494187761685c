"""What Prometheus meets: the workload's merged endpoint, the scrape targets, the printed configuration.

Real sockets on loopback addresses of the test's own (so port 15020 is free
there), the control plane's target listing from proxies as they connect,
and ``malla prometheus-config``'s refusals.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from typer.testing import CliRunner

from malla.cli.main import app
from malla.controlplane.monitoring import PushMetrics
from malla.discovery.service import PushRecord
from malla.pilot.snapshot import Proxy, ProxyKind
from malla.telemetry.endpoint import MetricsEndpoint
from malla.telemetry.labels import TCP_LABELS
from malla.telemetry.metrics import IstioMetrics
from malla.telemetry.prometheus_config import ConfigError, build_config
from malla.telemetry.targets import scrape_targets
from malla.telemetry.workload import WorkloadDirectory

runner = CliRunner()


@pytest.fixture
def address() -> str:
    """A loopback address of this test's own (from 127.254.0.0/16), so 15020 is free on it."""
    seed = hashlib.sha256(f"{os.getpid()}-{os.environ.get('PYTEST_CURRENT_TEST')}".encode()).digest()
    return f"127.254.{seed[0]}.{1 + seed[1] % 250}"


@pytest.fixture
def endpoints() -> Iterator[list[MetricsEndpoint]]:
    started: list[MetricsEndpoint] = []
    yield started
    for e in started:
        e.stop()


def test_the_endpoint_serves_istio_metrics_then_envoys_on_15020(address: str, endpoints: list) -> None:
    metrics = IstioMetrics()
    metrics.record_tcp({name: "x" for name in TCP_LABELS}, opened=1)
    endpoint = MetricsEndpoint(metrics, address=address, envoy_stats=lambda: b"envoy_server_live 1\n")
    endpoints.append(endpoint)
    assert endpoint.start() == f"{address}:15020"
    body = httpx.get(f"http://{address}:15020/stats/prometheus", timeout=5, trust_env=False)
    assert body.status_code == 200 and body.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert body.text.index("istio_tcp_connections_opened_total{") < body.text.index("envoy_server_live 1")
    other = httpx.get(f"http://{address}:15020/", timeout=5, trust_env=False)
    assert other.status_code == 404 and "/stats/prometheus" in other.text


def test_a_second_endpoint_on_the_address_takes_a_free_port(address: str, endpoints: list) -> None:
    first = MetricsEndpoint(IstioMetrics(), address=address, envoy_stats=lambda: b"")
    second = MetricsEndpoint(IstioMetrics(), address=address, envoy_stats=lambda: b"")
    endpoints += [first, second]
    assert first.bind() == f"{address}:15020"
    taken = second.bind()
    assert taken.startswith(f"{address}:") and taken != f"{address}:15020"
    second.start()
    assert httpx.get(f"http://{taken}/stats/prometheus", timeout=5, trust_env=False).status_code == 200


def test_connected_proxies_with_a_metrics_address_are_the_targets() -> None:
    proxies = [
        Proxy(id="sidecar~127.0.1.5~reviews-1.shop~shop.svc.cluster.local", namespace="shop", ip="127.0.1.5",
              workload_name="reviews", metrics_address="127.0.1.5:15020"),
        Proxy(id="router~127.0.0.1~ingressgateway-2.istio-system~x", namespace="istio-system", ip="127.0.0.1",
              kind=ProxyKind.ROUTER, workload_name="ingressgateway", metrics_address="127.0.0.1:38211"),
        Proxy(id="sidecar~127.0.1.9~legacy.shop~x", namespace="shop", ip="127.0.1.9"),  # not started by an agent
    ]
    groups = scrape_targets(proxies)
    assert [g["targets"] for g in groups] == [["127.0.0.1:38211"], ["127.0.1.5:15020"]]
    assert groups[1]["labels"] == {
        "__metrics_path__": "/stats/prometheus", "namespace": "shop", "workload": "reviews", "proxy_kind": "sidecar",
        "__meta_malla_node_id": "sidecar~127.0.1.5~reviews-1.shop~shop.svc.cluster.local",
        "__meta_malla_address": "127.0.1.5"}


def test_the_config_discovers_proxies_from_the_control_plane() -> None:
    config = build_config(api_url="http://127.0.0.1:20001/", monitoring_url="http://127.0.0.1:15014",
                          scrape_interval="1s", refresh_interval="2s")
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["malla-proxies"]["http_sd_configs"] == [
        {"url": "http://127.0.0.1:20001/api/v1/telemetry/targets", "refresh_interval": "2s"}]
    assert jobs["malla-controlplane"]["static_configs"][0]["targets"] == ["127.0.0.1:15014"]
    assert config["global"]["scrape_interval"] == "1s"


def test_a_static_config_lists_todays_targets_without_malla_meta_labels() -> None:
    groups = [{"targets": ["127.0.1.5:15020"], "labels": {"namespace": "shop", "__meta_malla_address": "127.0.1.5",
                                                          "__metrics_path__": "/stats/prometheus"}}]
    config = build_config(api_url="http://a:1", monitoring_url="http://a:2", static_targets=groups)
    (static,) = config["scrape_configs"][1]["static_configs"]
    assert static == {"targets": ["127.0.1.5:15020"],
                      "labels": {"namespace": "shop", "__metrics_path__": "/stats/prometheus"}}


@pytest.mark.parametrize("interval", ["1", "fast", "1.5s", ""])
def test_intervals_must_be_prometheus_durations(interval: str) -> None:
    with pytest.raises(ConfigError, match="--scrape-interval .*use e.g. 500ms, 1s"):
        build_config(api_url="http://a:1", monitoring_url="http://a:2", scrape_interval=interval)


def test_prometheus_config_without_a_control_plane_says_how_to_start_one(tmp_path) -> None:
    result = runner.invoke(app, ["prometheus-config", "--home", str(tmp_path)])
    assert result.exit_code == 3 and "malla up" in result.output


@pytest.mark.parametrize("args, message", [
    (["--zipkin-address", "zipkin"], "--zipkin-address 'zipkin' is not host:port"),
    (["--trace-sampling", "150"], "--trace-sampling 150.0: give a percentage from 0 to 100"),
])
def test_up_refuses_bad_tracing_options_naming_them(tmp_path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["up", "--home", str(tmp_path), *args])
    assert result.exit_code == 2 and message in " ".join(result.output.split())


def test_convergence_is_observed_once_per_proxy_pushed() -> None:
    pushes = PushMetrics()
    pushes.on_push(PushRecord("v1", proxies=3, events=2, seconds=0.02, at=0.0, convergence=0.4))
    pushes.on_push(PushRecord("v2", proxies=0, events=1, seconds=0.01, at=0.0, convergence=7.0))
    metrics = {m.name: m for m in pushes.collect()}
    assert metrics["pilot_xds_pushes"].samples[0].value == 3
    buckets = {s.labels["le"]: s.value for s in metrics["pilot_proxy_convergence_time"].samples
               if s.name.endswith("_bucket")}
    assert (buckets["0.1"], buckets["0.5"], buckets["+Inf"]) == (0, 3, 3)
    count = [s.value for s in metrics["pilot_xds_push_time"].samples if s.name.endswith("_count")]
    assert count == [2]


class FakeControlPlane:
    """``GET /api/v1/workloads`` on loopback, counting the calls."""

    def __init__(self, items: list[dict]) -> None:
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                outer.calls += 1
                body = json.dumps({"items": items}).encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_the_directory_names_workloads_by_address_and_asks_again_only_after_a_while() -> None:
    api = FakeControlPlane([{"name": "mongo", "namespace": "db", "address": "127.0.1.9", "serviceAccount": "mongo",
                             "labels": {"app": "mongo", "version": "v4"}}])
    now = [0.0]
    directory = WorkloadDirectory(api.url, refresh_s=2.0, clock=lambda: now[0])
    try:
        found = directory("127.0.1.9")
        assert found is not None and (found.workload, found.namespace, found.version) == ("mongo", "db", "v4")
        for t in (0.5, 1.9, 2.1, 2.2):
            now[0] = t
            assert directory("127.0.1.77") is None
        assert directory("127.0.1.9") is not None
        assert api.calls == 2  # at 0.0 and at 2.1: unknown addresses do not hammer the control plane
    finally:
        api.server.shutdown()
