"""WorkloadGroup specs parse as Istio reads them: camelCase or snake_case keys, probe handlers, strict fields."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from malla.api.networking.workload_entry import WorkloadEntry
from malla.api.networking.workload_group import WorkloadGroup

REVIEWS = """
metadata:
  labels: {app.kubernetes.io/name: reviews, app.kubernetes.io/version: "1.3.4"}
  annotations: {team: books}
template:
  ports: {grpc: 3550, http: 8080}
  serviceAccount: default
probe:
  initialDelaySeconds: 5
  timeoutSeconds: 3
  periodSeconds: 4
  successThreshold: "3"
  failureThreshold: 3
  httpGet:
    path: /foo/bar
    host: 127.0.0.1
    port: 3100
    scheme: HTTPS
    httpHeaders:
    - name: Lit-Header
      value: Im-The-Best
"""


def test_camel_case_document_parses_every_field():
    wg = WorkloadGroup.model_validate(YAML(typ="safe", pure=True).load(REVIEWS))
    assert wg.metadata.labels["app.kubernetes.io/version"] == "1.3.4"
    assert wg.metadata.annotations == {"team": "books"}
    assert isinstance(wg.template, WorkloadEntry)
    assert wg.template.ports == {"grpc": 3550, "http": 8080}
    probe = wg.probe
    assert (probe.initial_delay_seconds, probe.timeout_seconds, probe.period_seconds,
            probe.success_threshold, probe.failure_threshold) == (5, 3, 4, 3, 3)
    assert (probe.http_get.path, probe.http_get.port, probe.http_get.scheme) == ("/foo/bar", 3100, "HTTPS")
    assert probe.http_get.http_headers[0].name == "Lit-Header"
    assert (probe.tcp_socket, probe.exec, probe.grpc) == (None, None, None)


@pytest.mark.parametrize(("probe", "handler"), [
    ({"tcp_socket": {"host": "localhost", "port": 3306}}, "tcp_socket"),
    ({"exec": {"command": ["cat", "/tmp/healthy"]}}, "exec"),
    ({"grpc": {"port": 9090, "service": "health"}}, "grpc"),
    ({"http_get": {"port": 80, "http_headers": [{"name": "a"}]}}, "http_get"),
])
def test_snake_case_probe_handlers(probe, handler):
    wg = WorkloadGroup.model_validate({"template": {}, "probe": probe})
    assert getattr(wg.probe, handler) is not None


def test_negative_timings_parse_for_the_validator_to_report():
    assert WorkloadGroup.model_validate({"probe": {"periodSeconds": -1}}).probe.period_seconds == -1


@pytest.mark.parametrize(("spec", "loc"), [
    ({"template": {"adress": "1.1.1.1"}}, ("template", "adress")),
    ({"probe": {"httpGet": {"port": 80, "headers": []}}}, ("probe", "httpGet", "headers")),
    ({"probe": {"livenessProbe": {}}}, ("probe", "livenessProbe")),
    ({"metadata": {"name": "x"}}, ("metadata", "name")),
])
def test_unknown_fields_are_rejected_with_their_path(spec, loc):
    with pytest.raises(ValidationError) as err:
        WorkloadGroup.model_validate(spec)
    assert err.value.errors()[0]["loc"] == loc


@pytest.mark.parametrize("spec", [
    {"probe": {"periodSeconds": 2**31}},
    {"probe": {"exec": {"command": "cat"}}},
    {"probe": {"tcpSocket": {"port": "http"}}},
])
def test_wrong_types_are_rejected(spec):
    with pytest.raises(ValidationError):
        WorkloadGroup.model_validate(spec)
