"""Telemetry specs parse: tracing, metrics and access logging with their enums, wrappers and durations."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from malla.api.telemetry.telemetry import Telemetry

FULL = """
selector:
  matchLabels:
    service.istio.io/canonical-name: foo
tracing:
- match:
    mode: SERVER
  providers:
  - name: zipkin
  randomSamplingPercentage: 10.5
  disableSpanReporting: false
  useRequestIdForTraceSampling: true
  enableIstioTags: true
  disableContextPropagation: false
  customTags:
    my_literal:
      literal:
        value: foo
    my_env:
      environment:
        name: POD_NAME
        defaultValue: unknown
    my_header:
      header:
        name: x-request-id
    my_format:
      formatter:
        value: "%REQ(:PATH)%"
metrics:
- providers:
  - name: prometheus
  reportingInterval: 15s
  overrides:
  - match:
      metric: REQUEST_COUNT
      mode: CLIENT_AND_SERVER
    disabled: false
    tagOverrides:
      request_host:
        value: request.host
      response_code:
        operation: REMOVE
accessLogging:
- match:
    mode: CLIENT
  providers:
  - name: envoy
  disabled: false
  filter:
    expression: response.code >= 400
"""


def _full() -> Telemetry:
    return Telemetry.model_validate(YAML(typ="safe", pure=True).load(FULL))


def test_every_section_parses():
    spec = _full()
    tracing = spec.tracing[0]
    assert tracing.match.mode == "SERVER"
    assert tracing.random_sampling_percentage == 10.5
    assert tracing.custom_tags["my_env"].environment.default_value == "unknown"
    assert tracing.custom_tags["my_format"].formatter.value == "%REQ(:PATH)%"
    assert tracing.enable_istio_tags is True and tracing.disable_context_propagation is False
    metrics = spec.metrics[0]
    assert metrics.reporting_interval.seconds == 15
    assert metrics.overrides[0].match.metric == "REQUEST_COUNT"
    assert metrics.overrides[0].tag_overrides["response_code"].operation == "REMOVE"
    assert metrics.overrides[0].tag_overrides["request_host"].operation is None
    assert spec.access_logging[0].filter.expression == "response.code >= 400"


def test_round_trip_keeps_the_yaml_keys():
    data = _full().to_dict()
    assert data["tracing"][0]["randomSamplingPercentage"] == 10.5
    assert data["metrics"][0]["reportingInterval"] == "15s"
    assert data["accessLogging"][0]["filter"] == {"expression": "response.code >= 400"}
    assert Telemetry.model_validate(data) == _full()


def test_snake_case_keys_are_accepted():
    spec = Telemetry.model_validate({"access_logging": [{"providers": [{"name": "envoy"}]}],
                                     "tracing": [{"random_sampling_percentage": "5"}]})
    assert spec.access_logging[0].providers[0].name == "envoy"
    assert spec.tracing[0].random_sampling_percentage == 5.0


@pytest.mark.parametrize(("given", "kept"), [("GRPC_RESPONSE_MESSAGES", "GRPC_RESPONSE_MESSAGES"), (0, "ALL_METRICS"), (3, "REQUEST_SIZE")])
def test_metric_accepts_name_or_number(given, kept):
    spec = Telemetry.model_validate({"metrics": [{"overrides": [{"match": {"metric": given}}]}]})
    assert spec.metrics[0].overrides[0].match.metric == kept


@pytest.mark.parametrize(("given", "kept"), [(0, "CLIENT_AND_SERVER"), (1, "CLIENT"), ("SERVER", "SERVER")])
def test_workload_mode_uses_telemetrys_own_numbering(given, kept):
    assert Telemetry.model_validate({"tracing": [{"match": {"mode": given}}]}).tracing[0].match.mode == kept


def test_bad_reporting_interval_points_at_the_field():
    with pytest.raises(ValidationError) as info:
        Telemetry.model_validate({"metrics": [{"reportingInterval": "often"}]})
    assert info.value.errors()[0]["loc"] == ("metrics", 0, "reportingInterval")


def test_unknown_field_is_rejected_with_its_path():
    with pytest.raises(ValidationError) as info:
        Telemetry.model_validate({"tracing": [{"customTags": {"a": {"literal": {"val": "x"}}}}]})
    assert info.value.errors()[0]["loc"] == ("tracing", 0, "customTags", "a", "literal", "val")


def test_disabled_must_be_a_boolean():
    with pytest.raises(ValidationError) as info:
        Telemetry.model_validate({"accessLogging": [{"disabled": "no"}]})
    assert info.value.errors()[0]["loc"] == ("accessLogging", 0, "disabled")
