"""Telemetry ``metrics`` overrides: Istio's merge rules, the tag values malla computes, what users are told.

From Telemetry YAML to what a scrape shows: the merged policy per side
(CLIENT: outbound and gateways; SERVER: a sidecar's inbound), the custom
tag Pilot puts on the access loggers, and the series the agent's recorder
then keeps for access-log entries built as Envoy sends them.
"""

from __future__ import annotations

import json

import pytest
from envoy.data.accesslog.v3 import accesslog_pb2 as al
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from malla.api.telemetry.telemetry import Telemetry
from malla.config.parse import parse_text
from malla.pilot.generate import generate
from malla.pilot.protocol import Protocol
from malla.pilot.resources import LISTENER
from malla.telemetry import metric_expressions, metric_overrides, metrics
from malla.telemetry.metric_expressions import UnsupportedExpression
from malla.telemetry.metric_overrides import TAG_METRICS, MetricsPolicy, merge
from tests.pilot.mesh import sidecar, snapshot, workload
from tests.telemetry.test_proxy_config import access_log, managers
from tests.telemetry.test_recorder import CLIENT, REVIEWS, SERVICE_TAGS, http_entry, recorder, scrape, tcp_entry

REQUESTS = "istio_requests_total"


def spec(body: str) -> Telemetry:
    text = f"apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: t, namespace: shop}}\nspec:\n{body}"
    parsed = parse_text(text, path="t.yaml")
    assert not parsed.errors, [d.format() for d in parsed.errors]
    return parsed.configs[0].spec


def decoded(policy: MetricsPolicy, *, inbound: bool) -> dict:
    text = policy.side(inbound=inbound).encode()
    return json.loads(text) if text else {}


REMOVE_PROTOCOL_ALL = spec("""
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - tagOverrides: {request_protocol: {operation: REMOVE}}
""")


def test_a_more_specific_resource_overrides_a_tag_the_mesh_removed() -> None:
    namespace = spec("""
  metrics:
  - overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT}
      tagOverrides: {request_protocol: {value: "'h'"}}
""")
    policy = merge([REMOVE_PROTOCOL_ALL, namespace])
    assert decoded(policy, inbound=False)[REQUESTS] == {"tags": {"request_protocol": "'h'"}}
    assert decoded(policy, inbound=True)[REQUESTS] == {"tags": {"request_protocol": None}}
    assert decoded(policy, inbound=False)["istio_tcp_sent_bytes_total"] == {"tags": {"request_protocol": None}}


def test_mode_limits_an_override_to_one_side_and_disabled_false_turns_a_metric_back_on() -> None:
    mesh = spec("""
  metrics:
  - overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT}
      disabled: true
""")
    assert decoded(merge([mesh]), inbound=False) == {REQUESTS: {"disabled": True}}
    assert decoded(merge([mesh]), inbound=True) == {}
    again = spec("""
  metrics:
  - overrides:
    - match: {metric: REQUEST_COUNT}
      disabled: false
""")
    assert decoded(merge([mesh, again]), inbound=False) == {}


def test_disabling_all_metrics_of_one_side_until_a_later_override_turns_it_back_on() -> None:
    off = spec("""
  metrics:
  - overrides:
    - match: {metric: ALL_METRICS, mode: SERVER}
      disabled: true
""")
    server = decoded(merge([off]), inbound=True)
    assert set(server) == set(metric_overrides.METRICS.values()) and all(v == {"disabled": True} for v in server.values())
    assert decoded(merge([off]), inbound=False) == {}
    on_again = spec("""
  metrics:
  - overrides:
    - match: {metric: REQUEST_DURATION, mode: SERVER}
      tagOverrides: {request_protocol: {operation: REMOVE}}
""")
    assert decoded(merge([off, on_again]), inbound=True) == {
        "istio_request_duration_milliseconds": {"tags": {"request_protocol": None}}}


def test_entries_for_another_provider_do_not_touch_malla_metrics() -> None:
    other = spec("""
  metrics:
  - providers: [{name: stackdriver}]
    overrides: [{disabled: true}]
  - providers: [{name: Prometheus}]
    overrides:
    - match: {metric: REQUEST_SIZE}
      disabled: true
""")
    assert decoded(merge([other]), inbound=False) == {"istio_request_bytes": {"disabled": True}}


