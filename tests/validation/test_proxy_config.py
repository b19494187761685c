"""ProxyConfig rules: each broken rule gives a finding at its field path; Istio's own ProxyConfig gives no errors."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from malla.api.networking.proxy_config import ProxyConfig
from malla.config.validation import Finding, ValidationContext, validate_spec
from tests.conformance import SAMPLES, VALIDATION_DATASET

WAYPOINT = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "waypoint"}


def findings(spec: dict) -> list[Finding]:
    ctx = ValidationContext(kind="ProxyConfig", api_version="networking.istio.io/v1beta1", name="pc",
                            namespace="default")
    return validate_spec(ProxyConfig.model_validate(spec), ctx)


CASES = [
    ({"concurrency": -1}, "error", "spec.concurrency", "0 (use all cores) or more"),
    ({"selector": {"matchLabels": {}}}, "warning", "spec.selector", "no labels"),
    ({"selector": {}}, "warning", "spec.selector", "no labels"),
    ({"selector": {"matchLabels": {"": "bar"}}}, "error", "spec.selector.matchLabels[]", "empty label key"),
    ({"selector": {"matchLabels": {"app": "ra*"}}}, "error", "spec.selector.matchLabels[app]", "wildcard"),
    ({"selector": {"matchLabels": {"a*": "x"}}}, "error", "spec.selector.matchLabels[a*]", "wildcard"),
    ({"selector": {"matchLabels": {"app": "x" * 64}}}, "error", "spec.selector.matchLabels[app]", "63"),
    ({"selector": {"matchLabels": {"app": "a"}}, "targetRef": WAYPOINT}, "error", "spec.targetRef", "only one of"),
    ({"targetRef": {"group": "gateway.networking.k8s.io", "name": "w"}}, "error", "spec.targetRef.kind",
     "kind is required"),
    ({"targetRef": {**WAYPOINT, "kind": "9Gateway"}}, "error", "spec.targetRef.kind", "invalid kind"),
    ({"targetRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway"}}, "error", "spec.targetRef.name",
     "name is required"),
    ({"targetRef": {**WAYPOINT, "name": "w" * 254}}, "error", "spec.targetRef.name", "253"),
    ({"targetRef": {**WAYPOINT, "namespace": "other"}}, "error", "spec.targetRef.namespace", "cross-namespace"),
    ({"targetRef": {**WAYPOINT, "group": "Gateway.Networking"}}, "error", "spec.targetRef.group", "invalid group"),
    ({"targetRef": {"group": "apps", "kind": "Deployment", "name": "d"}}, "warning", "spec.targetRef",
     "do not attach"),
    ({"environmentVariables": {"BIG": "x" * 2049}}, "error", "spec.environmentVariables[BIG]", "2048"),
    ({"image": {"imageType": "centos"}}, "warning", "spec.image.imageType", "unrecognised image type"),
]


@pytest.mark.parametrize(("spec", "level", "path", "word"), CASES)
def test_each_broken_rule_is_reported_at_its_field(spec, level, path, word):
    found = findings(spec)
    hits = [f for f in found if f.field == path and word in f.message]
    assert [f.level for f in hits] == [level], found


@pytest.mark.parametrize("spec", [
    {},
    {"concurrency": 0, "image": {"imageType": "distroless"}},
    {"selector": {"matchLabels": {"app": "ratings"}}, "concurrency": 2, "image": {"imageType": "debug"}},
    {"environmentVariables": {"ISTIO_META_FOO": "bar"}, "image": {"imageType": "default"}},
    {"targetRef": WAYPOINT, "concurrency": 4},
    {"targetRef": {"kind": "Service", "name": "reviews"}},
])
def test_valid_proxy_configs_have_no_findings(spec):
    assert findings(spec) == []


def _istio_documents():
    yaml = YAML(typ="safe", pure=True)
    for root in (VALIDATION_DATASET, SAMPLES):
        for path in sorted(root.rglob("*.yaml")):
            text = path.read_text()
            if "ProxyConfig" not in text:
                continue  # parsing every sample with the pure-Python loader is slow
            for doc in yaml.load_all(text):
                if isinstance(doc, dict) and doc.get("kind") == "ProxyConfig":
                    yield pytest.param(doc, id=f"{path.name}:{doc['metadata']['name']}")


ISTIO_DOCUMENTS = list(_istio_documents())


def test_istio_has_proxy_configs_to_check():
    assert len(ISTIO_DOCUMENTS) >= 1


@pytest.mark.parametrize("doc", ISTIO_DOCUMENTS)
def test_istio_proxy_configs_have_no_errors(doc):
    assert [f for f in findings(doc["spec"]) if f.level == "error"] == []
