"""Istio's Telemetry API in generated Envoy config: tracing and access logging, merged root -> namespace -> workload."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.data.accesslog.v3 import accesslog_pb2 as accesslog_data_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.request_id.uuid.v3 import uuid_pb2
from google.protobuf import unknown_fields

from malla.api.telemetry.telemetry import Telemetry
from malla.config.parse import parse_text
from malla.config.validation import ValidationContext
from malla.config.validation.telemetry import validate
from malla.pilot.consistency import check_consistency
from malla.pilot.generate import generate
from malla.pilot.protocol import Protocol
from malla.pilot.resources import CLUSTER, LISTENER
from malla.pilot.snapshot import MeshConfig, MeshSnapshot, Proxy, ProxyKind
from malla.pilot.static_config import static_bootstrap
from malla.telemetry.access_logging import ISTIO_TEXT_FORMAT
from tests.pilot.mesh import sidecar, snapshot, workload
from tests.pilot.test_envoy_validate import envoy_binary
from tests.telemetry.test_proxy_config import MESH, SOCKET, managers, reviews_proxy

INBOUND, OUTBOUND = "virtualInbound", "127.0.1.5_15001"
CONFORMANCE = Path("/work/shared/conformance/istio")


def telemetry(name: str, namespace: str, spec: str) -> str:
    return f"apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}\n---\n"


def workloads() -> list:
    return [workload("reviews-v2", "127.0.1.5", labels={"app": "reviews", "version": "v2"})]


def with_telemetry(text: str, mesh: MeshConfig = MESH) -> MeshSnapshot:
    return snapshot(text, workloads=workloads(), mesh=mesh)


def manager(out: dict, listener: str) -> hcm_pb2.HttpConnectionManager:
    found = managers(out[LISTENER][listener])
    assert found, f"no HTTP connection manager on {listener}"
    return found[0]


def file_logs(m: hcm_pb2.HttpConnectionManager) -> list[tuple[str, str | None]]:
    """(path, CEL expression or None) of each file access log."""
    out = []
    for log in m.access_log:
        if log.name == "envoy.access_loggers.file":
            config = file_pb2.FileAccessLog.FromString(log.typed_config.value)
            expression = None
            if log.HasField("filter"):
                assert log.filter.extension_filter.name == "envoy.access_loggers.extension_filters.cel"
                expression = cel_pb2.ExpressionFilter.FromString(log.filter.extension_filter.typed_config.value).expression
            out.append((config.path, expression))
    return out


def agent_logs(m: hcm_pb2.HttpConnectionManager) -> int:
    return sum(log.name == "envoy.access_loggers.http_grpc" for log in m.access_log)


ROOT_TRACING = telemetry("mesh-default", "istio-system", "  tracing:\n  - randomSamplingPercentage: 10.0")
NS_TRACING = telemetry("ns", "default", """  tracing:
  - customTags:
      team: {literal: {value: bookinfo}}
      user: {header: {name: x-user, defaultValue: anonymous}}
      region: {environment: {name: REGION, defaultValue: unknown}}""")
WORKLOAD_TRACING = telemetry("reviews", "default", """  selector: {matchLabels: {app: reviews}}
  tracing:
  - match: {mode: SERVER}
    randomSamplingPercentage: 100.0""")


def test_sampling_and_custom_tags_merge_per_field_and_side() -> None:
    out = generate(reviews_proxy(), with_telemetry(ROOT_TRACING + NS_TRACING + WORKLOAD_TRACING))
    inbound, outbound = manager(out, INBOUND).tracing, manager(out, OUTBOUND).tracing
    assert inbound.random_sampling.value == 100.0  # the workload's SERVER entry
    assert outbound.random_sampling.value == 10.0  # the root's, the workload entry is SERVER only
    for tracing in (inbound, outbound):
        tags = {t.tag: t for t in tracing.custom_tags}
        assert tags["team"].literal.value == "bookinfo"
        assert (tags["user"].request_header.name, tags["user"].request_header.default_value) == ("x-user", "anonymous")
        assert (tags["region"].environment.name, tags["region"].environment.default_value) == ("REGION", "unknown")
        assert tags["istio.canonical_service"].literal.value == "reviews"  # Istio's own stay


def test_no_telemetry_keeps_the_mesh_defaults() -> None:
    out = generate(reviews_proxy(), with_telemetry(""))
    assert manager(out, INBOUND).tracing.random_sampling.value == 25.0


def test_disable_span_reporting_removes_the_tracer_on_that_side() -> None:
    text = ROOT_TRACING + telemetry("quiet", "default", "  tracing:\n  - match: {mode: CLIENT}\n    disableSpanReporting: true")
    out = generate(reviews_proxy(), with_telemetry(text))
    assert not manager(out, OUTBOUND).HasField("tracing")
    assert manager(out, INBOUND).tracing.random_sampling.value == 10.0
    check_consistency(out)


def test_a_more_specific_level_turns_reporting_back_on() -> None:
    text = (telemetry("off", "istio-system", "  tracing:\n  - disableSpanReporting: true")
            + telemetry("on", "default", "  tracing:\n  - disableSpanReporting: false"))
    out = generate(reviews_proxy(), with_telemetry(text))
    assert manager(out, OUTBOUND).tracing.random_sampling.value == 25.0  # MeshConfig's sampling: none set


@pytest.mark.parametrize("provider", ["zipkin", "Zipkin"])
def test_the_zipkin_provider_is_the_mesh_collector(provider: str) -> None:
    text = telemetry("t", "default", f"  tracing:\n  - providers: [{{name: {provider}}}]\n    randomSamplingPercentage: 50")
    out = generate(reviews_proxy(), with_telemetry(text))
    assert manager(out, OUTBOUND).tracing.random_sampling.value == 50.0
    assert "zipkin" in out[CLUSTER]


def test_an_unknown_tracing_provider_traces_nothing_and_is_warned_about() -> None:
    text = telemetry("t", "default", "  tracing:\n  - providers: [{name: jaeger}]\n    randomSamplingPercentage: 50")
    out = generate(reviews_proxy(), with_telemetry(text))
    assert not manager(out, OUTBOUND).HasField("tracing") and not manager(out, INBOUND).HasField("tracing")
    check_consistency(out)
    spec = Telemetry.model_validate({"tracing": [{"providers": [{"name": "jaeger"}]}]})
    findings = list(validate(spec, ValidationContext(kind="Telemetry", api_version="telemetry.istio.io/v1",
                                                     name="t", namespace="default")))
    assert [(f.field, f.level) for f in findings] == [("spec.tracing[0].providers[0].name", "warning")]
    assert "'zipkin'" in findings[0].message


def test_tracing_needs_a_collector() -> None:
    out = generate(reviews_proxy(), with_telemetry(WORKLOAD_TRACING, MeshConfig()))
    assert not manager(out, INBOUND).HasField("tracing")
    assert "zipkin" not in out[CLUSTER]


ACCESS_LOG = telemetry("mesh-default", "istio-system", "  accessLogging:\n  - providers: [{name: envoy}]")


def test_envoy_provider_logs_istio_text_to_stdout_beside_the_agents_log() -> None:
    out = generate(reviews_proxy(), with_telemetry(ACCESS_LOG))
    for name in (INBOUND, OUTBOUND):
        m = manager(out, name)
        assert file_logs(m) == [("/dev/stdout", None)]
        assert agent_logs(m) == 1  # malla's metrics pipeline is untouched
    log = next(a for a in manager(out, INBOUND).access_log if a.name == "envoy.access_loggers.file")
    config = file_pb2.FileAccessLog.FromString(log.typed_config.value)
    assert config.log_format.text_format_source.inline_string == ISTIO_TEXT_FORMAT


def test_filter_and_mode_from_the_workload_level() -> None:
    text = ACCESS_LOG + telemetry("errors", "default", """  selector: {matchLabels: {app: reviews}}
  accessLogging:
  - providers: [{name: envoy}]
    match: {mode: SERVER}
    filter: {expression: response.code >= 400}""")
    out = generate(reviews_proxy(), with_telemetry(text))
    assert file_logs(manager(out, INBOUND)) == [("/dev/stdout", "response.code >= 400")]
    assert file_logs(manager(out, OUTBOUND)) == [("/dev/stdout", "response.code >= 400")]  # root's entry, last filter


def test_disabled_turns_off_a_less_specific_log_and_the_mesh_file_log() -> None:
    mesh = MESH.with_(access_log_path="/tmp/mesh-access.log")
    text = ACCESS_LOG + telemetry("off", "default", "  accessLogging:\n  - disabled: true")
    out = generate(reviews_proxy(), with_telemetry(text, mesh))
    for name in (INBOUND, OUTBOUND):
        assert file_logs(manager(out, name)) == []
        assert agent_logs(manager(out, name)) == 1
    untouched = generate(reviews_proxy(), with_telemetry("", mesh))
    assert file_logs(manager(untouched, OUTBOUND)) == [("/tmp/mesh-access.log", None)]


def test_disabled_for_one_side_only() -> None:
    text = ACCESS_LOG + telemetry("no-client", "default", "  accessLogging:\n  - match: {mode: CLIENT}\n    disabled: true")
    out = generate(reviews_proxy(), with_telemetry(text))
    assert file_logs(manager(out, INBOUND)) == [("/dev/stdout", None)]
    assert file_logs(manager(out, OUTBOUND)) == []


def test_an_unknown_access_log_provider_writes_nothing() -> None:
    out = generate(reviews_proxy(), with_telemetry(telemetry("t", "default", "  accessLogging:\n  - providers: [{name: otel}]")))
    assert file_logs(manager(out, OUTBOUND)) == [] and agent_logs(manager(out, OUTBOUND)) == 1


def test_a_proxy_without_an_agent_still_gets_telemetry_api_logs() -> None:
    proxy = reviews_proxy(access_log_service="", workload_name="")
    out = generate(proxy, with_telemetry(ACCESS_LOG, MeshConfig()))
    assert file_logs(manager(out, OUTBOUND)) == [("/dev/stdout", None)]
    check_consistency(out)


def test_workload_telemetry_is_per_proxy() -> None:
    text = ACCESS_LOG + telemetry("off", "default", "  selector: {matchLabels: {app: ratings}}\n  accessLogging:\n  - disabled: true")
    snap = with_telemetry(text)
    reviews = generate(reviews_proxy(), snap)
    ratings = generate(reviews_proxy(labels={"app": "ratings"}, workload_name="ratings"), snap)
    assert file_logs(manager(reviews, OUTBOUND)) == [("/dev/stdout", None)]
    assert file_logs(manager(ratings, OUTBOUND)) == []


def conformance_telemetries() -> list[Path]:
    return sorted(p for p in CONFORMANCE.rglob("*.yaml") if "kind: Telemetry" in p.read_text(errors="replace"))


def test_istio_sample_telemetries_translate() -> None:
    files = conformance_telemetries()
    assert files, f"no Telemetry samples under {CONFORMANCE}"
    translated = 0
    for path in files:
        parsed = parse_text(path.read_text(), path=str(path))
        configs = [c for c in parsed.configs if c.kind == "Telemetry"]
        for config in configs:
            proxy = reviews_proxy(namespace=config.namespace, labels=config.spec.selector.match_labels
                                  if config.spec.selector else {"app": "reviews"})
            snap = MeshSnapshot.build(configs=[config], workloads=workloads(), mesh=MESH)
            check_consistency(generate(proxy, snap))
            translated += 1
    assert translated >= 5, translated


def request_id_sampling(m: hcm_pb2.HttpConnectionManager) -> bool | None:
    """``use_request_id_for_trace_sampling`` of the UUID request-id extension; None: Envoy's default (true)."""
    if not m.HasField("request_id_extension"):
        return None
    config = uuid_pb2.UuidRequestIdConfig.FromString(m.request_id_extension.typed_config.value)
    return config.use_request_id_for_trace_sampling.value