def test_naming_only_another_provider_turns_prometheus_metrics_off_as_in_istio() -> None:
    elsewhere = spec("""
  metrics:
  - providers: [{name: stackdriver}]
""")
    policy = merge([REMOVE_PROTOCOL_ALL, elsewhere])
    assert all(v == {"disabled": True} for v in decoded(policy, inbound=False).values())
    assert merge([]).client.encode() == "" and merge([]).server.encode() == ""


def test_entries_without_providers_inherit_the_previous_entrys() -> None:
    inherited = spec("""
  metrics:
  - providers: [{name: stackdriver}]
  - overrides: [{match: {metric: REQUEST_SIZE}, disabled: true}]
  - providers: [{name: prometheus}]
    reportingInterval: 2s
  - overrides: [{match: {metric: RESPONSE_SIZE}, disabled: true}]
""")
    policy = merge([inherited])
    assert decoded(policy, inbound=True) == {"istio_response_bytes": {"disabled": True}}
    assert policy.reporting_interval_s == 2.0


def test_unsupported_values_and_unknown_metrics_are_left_out() -> None:
    odd = spec("""
  metrics:
  - overrides:
    - match: {metric: GRPC_REQUEST_MESSAGES}
      disabled: true
    - match: {customMetric: requests_total}
      tagOverrides:
        host: {value: "has(request.host) ? request.host : 'x'"}
        path: {value: "request.url_path"}
""")
    assert decoded(merge([odd]), inbound=False) == {REQUESTS: {"tags": {"path": "request.url_path"}}}


@pytest.mark.parametrize(("value", "expected"), [
    ("'v1'", "v1"), ('"a \\"b\\""', 'a "b"'), ("string('x')", "x"),
    ("request.host", "reviews:9080"), ("request.method", "POST"), ("request.path", "/a/b?q=1"),
    ("request.url_path", "/a/b"), ("request.headers['X-User']", "alice"), ('request.headers["x-missing"]', "unknown"),
    ("response.code", "503"), ("string(response.code)", "503"), ("destination.port", "15001"),
    ("upstream_peer.app", "reviews"), ("filter_state.upstream_peer.version", "v2"),
    ("downstream_peer.app", "unknown"), ("xds.cluster_name", "outbound|9080||reviews.shop.svc.cluster.local"),
    ("connection.mtls", "false"),
])
def test_supported_values_read_the_access_log_entry(value: str, expected: str) -> None:
    entry = http_entry(reporter="source", peer=REVIEWS, code=503, cluster="outbound|9080||reviews.shop.svc.cluster.local",
                       request_headers={"x-user": "alice"})
    entry.request.request_method = al.HTTPRequestProperties.DESCRIPTOR.fields_by_name[
        "request_method"].enum_type.values_by_name["POST"].number
    entry.request.path = "/a/b?q=1"
    entry.common_properties.downstream_local_address.socket_address.port_value = 15001
    labels = {"reporter": "source", "destination_app": "reviews", "destination_version": "v2"}
    assert metric_expressions.parse(value).evaluate(entry, labels) == expected


def test_request_values_on_a_tcp_connection_are_unknown() -> None:
    entry = tcp_entry("s1", "TcpConnectionEnd", sent=1, received=1)
    assert metric_expressions.parse("request.host").evaluate(entry, {"reporter": "source"}) == "unknown"


@pytest.mark.parametrize("value", ["has(request.host) ? request.host : 'x'", "request.size", "upstream_peer.cluster",
                                   "node.metadata['X']", "'unterminated"])
def test_other_expressions_are_refused_naming_what_is_supported(value: str) -> None:
    with pytest.raises(UnsupportedExpression, match=r"request\.headers\['NAME'\].*upstream_peer\.F"):
        metric_expressions.parse(value)


