"""WorkloadGroup rules: each broken rule gives a finding at its field path; Istio's own groups give no errors."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from malla.api.networking.workload_group import WorkloadGroup
from malla.config.validation import Finding, ValidationContext, validate_spec
from tests.conformance import SAMPLES, VALIDATION_DATASET


def findings(spec: dict) -> list[Finding]:
    ctx = ValidationContext(kind="WorkloadGroup", api_version="networking.istio.io/v1", name="wg", namespace="default")
    return validate_spec(WorkloadGroup.model_validate(spec), ctx)


def wg(probe: dict | None = None, **fields) -> dict:
    spec = {"metadata": {"labels": {"app": "reviews"}}, "template": {"serviceAccount": "reviews"}, **fields}
    if probe is not None:
        spec["probe"] = probe
    return spec


CASES = [
    ({"metadata": {"labels": {"app": "a"}}}, "error", "spec.template", "template is required"),
    (wg(metadata={"labels": {"app": "bad value"}}), "error", "spec.metadata.labels[app]", "invalid label value"),
    (wg(metadata={"labels": {"/app": "a"}}), "error", "spec.metadata.labels[/app]", "invalid label key"),
    (wg(template={"ports": {"http": 70000}}), "error", "spec.template.ports[http]", "between 1 and 65535"),
    (wg(template={"ports": {"http-" + "a" * 59: 80}}), "error", "spec.template.ports[http-" + "a" * 59 + "]",
     "at most 62"),
    (wg(template={"address": "unix://relative"}), "error", "spec.template.address", "absolute path"),
    (wg(template={"address": "unix:///a.sock", "ports": {"http": 80}}), "error", "spec.template.ports",
     "takes no ports"),
    (wg(template={"labels": {"app": "*"}}), "error", "spec.template.labels[app]", "invalid label value"),
    (wg(template={"serviceAccount": "Bad_SA"}), "warning", "spec.template.serviceAccount", "Kubernetes name"),
    # probe timings
    (wg({"tcpSocket": {"port": 80}, "initialDelaySeconds": -1}), "error", "spec.probe.initialDelaySeconds",
     "negative"),
    (wg({"tcpSocket": {"port": 80}, "timeoutSeconds": -1}), "error", "spec.probe.timeoutSeconds", "negative"),
    (wg({"tcpSocket": {"port": 80}, "periodSeconds": -1}), "error", "spec.probe.periodSeconds", "negative"),
    (wg({"tcpSocket": {"port": 80}, "successThreshold": -1}), "error", "spec.probe.successThreshold", "negative"),
    (wg({"tcpSocket": {"port": 80}, "failureThreshold": -1}), "error", "spec.probe.failureThreshold", "negative"),
    # probe handler
    (wg({"periodSeconds": 5}), "error", "spec.probe", "exactly one of"),
    (wg({"tcpSocket": {"port": 80}, "exec": {"command": ["true"]}}), "error", "spec.probe", "exactly one of"),
    (wg({"httpGet": {"path": "/ready"}}), "error", "spec.probe.httpGet.port", "port is required"),
    (wg({"httpGet": {"port": 65536}}), "error", "spec.probe.httpGet.port", "between 1 and 65535"),
    (wg({"httpGet": {"port": 80, "scheme": "FTP"}}), "error", "spec.probe.httpGet.scheme", "HTTP or HTTPS"),
    (wg({"httpGet": {"port": 80, "httpHeaders": [{"name": "**"}]}}), "error",
     "spec.probe.httpGet.httpHeaders[0].name", "invalid header name"),
    (wg({"httpGet": {"port": 80, "httpHeaders": [{"value": "v"}]}}), "error",
     "spec.probe.httpGet.httpHeaders[0].name", "invalid header name"),
    (wg({"tcpSocket": {"port": 65536}}), "error", "spec.probe.tcpSocket.port", "between 1 and 65535"),
    (wg({"tcpSocket": {"host": "localhost"}}), "error", "spec.probe.tcpSocket.port", "port is required"),
    (wg({"exec": {}}), "error", "spec.probe.exec.command", "required"),
    (wg({"exec": {"command": ["cat", ""]}}), "error", "spec.probe.exec.command[1]", "empty"),
    (wg({"grpc": {"port": 70000}}), "error", "spec.probe.grpc.port", "between 1 and 65535"),
    (wg({"grpc": {"service": "health"}}), "warning", "spec.probe.grpc.port", "no port"),
]


@pytest.mark.parametrize(("spec", "level", "path", "word"), CASES)
def test_each_broken_rule_is_reported_at_its_field(spec, level, path, word):
    found = findings(spec)
    hits = [f for f in found if f.field == path and word in f.message]
    assert [f.level for f in hits] == [level], found


@pytest.mark.parametrize("spec", [
    wg(),
    wg(template={}),
    wg(template={"ports": {"http": 8080, "grpc": 3550}, "network": "vm-net", "address": "1.2.3.4"}),
    wg({"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTPS", "host": "localhost",
                    "httpHeaders": [{"name": "Lit-Header", "value": "Im-The-Best"}]},
        "initialDelaySeconds": 5, "timeoutSeconds": 3, "periodSeconds": 4, "successThreshold": 3,
        "failureThreshold": 3}),
    wg({"tcpSocket": {"host": "localhost", "port": 3306}}),
    wg({"exec": {"command": ["cat", "/tmp/healthy"]}}),
    wg({"grpc": {"port": 9090, "service": "grpc.health.v1.Health"}}),
    wg(metadata={"labels": {"app.kubernetes.io/version": "1.3.4"}, "annotations": {"any": "thing goes"}}),
])
def test_valid_groups_have_no_findings(spec):
    assert findings(spec) == []


def _istio_documents():
    yaml = YAML(typ="safe", pure=True)
    for root in (VALIDATION_DATASET, SAMPLES):
        for path in sorted(root.rglob("*.yaml")):
            text = path.read_text()
            if "WorkloadGroup" not in text:
                continue  # parsing every sample with the pure-Python loader is slow
            for doc in yaml.load_all(text):
                if isinstance(doc, dict) and doc.get("kind") == "WorkloadGroup":
                    yield pytest.param(doc, id=f"{path.name}:{doc['metadata']['name']}")


ISTIO_DOCUMENTS = list(_istio_documents())


def test_istio_has_workload_groups_to_check():
    assert len(ISTIO_DOCUMENTS) >= 3


@pytest.mark.parametrize("doc", ISTIO_DOCUMENTS)
def test_istio_workload_groups_have_no_errors(doc):
    assert [f for f in findings(doc["spec"]) if f.level == "error"] == []
