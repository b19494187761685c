"""Istio's Telemetry API in generated Envoy config: tracing and access logging, merged root -> namespace -> workload."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from malla.api.telemetry.telemetry import Telemetry
from malla.config.parse import parse_text
from malla.config.validation import ValidationContext
from malla.config.validation.telemetry import validate
from malla.pilot.consistency import check_consistency
from malla.pilot.generate import generate
from malla.pilot.resources import CLUSTER, LISTENER
from malla.pilot.snapshot import MeshConfig, MeshSnapshot
from malla.telemetry.access_logging import ISTIO_TEXT_FORMAT
from tests.pilot.mesh import snapshot, workload
from tests.telemetry.test_proxy_config import MESH, managers, reviews_proxy

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
