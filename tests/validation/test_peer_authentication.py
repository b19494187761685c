"""PeerAuthentication rules: port-level mTLS needs a selector, ports are 1..65535, selectors are exact."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from malla.api.security.peer_authentication import PeerAuthentication
from malla.config.validation import Finding, ValidationContext, validate_spec
from tests.conformance import SAMPLES, VALIDATION_DATASET

APP = {"matchLabels": {"app": "finance"}}


def findings(spec: dict, *, namespace: str = "foo", root: str = "istio-system") -> list[Finding]:
    ctx = ValidationContext(
        kind="PeerAuthentication", api_version="security.istio.io/v1", name="default", namespace=namespace, root_namespace=root
    )
    return validate_spec(PeerAuthentication.model_validate(spec), ctx)


CASES = [
    ({"mtls": {"mode": "STRICT"}, "portLevelMtls": {8080: {"mode": "DISABLE"}}}, "error", "spec.portLevelMtls", "requires a selector"),
    ({"selector": APP, "portLevelMtls": {}}, "error", "spec.portLevelMtls", "at least one port"),
    ({"selector": APP, "portLevelMtls": {0: {"mode": "DISABLE"}}}, "error", "spec.portLevelMtls[0]", "between 1 and 65535"),
    ({"selector": APP, "portLevelMtls": {70000: {"mode": "DISABLE"}}}, "error", "spec.portLevelMtls[70000]", "between 1 and 65535"),
    ({"selector": {"matchLabels": {"app": "fin*"}}}, "error", "spec.selector.matchLabels[app]", "wildcard"),
    ({"selector": {"matchLabels": {"app": "x" * 64}}}, "error", "spec.selector.matchLabels[app]", "at most 63"),
    ({"selector": {}, "mtls": {"mode": "STRICT"}}, "warning", "spec.selector", "without labels"),
]


@pytest.mark.parametrize(("spec", "level", "path", "word"), CASES, ids=[f"{c[2]}:{c[3]}" for c in CASES])
def test_broken_rule_gives_one_finding_at_its_path(spec, level, path, word):
    found = findings(spec)
    assert [(f.level, f.field) for f in found] == [(level, path)], found
    assert word in found[0].message


def test_selector_without_labels_does_not_allow_port_level_mtls():
    found = findings({"selector": {"matchLabels": {}}, "portLevelMtls": {8080: {"mode": "DISABLE"}}})
    assert ("error", "spec.portLevelMtls") in [(f.level, f.field) for f in found]


def test_selector_in_the_root_namespace_warns_that_it_reaches_every_namespace():
    found = findings({"selector": APP, "mtls": {"mode": "STRICT"}}, namespace="istio-config", root="istio-config")
    assert [(f.level, f.field) for f in found] == [("warning", "spec.selector")]
    assert "every namespace" in found[0].message


@pytest.mark.parametrize(
    ("spec", "namespace"),
    [
        ({"mtls": {"mode": "STRICT"}}, "istio-system"),  # the mesh-wide default
        ({"mtls": {"mode": "PERMISSIVE"}}, "foo"),
        ({"selector": APP, "mtls": {"mode": "STRICT"}, "portLevelMtls": {8080: {"mode": "DISABLE"}}}, "foo"),
        ({"selector": APP, "mtls": {"mode": "UNSET"}, "portLevelMtls": {1: {"mode": "DISABLE"}, 65535: {}}}, "foo"),
        ({}, "foo"),
    ],
)
def test_valid_policy_gives_no_finding(spec, namespace):
    assert findings(spec, namespace=namespace) == []


def _corpus(kind: str) -> list:
    params = []
    for path in sorted([*VALIDATION_DATASET.glob("*.yaml"), *SAMPLES.rglob("*.yaml")]):
        for doc in YAML(typ="safe", pure=True).load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == kind:
                params.append(pytest.param(doc, id=f"{path.name}:{doc['metadata']['name']}"))
    return params


CORPUS = _corpus("PeerAuthentication")


def test_corpus_has_istios_peer_authentications():
    assert len(CORPUS) >= 2


@pytest.mark.parametrize("doc", CORPUS)
def test_istio_corpus_policy_parses_and_has_no_error(doc):
    spec = PeerAuthentication.model_validate(doc.get("spec") or {})
    ctx = ValidationContext(
        kind=doc["kind"], api_version=doc["apiVersion"], name=doc["metadata"]["name"],
        namespace=doc["metadata"].get("namespace", "default"),
    )
    assert [f for f in validate_spec(spec, ctx) if f.level == "error"] == []
