"""Access-log entries in, Istio's series out: the labels and values a Prometheus user queries.

Entries are built as Envoy sends them (the fields measured on Envoy 1.40:
custom tags from the logger, peer headers moved into dynamic metadata,
downstream TLS, wire bytes, cumulative TCP counts per ``stream_id``); the
result is read back from the exposition text a scrape gets.
"""

from __future__ import annotations

from typing import Any

from envoy.data.accesslog.v3 import accesslog_pb2 as al
from prometheus_client.parser import text_string_to_metric_families

from malla.telemetry import peer_metadata
from malla.telemetry.metrics import IstioMetrics
from malla.telemetry.peer_metadata import PeerInfo
from malla.telemetry.recorder import Recorder

REVIEWS = PeerInfo.of(workload="reviews", namespace="shop", labels={"app": "reviews", "version": "v2"})
CLIENT = PeerInfo.of(workload="client", namespace="shop", labels={"app": "client"})
MONGO = PeerInfo.of(workload="mongo", namespace="db", labels={"app": "mongo", "version": "v4"})
SERVICE_TAGS = {"destination_service": "reviews.shop.svc.cluster.local", "destination_service_name": "reviews",
                "destination_service_namespace": "shop"}


def http_entry(*, reporter: str, tags: dict[str, str] | None = None, peer: PeerInfo | None = None, code: int = 200,
               cluster: str = "", authority: str = "reviews:9080", duration_ms: float = 3.0, **extra: Any
               ) -> al.HTTPAccessLogEntry:
    entry = al.HTTPAccessLogEntry()
    common = entry.common_properties
    common.custom_tags.update({"reporter": reporter, **(tags or {})})
    if peer is not None:
        key = "downstream" if reporter == "destination" else "upstream"
        common.metadata.filter_metadata["malla.peer"].update({key: peer_metadata.encode(peer)})
    common.upstream_cluster = cluster
    common.duration.FromNanoseconds(int(duration_ms * 1e6))
    common.downstream_wire_bytes_received = extra.pop("received", 120)
    common.downstream_wire_bytes_sent = extra.pop("sent", 2400)
    common.route_name = extra.pop("route", "")
    common.upstream_remote_address.socket_address.address = extra.pop("upstream_ip", "127.0.1.5")
    for san_kind, san in extra.pop("sans", {}).items():
        getattr(common.tls_properties, san_kind).subject_alt_name.add(uri=san)
    for flag in extra.pop("flags", ()):
        setattr(common.response_flags, flag, True)
    entry.request.authority = authority
    entry.request.request_headers.update(extra.pop("request_headers", {}))
    entry.response.response_trailers.update(extra.pop("trailers", {}))
    entry.response.response_code.value = code
    assert not extra, extra
    return entry


def tcp_entry(stream: str, kind: str, *, sent: int, received: int, reporter: str = "source",
              upstream_ip: str = "127.0.1.9") -> al.TCPAccessLogEntry:
    entry = al.TCPAccessLogEntry()
    common = entry.common_properties
    common.custom_tags["reporter"] = reporter
    common.stream_id = stream
    common.upstream_cluster = "outbound|27017||mongo.db.svc.cluster.local"
    common.upstream_remote_address.socket_address.address = upstream_ip
    common.access_log_type = getattr(al.AccessLogType, kind)
    common.intermediate_log_entry = kind != "TcpConnectionEnd"
    entry.connection_properties.sent_bytes = sent
    entry.connection_properties.received_bytes = received
    return entry


