"""WorkloadEntry rules: each broken rule gives a finding at its field path; Istio's own entries give no errors."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from malla.api.networking.workload_entry import WorkloadEntry
from malla.config.validation import Finding, ValidationContext, validate_spec
from tests.conformance import SAMPLES, VALIDATION_DATASET


def findings(spec: dict) -> list[Finding]:
    ctx = ValidationContext(kind="WorkloadEntry", api_version="networking.istio.io/v1", name="we", namespace="default")
    return validate_spec(WorkloadEntry.model_validate(spec), ctx)


CASES = [
    ({}, "error", "spec.address", "address is required"),
    ({"labels": {"app": "a"}}, "error", "spec.address", "address is required"),
    ({"network": "west"}, "warning", "spec.address", "unset with network"),
    ({"address": "not an address"}, "error", "spec.address", "neither an IP address nor a valid DNS name"),
    ({"address": "vm_1.example.com"}, "error", "spec.address", "valid DNS name"),
    ({"address": "a" * 256}, "error", "spec.address", "DNS name"),
    ({"address": "unix://relative"}, "error", "spec.address", "absolute path"),
    ({"address": "unix:///dir/"}, "error", "spec.address", "directory"),
    ({"address": "unix://@foo", "ports": {"http": 80}}, "error", "spec.ports", "takes no ports"),
    ({"address": "1.1.1.1", "ports": {"http": 99999}}, "error", "spec.ports[http]", "between 1 and 65535"),
    ({"address": "1.1.1.1", "ports": {"http": 0}}, "error", "spec.ports[http]", "between 1 and 65535"),
    ({"address": "1.1.1.1", "ports": {"@": 80}}, "error", "spec.ports[@]", "invalid port name"),
    ({"address": "1.1.1.1", "ports": {"http-" + "a" * 59: 80}}, "error", "spec.ports[http-" + "a" * 59 + "]",
     "at most 62"),
    ({"address": "1.1.1.1", "labels": {"app": "-bad"}}, "error", "spec.labels[app]", "invalid label value"),
    ({"address": "1.1.1.1", "labels": {"bad key": "a"}}, "error", "spec.labels[bad key]", "invalid label key"),
    ({"address": "1.1.1.1", "labels": {"Not_A.Prefix/app": "a"}}, "error", "spec.labels[Not_A.Prefix/app]",
     "invalid label key"),
    ({"address": "1.1.1.1", "labels": {"a" * 64: "a"}}, "error", f"spec.labels[{'a' * 64}]", "invalid label key"),
    ({"address": "1.1.1.1", "serviceAccount": "Not_A_Name"}, "warning", "spec.serviceAccount", "Kubernetes name"),
    ({"address": "1.1.1.1", "serviceAccount": "a" * 254}, "error", "spec.serviceAccount", "253"),
]


@pytest.mark.parametrize(("spec", "level", "path", "word"), CASES)
def test_each_broken_rule_is_reported_at_its_field(spec, level, path, word):
    found = findings(spec)
    hits = [f for f in found if f.field == path and word in f.message]
    assert [f.level for f in hits] == [level], found


@pytest.mark.parametrize("spec", [
    {"address": "1.2.3.4"},
    {"address": "2001:db8::10"},
    {"address": "vm1.vpc01.corp.net"},
    {"address": "Vm1.Example.COM."},
    {"address": "unix:///var/run/app.sock"},
    {"address": "unix://@abstract"},
    {"address": "10.0.0.5", "ports": {"http": 8080, "grpc-Web": 9090}, "labels": {"app": "details",
     "example.com/tier": "", "instance-id": "vm1"}, "network": "n1", "locality": "us/us-east-1/az-1",
     "weight": 3, "serviceAccount": "details-legacy"},
])
def test_valid_entries_have_no_findings(spec):
    assert findings(spec) == []


def _istio_documents():
    yaml = YAML(typ="safe", pure=True)
    for root in (VALIDATION_DATASET, SAMPLES):
        for path in sorted(root.rglob("*.yaml")):
            text = path.read_text()
            if "WorkloadEntry" not in text:
                continue  # parsing every sample with the pure-Python loader is slow
            for doc in yaml.load_all(text):
                if isinstance(doc, dict) and doc.get("kind") == "WorkloadEntry":
                    yield pytest.param(doc, id=f"{path.name}:{doc['metadata']['name']}")


ISTIO_DOCUMENTS = list(_istio_documents())


def test_istio_has_workload_entries_to_check():
    assert len(ISTIO_DOCUMENTS) >= 3


@pytest.mark.parametrize("doc", ISTIO_DOCUMENTS)
def test_istio_workload_entries_have_no_errors(doc):
    assert [f for f in findings(doc["spec"]) if f.level == "error"] == []