def test_validation_warns_with_the_field_path_and_the_supported_forms() -> None:
    text = """apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: t, namespace: shop}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: GRPC_REQUEST_MESSAGES}
      disabled: true
    - match: {customMetric: requests_total}
      tagOverrides:
        request_protocol: {operation: REMOVE}
        host: {value: "has(request.host) ? request.host : 'x'"}
"""
    warnings = {d.field: d.message for d in parse_text(text, path="t.yaml").diagnostics if d.level == "warning"}
    message = warnings["spec.metrics[0].overrides[1].tagOverrides[host].value"]
    assert "malla leaves tag 'host' out" in message and "request.host" in message and "string(...)" in message
    assert "produces no GRPC_REQUEST_MESSAGES" in warnings["spec.metrics[0].overrides[0].match.metric"]
    assert len(warnings) == 2


def shaped_recorder(policy: MetricsPolicy, *, inbound: bool):
    rec, store = recorder(REVIEWS if inbound else CLIENT)
    tag = policy.side(inbound=inbound).encode()
    return rec, store, ({TAG_METRICS: tag} if tag else {})


def test_disabled_metrics_are_not_recorded_and_removed_labels_are_absent() -> None:
    policy = merge([spec("""
  metrics:
  - overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT}
      disabled: true
    - tagOverrides: {request_protocol: {operation: REMOVE}}
""")])
    rec, store, tags = shaped_recorder(policy, inbound=False)
    rec.http(http_entry(reporter="source", tags=tags, peer=REVIEWS))
    assert scrape(store, REQUESTS) == []
    ((labels, count),) = scrape(store, "istio_request_duration_milliseconds_count")
    assert count == 1 and "request_protocol" not in labels and labels["destination_workload"] == "reviews"


def test_an_upserted_label_carries_its_value_and_the_family_keeps_one_label_set() -> None:
    policy = merge([spec("""
  metrics:
  - overrides:
    - match: {metric: REQUEST_COUNT, mode: SERVER}
      tagOverrides:
        build: {value: "'v1'"}
        user: {value: "request.headers['x-user']"}
        request_protocol: {operation: REMOVE}
""")])
    rec, store = recorder(REVIEWS)
    server_tag = policy.side(inbound=True).encode()
    rec.http(http_entry(reporter="destination", tags={**SERVICE_TAGS, TAG_METRICS: server_tag}, peer=CLIENT,
                        request_headers={"x-user": "alice"}))
    rec.http(http_entry(reporter="source", peer=REVIEWS))  # the client side: no overrides
    samples = scrape(store, REQUESTS)
    assert len(samples) == 2 and all(set(labels) == set(samples[0][0]) for labels, _ in samples)
    by_reporter = {labels["reporter"]: labels for labels, _ in samples}
    assert (by_reporter["destination"]["build"], by_reporter["destination"]["user"]) == ("v1", "alice")
    assert by_reporter["destination"]["request_protocol"] == ""  # Prometheus reads "" as no label
    assert by_reporter["source"]["build"] == "" and by_reporter["source"]["request_protocol"] == "http"


def test_tcp_metrics_follow_the_overrides_too() -> None:
    policy = merge([spec("""
  metrics:
  - overrides:
    - match: {metric: TCP_OPENED_CONNECTIONS}
      disabled: true
    - match: {metric: TCP_CLOSED_CONNECTIONS}
      tagOverrides: {zone: {value: "'a'"}}
""")])
    rec, store, tags = shaped_recorder(policy, inbound=False)
    entry = tcp_entry("s1", "TcpConnectionEnd", sent=10, received=5)
    entry.common_properties.custom_tags.update(tags)
    rec.tcp(entry)
    assert scrape(store, "istio_tcp_connections_opened_total") == []
    ((labels, closed),) = scrape(store, "istio_tcp_connections_closed_total")
    assert closed == 1 and labels["zone"] == "a"


def test_the_agent_ignores_a_tag_it_cannot_read() -> None:
    assert metric_overrides.compiled("{not json") is metric_overrides.NO_OVERRIDES


def test_metric_names_are_the_ones_the_agent_exports() -> None:
    exported = {metrics.REQUESTS_TOTAL, metrics.REQUEST_DURATION, metrics.REQUEST_BYTES, metrics.RESPONSE_BYTES,
                metrics.TCP_SENT, metrics.TCP_RECEIVED, metrics.TCP_OPENED, metrics.TCP_CLOSED}
    assert set(metric_overrides.METRICS.values()) == exported