def scrape(metrics: IstioMetrics, name: str) -> list[tuple[dict[str, str], float]]:
    text = metrics.exposition().decode()
    return [(dict(s.labels), s.value) for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


def recorder(me: PeerInfo, directory: dict[str, PeerInfo] | None = None) -> tuple[Recorder, IstioMetrics]:
    metrics = IstioMetrics()
    return Recorder(metrics, me=me, directory=(directory or {}).get), metrics


def test_the_server_side_names_its_caller_from_the_header_and_the_certificate() -> None:
    rec, metrics = recorder(REVIEWS)
    sans = {"peer_certificate_properties": "spiffe://cluster.local/ns/shop/sa/client",
            "local_certificate_properties": "spiffe://cluster.local/ns/shop/sa/reviews"}
    for _ in range(2):
        rec.http(http_entry(reporter="destination", tags=SERVICE_TAGS, peer=CLIENT, cluster="inbound|9080||", sans=sans))
    [(labels, value)] = scrape(metrics, "istio_requests_total")
    assert value == 2
    assert labels == {
        "reporter": "destination", "source_workload": "client", "source_workload_namespace": "shop",
        "source_principal": "spiffe://cluster.local/ns/shop/sa/client", "source_app": "client",
        "source_version": "unknown", "source_canonical_service": "client", "source_canonical_revision": "latest",
        "destination_workload": "reviews", "destination_workload_namespace": "shop",
        "destination_principal": "spiffe://cluster.local/ns/shop/sa/reviews", "destination_app": "reviews",
        "destination_version": "v2", "destination_canonical_service": "reviews",
        "destination_canonical_revision": "v2", "destination_service": "reviews.shop.svc.cluster.local",
        "destination_service_name": "reviews", "destination_service_namespace": "shop", "request_protocol": "http",
        "response_code": "200", "grpc_response_status": "", "response_flags": "-",
        "connection_security_policy": "mutual_tls",
    }


def test_plaintext_callers_have_no_principal_and_no_mtls() -> None:
    rec, metrics = recorder(REVIEWS)
    rec.http(http_entry(reporter="destination", tags=SERVICE_TAGS, peer=None, code=404))
    [(labels, _)] = scrape(metrics, "istio_requests_total")
    assert labels["source_workload"] == "unknown" and labels["source_principal"] == "unknown"
    assert labels["connection_security_policy"] == "none" and labels["response_code"] == "404"


def test_the_client_side_names_the_service_from_its_cluster_and_the_server_from_its_answer() -> None:
    rec, metrics = recorder(CLIENT)
    rec.http(http_entry(reporter="source", peer=REVIEWS, cluster="outbound|9080|v2|reviews.shop.svc.cluster.local"))
    [(labels, _)] = scrape(metrics, "istio_requests_total")
    assert (labels["source_workload"], labels["destination_workload"], labels["destination_version"]) == (
        "client", "reviews", "v2")
    assert labels["destination_service"] == "reviews.shop.svc.cluster.local"
    assert (labels["destination_service_name"], labels["destination_service_namespace"]) == ("reviews", "shop")
    assert labels["connection_security_policy"] == "unknown" and labels["destination_principal"] == "unknown"


def test_a_server_that_sent_no_metadata_is_named_from_the_registry_by_address() -> None:
    rec, metrics = recorder(CLIENT, {"127.0.1.5": REVIEWS})
    rec.http(http_entry(reporter="source", cluster="outbound|9080||reviews.shop.svc.cluster.local"))
    rec.http(http_entry(reporter="source", cluster="outbound|9080||reviews.shop.svc.cluster.local",
                        upstream_ip="127.0.1.77"))
    workloads = {labels["destination_workload"]: v for labels, v in scrape(metrics, "istio_requests_total")}
    assert workloads == {"reviews": 1, "unknown": 1}


def test_traffic_leaving_the_registry_is_named_by_host_and_passthrough() -> None:
    rec, metrics = recorder(CLIENT)
    rec.http(http_entry(reporter="source", cluster="PassthroughCluster", authority="api.example.com:443", code=503,
                        flags=("upstream_connection_failure", "upstream_retry_limit_exceeded")))
    rec.http(http_entry(reporter="source", route="block_all", authority="blocked.example.com", code=502))
    rows = {labels["destination_service"]: labels for labels, _ in scrape(metrics, "istio_requests_total")}
    assert rows["api.example.com"]["destination_service_name"] == "PassthroughCluster"
    assert rows["api.example.com"]["response_flags"] == "UF,URX"
    assert rows["blocked.example.com"]["destination_service_name"] == "BlackHoleCluster"


def test_grpc_requests_carry_their_status() -> None:
    rec, metrics = recorder(REVIEWS)
    rec.http(http_entry(reporter="destination", tags=SERVICE_TAGS, peer=CLIENT,
                        request_headers={"content-type": "application/grpc+proto"}, trailers={"grpc-status": "14"}))
    [(labels, _)] = scrape(metrics, "istio_requests_total")
    assert (labels["request_protocol"], labels["grpc_response_status"]) == ("grpc", "14")


def test_durations_and_sizes_fill_istios_buckets() -> None:
    rec, metrics = recorder(REVIEWS)
    for ms in (0.3, 3.0, 40.0):
        rec.http(http_entry(reporter="destination", tags=SERVICE_TAGS, peer=CLIENT, duration_ms=ms, sent=5000))
    buckets = {labels["le"]: v for labels, v in scrape(metrics, "istio_request_duration_milliseconds_bucket")}
    assert (buckets["0.5"], buckets["1"], buckets["5"], buckets["50"], buckets["+Inf"]) == (1, 1, 2, 3, 3)
    [(_, total)] = scrape(metrics, "istio_request_duration_milliseconds_sum")
    assert abs(total - 43.3) < 1e-6
    sizes = {labels["le"]: v for labels, v in scrape(metrics, "istio_response_bytes_bucket")}
    assert (sizes["1000"], sizes["10000"]) == (0, 3)
    [(_, requests)] = scrape(metrics, "istio_request_bytes_sum")
    assert requests == 360


def test_tcp_connections_count_once_and_bytes_as_differences() -> None:
    rec, metrics = recorder(CLIENT, {"127.0.1.9": MONGO})
    rec.tcp(tcp_entry("a", "TcpUpstreamConnected", sent=0, received=0))
    rec.tcp(tcp_entry("b", "TcpUpstreamConnected", sent=0, received=0))
    rec.tcp(tcp_entry("a", "TcpPeriodic", sent=100, received=10))
    rec.tcp(tcp_entry("a", "TcpPeriodic", sent=250, received=10))
    rec.tcp(tcp_entry("a", "TcpConnectionEnd", sent=300, received=12))

    def total(name: str) -> float:
        return sum(v for _, v in scrape(metrics, name))

    assert (total("istio_tcp_connections_opened_total"), total("istio_tcp_connections_closed_total")) == (2, 1)
    assert (total("istio_tcp_sent_bytes_total"), total("istio_tcp_received_bytes_total")) == (300, 12)
    [(labels, _)] = scrape(metrics, "istio_tcp_connections_opened_total")
    assert (labels["destination_workload"], labels["destination_workload_namespace"]) == ("mongo", "db")
    assert (labels["destination_service"], labels["request_protocol"]) == ("mongo.db.svc.cluster.local", "tcp")
    assert "response_code" not in labels


def test_a_connection_seen_only_at_its_end_is_opened_and_closed() -> None:
    rec, metrics = recorder(CLIENT)
    rec.tcp(tcp_entry("c", "TcpConnectionEnd", sent=0, received=0))
    assert [v for _, v in scrape(metrics, "istio_tcp_connections_opened_total")] == [1]
    assert [v for _, v in scrape(metrics, "istio_tcp_connections_closed_total")] == [1]


def test_connections_whose_end_never_comes_are_forgotten_beyond_a_bound() -> None:
    metrics = IstioMetrics()
    rec = Recorder(metrics, me=CLIENT, directory={}.get, max_open=3)
    for stream in "abcde":
        rec.tcp(tcp_entry(stream, "TcpUpstreamConnected", sent=0, received=0))
    rec.tcp(tcp_entry("a", "TcpPeriodic", sent=10, received=0))  # forgotten: counted as new
    assert sum(v for _, v in scrape(metrics, "istio_tcp_connections_opened_total")) == 6