def no_context_propagation(tracing: hcm_pb2.HttpConnectionManager.Tracing) -> bool:
    """Envoy's Tracing.no_context_propagation (field 13), newer than the pinned xds-protos classes."""
    if "no_context_propagation" in tracing.DESCRIPTOR.fields_by_name:
        return bool(getattr(tracing, "no_context_propagation"))
    return any(f.field_number == 13 and f.data == 1 for f in unknown_fields.UnknownFieldSet(tracing))


def test_request_id_sampling_is_on_by_default_and_off_per_side() -> None:
    text = ROOT_TRACING + telemetry("own-sampling", "default", """  selector: {matchLabels: {app: reviews}}
  tracing:
  - match: {mode: CLIENT}
    useRequestIdForTraceSampling: false""")
    out = generate(reviews_proxy(), with_telemetry(text))
    assert request_id_sampling(manager(out, OUTBOUND)) is False
    assert request_id_sampling(manager(out, INBOUND)) is True  # Istio's default, set explicitly as Istio does
    untouched = generate(reviews_proxy(), with_telemetry(""))
    assert request_id_sampling(manager(untouched, OUTBOUND)) is None  # Envoy's default: true


def test_enable_istio_tags_false_keeps_only_the_users_tags() -> None:
    text = NS_TRACING + telemetry("bare", "default", """  selector: {matchLabels: {app: reviews}}
  tracing:
  - match: {mode: SERVER}
    enableIstioTags: false""")
    out = generate(reviews_proxy(), with_telemetry(text))
    inbound = {t.tag for t in manager(out, INBOUND).tracing.custom_tags}
    outbound = {t.tag for t in manager(out, OUTBOUND).tracing.custom_tags}
    assert inbound == {"team", "user", "region"}
    assert {"istio.namespace", "istio.canonical_service", "istio.canonical_revision"} <= outbound