TELEMETRY_YAML = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: ns, namespace: default}
spec:
  metrics:
  - reportingInterval: 2s
    overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT}
      tagOverrides: {user: {value: "request.headers['X-User']"}}
"""


def test_pilot_puts_each_sides_overrides_on_its_access_loggers() -> None:
    proxy = sidecar("reviews", ip="127.0.1.5", inbound=[(9080, 31000, Protocol.HTTP)], workload_name="reviews",
                    access_log_service="/tmp/als.sock", labels={"app": "reviews"})
    world = snapshot(TELEMETRY_YAML, workloads=[workload("reviews-v2", "127.0.1.5", labels={"app": "reviews"}),
                                                workload("mongo", "127.0.1.9", ports={"mongo": 27017})])
    out = generate(proxy, world)
    outbound = _http_log(out[LISTENER]["127.0.1.5_15001"])
    assert json.loads(_tags(outbound)[TAG_METRICS]) == {REQUESTS: {"tags": {"user": "request.headers['X-User']"}}}
    assert "x-user" in outbound.additional_request_headers_to_log
    inbound = _http_log(out[LISTENER]["virtualInbound"])
    assert TAG_METRICS not in _tags(inbound) and "x-user" not in inbound.additional_request_headers_to_log
    (chain,) = out[LISTENER]["127.0.1.5_27017"].filter_chains
    tcp = tcp_proxy_pb2.TcpProxy.FromString(chain.filters[0].typed_config.value)
    assert tcp.access_log_options.access_log_flush_interval.seconds == 2


def _http_log(listener) -> als_pb2.HttpGrpcAccessLogConfig:
    (manager, *_) = managers(listener)
    return access_log(manager)


def _tags(config: als_pb2.HttpGrpcAccessLogConfig) -> dict[str, str]:
    return {t.tag: t.literal.value for t in config.common_config.custom_tags}


METRICS_OFF_FOR_CALLERS = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: ns, namespace: default}
spec:
  metrics:
  - overrides:
    - match: {metric: ALL_METRICS, mode: CLIENT}
      disabled: true
    - match: {metric: REQUEST_COUNT, mode: SERVER}
      disabled: true
"""


def _grpc_logs(access_logs) -> list[str]:
    return [a.name for a in access_logs if a.name.endswith("_grpc")]


def test_a_side_with_every_metric_disabled_sends_no_access_log_to_the_agent() -> None:
    """The per-request gRPC access log is what metrics cost: a side that records none does not pay it."""
    proxy = sidecar("reviews", ip="127.0.1.5", inbound=[(9080, 31000, Protocol.HTTP)], workload_name="reviews",
                    access_log_service="/tmp/als.sock", labels={"app": "reviews"})
    world = snapshot(METRICS_OFF_FOR_CALLERS, workloads=[workload("reviews-v2", "127.0.1.5", labels={"app": "reviews"}),
                                                         workload("mongo", "127.0.1.9", ports={"mongo": 27017})])
    out = generate(proxy, world)
    (outbound, *_) = managers(out[LISTENER]["127.0.1.5_15001"])
    assert _grpc_logs(outbound.access_log) == []
    (chain,) = out[LISTENER]["127.0.1.5_27017"].filter_chains
    tcp = tcp_proxy_pb2.TcpProxy.FromString(chain.filters[0].typed_config.value)
    assert _grpc_logs(tcp.access_log) == []
    # The server side still records durations and sizes: its logger stays, carrying what is off.
    inbound = _http_log(out[LISTENER]["virtualInbound"])
    assert json.loads(_tags(inbound)[TAG_METRICS]) == {REQUESTS: {"disabled": True}}


def test_one_metric_off_keeps_the_logger() -> None:
    policy = merge([spec("""
  metrics:
  - overrides:
    - match: {metric: REQUEST_COUNT}
      disabled: true
""")])
    assert not policy.client.records_nothing(tcp=False) and not policy.client.records_nothing(tcp=True)
    everything = merge([spec("""
  metrics:
  - overrides:
    - disabled: true
""")])
    assert everything.server.records_nothing(tcp=False) and everything.server.records_nothing(tcp=True)