def test_disable_context_propagation_reports_spans_without_passing_headers() -> None:
    text = telemetry("edge", "default", "  tracing:\n  - match: {mode: CLIENT}\n    disableContextPropagation: true")
    out = generate(reviews_proxy(), with_telemetry(text))
    outbound, inbound = manager(out, OUTBOUND), manager(out, INBOUND)
    assert outbound.HasField("tracing") and no_context_propagation(outbound.tracing)
    assert not no_context_propagation(inbound.tracing)
    # The field survives re-parsing, as it does on its way to Envoy.
    again = hcm_pb2.HttpConnectionManager.FromString(outbound.SerializeToString())
    assert no_context_propagation(again.tracing)


def mongo_world(text: str) -> MeshSnapshot:
    return snapshot(text, workloads=[*workloads(), workload("mongo", "127.0.1.9", ports={"mongo": 27017})], mesh=MESH)


def mongo_proxy(**changes: object) -> object:
    fields = dict(workload_name="mongo", access_log_service=SOCKET, labels={"app": "mongo"})
    fields.update(changes)
    return sidecar("mongo", ip="127.0.1.9", inbound=[(27017, 31017, Protocol.TCP)], **fields)


def tcp_proxies(out: dict, listener: str) -> list[tcp_proxy_pb2.TcpProxy]:
    found = [tcp_proxy_pb2.TcpProxy.FromString(f.typed_config.value)
             for c in [*out[LISTENER][listener].filter_chains, out[LISTENER][listener].default_filter_chain]
             for f in c.filters if f.name == "envoy.filters.network.tcp_proxy"]
    assert found, f"no tcp_proxy on {listener}"
    return found


def tcp_file_logs(tcp: tcp_proxy_pb2.TcpProxy) -> list[tuple[str, str | None]]:
    """(path, CEL expression or None) of each file log, each checked to log only when the connection ends."""
    out = []
    for log in tcp.access_log:
        if log.name != "envoy.access_loggers.file":
            continue
        config = file_pb2.FileAccessLog.FromString(log.typed_config.value)
        assert config.log_format.text_format_source.inline_string == ISTIO_TEXT_FORMAT
        parts = list(log.filter.and_filter.filters) if log.filter.HasField("and_filter") else [log.filter]
        at_close = accesslog_pb2.AccessLogFilter()
        at_close.log_type_filter.types.append(accesslog_data_pb2.TcpConnectionEnd)
        assert parts[0] == at_close, log.filter
        expression = None
        if len(parts) == 2:
            expression = cel_pb2.ExpressionFilter.FromString(parts[1].extension_filter.typed_config.value).expression
        out.append((config.path, expression))
    return out


def test_tcp_connections_get_the_envoy_log_at_close_beside_the_agents() -> None:
    text = ACCESS_LOG + telemetry("mtls-only", "default", """  accessLogging:
  - providers: [{name: envoy}]
    match: {mode: SERVER}
    filter: {expression: connection.mtls}""")
    snap = mongo_world(text)
    (outbound,) = tcp_proxies(generate(reviews_proxy(), snap), "127.0.1.5_27017")
    assert tcp_file_logs(outbound) == [("/dev/stdout", "connection.mtls")]  # the last filter naming envoy
    assert [log.name for log in outbound.access_log][0] == "envoy.access_loggers.tcp_grpc"
    assert outbound.access_log_options.flush_access_log_on_connected  # the agent's metrics still flush early
    inbound = tcp_proxies(generate(mongo_proxy(), snap), "virtualInbound")
    assert all(tcp_file_logs(tcp) == [("/dev/stdout", "connection.mtls")] for tcp in inbound)


def test_tcp_logs_follow_disabled_and_mode() -> None:
    text = ACCESS_LOG + telemetry("no-client", "default", "  accessLogging:\n  - match: {mode: CLIENT}\n    disabled: true")
    snap = mongo_world(text)
    assert tcp_file_logs(tcp_proxies(generate(reviews_proxy(), snap), "127.0.1.5_27017")[0]) == []
    inbound = tcp_proxies(generate(mongo_proxy(), snap), "virtualInbound")
    assert all(tcp_file_logs(tcp) == [("/dev/stdout", None)] for tcp in inbound)
    plain = tcp_proxies(generate(reviews_proxy(), mongo_world("")), "127.0.1.5_27017")[0]
    assert tcp_file_logs(plain) == []  # no Telemetry: no user log on TCP


def test_a_tcp_proxy_without_an_agent_gets_only_the_envoy_log() -> None:
    out = generate(reviews_proxy(access_log_service="", workload_name=""), mongo_world(ACCESS_LOG))
    (tcp,) = tcp_proxies(out, "127.0.1.5_27017")
    assert [log.name for log in tcp.access_log] == ["envoy.access_loggers.file"]
    assert not tcp.HasField("access_log_options")
    check_consistency(out)


@pytest.mark.envoy
def test_envoy_accepts_every_new_tracing_and_tcp_log_setting(tmp_path: Path) -> None:
    text = ACCESS_LOG + telemetry("all", "default", """  tracing:
  - useRequestIdForTraceSampling: false
    enableIstioTags: false
    disableContextPropagation: true
  accessLogging:
  - providers: [{name: envoy}]
    filter: {expression: "response.code >= 400 || connection.mtls"}""")
    snap = mongo_world(text)
    for proxy in (reviews_proxy(), mongo_proxy()):
        out = generate(proxy, snap)
        check_consistency(out)
        path = tmp_path / "bootstrap.pb"  # binary, so fields newer than the Python classes reach Envoy
        path.write_bytes(static_bootstrap(out, node_id=proxy.id).SerializeToString())
        result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path), "--log-level", "warn",
                                 "--use-dynamic-base-id"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{proxy.id}: {result.stdout[-3000:]}{result.stderr[-3000:]}"


def test_gateway_tls_passthrough_connections_are_logged_as_client() -> None:
    passthrough = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: tls, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: tls, protocol: TLS}
    tls: {mode: PASSTHROUGH}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tls, namespace: istio-system}
spec:
  hosts: [reviews.example.com]
  gateways: [tls]
  tls:
  - match:
    - sniHosts: [reviews.example.com]
    route:
    - destination: {host: reviews.default.svc.cluster.local, port: {number: 9080}}
---
"""
    text = passthrough + telemetry("gw", "istio-system", "  accessLogging:\n  - providers: [{name: envoy}]\n    match: {mode: CLIENT}")
    gateway = Proxy(id="router~127.0.0.1~ingressgateway-1.istio-system~istio-system.svc.cluster.local",
                    namespace="istio-system", kind=ProxyKind.ROUTER, labels={"istio": "ingressgateway"},
                    ip="127.0.0.1", workload_name="ingressgateway", access_log_service=SOCKET)
    out = generate(gateway, snapshot(text, workloads=workloads(), mesh=MESH))
    logs = [tcp_file_logs(tcp) for tcp in tcp_proxies(out, "127.0.0.1_8443")]
    assert logs and all(found == [("/dev/stdout", None)] for found in logs)
