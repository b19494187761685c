"""RequestAuthentication rules: issuer or jwksUri, usable key sets, token locations, claim headers, timeout."""

from __future__ import annotations

import json

import pytest
from ruamel.yaml import YAML

from malla.api.security.request_authentication import RequestAuthentication
from malla.config.validation import Finding, ValidationContext, validate_spec
from tests.conformance import SAMPLES, VALIDATION_DATASET

RULE = "spec.jwtRules[0]"
JWKS = json.dumps({"keys": [{"kty": "RSA", "e": "AQAB", "n": "xAE7eB6qugXyCAG3yhh7pkDkT65pHymX", "kid": "k1"}]})


def findings(spec: dict) -> list[Finding]:
    ctx = ValidationContext(kind="RequestAuthentication", api_version="security.istio.io/v1", name="ra", namespace="foo")
    return validate_spec(RequestAuthentication.model_validate(spec), ctx)


def rule(**fields) -> dict:
    return {"jwtRules": [{"issuer": "https://example.com", **fields}]}


CASES = [
    ({"jwtRules": [{"audiences": ["a"]}]}, "error", f"{RULE}.issuer", "issuer or jwksUri"),
    (rule(jwksUri="ftp://example.com/keys"), "error", f"{RULE}.jwksUri", "http:// or https://"),
    (rule(jwksUri="example.com/keys"), "error", f"{RULE}.jwksUri", "http:// or https://"),
    (rule(jwksUri="https:///keys"), "error", f"{RULE}.jwksUri", "no host"),
    (rule(jwksUri="https://example.com:99999/keys"), "error", f"{RULE}.jwksUri", "invalid port"),
    (rule(jwksUri="https://example.com/my keys"), "error", f"{RULE}.jwksUri", "spaces"),
    (rule(jwks="{not json"), "error", f"{RULE}.jwks", "not JSON"),
    (rule(jwks='["a"]'), "error", f"{RULE}.jwks", "'keys' list"),
    (rule(jwks='{"keys": [{"n": "abc"}]}'), "error", f"{RULE}.jwks", "kty"),
    (rule(jwks='{"keys": {"kty": "RSA"}}'), "error", f"{RULE}.jwks", "must be a list"),
    (rule(jwks='{"keys": []}'), "warning", f"{RULE}.jwks", "no keys"),
    (rule(jwks=JWKS, jwksUri="https://example.com/keys"), "warning", f"{RULE}.jwksUri", "ignored"),
    (rule(audiences=["a", ""]), "error", f"{RULE}.audiences[1]", "empty audience"),
    (rule(fromHeaders=[{"prefix": "Bearer "}]), "error", f"{RULE}.fromHeaders[0].name", "header name is required"),
    (rule(fromHeaders=[{"name": "x-jwt\r\nx-evil: 1"}]), "error", f"{RULE}.fromHeaders[0].name", "CR and LF"),
    (rule(fromParams=[""]), "error", f"{RULE}.fromParams[0]", "empty query parameter"),
    (rule(fromCookies=["session", ""]), "error", f"{RULE}.fromCookies[1]", "empty cookie"),
    (rule(outputPayloadToHeader="x-payload\n"), "error", f"{RULE}.outputPayloadToHeader", "CR and LF"),
    (rule(outputClaimToHeaders=[{"header": "x-sub"}]), "error", f"{RULE}.outputClaimToHeaders[0].claim", "claim is required"),
    (rule(outputClaimToHeaders=[{"claim": "sub"}]), "error", f"{RULE}.outputClaimToHeaders[0].header", "header is required"),
    (rule(outputClaimToHeaders=[{"claim": "sub", "header": "x sub"}]), "error", f"{RULE}.outputClaimToHeaders[0].header", "letters, digits"),
    (rule(timeout="0s"), "error", f"{RULE}.timeout", "at least 1ms"),
    (rule(timeout="-5s"), "error", f"{RULE}.timeout", "at least 1ms"),
    (rule(timeout="1.5ms"), "error", f"{RULE}.timeout", "whole milliseconds"),
    (rule(spaceDelimitedClaims=["scope", ""]), "error", f"{RULE}.spaceDelimitedClaims[1]", "empty claim name"),
    (rule(spaceDelimitedClaims=[f"c{i}" for i in range(65)]), "error", f"{RULE}.spaceDelimitedClaims", "at most 64"),
    ({"selector": {"matchLabels": {"app": "a"}}, "targetRefs": [{"kind": "Service", "name": "s"}]}, "error", "spec.targetRefs", "only one of"),
    ({"targetRef": {"kind": "Pod", "name": "p"}}, "error", "spec.targetRef.kind", "not supported"),
    ({"selector": {"matchLabels": {"app": "*"}}}, "error", "spec.selector.matchLabels[app]", "wildcard"),
]


@pytest.mark.parametrize(("spec", "level", "path", "word"), CASES, ids=[f"{c[2]}:{c[3]}" for c in CASES])
def test_broken_rule_gives_one_finding_at_its_path(spec, level, path, word):
    found = findings(spec)
    assert [(f.level, f.field) for f in found] == [(level, path)], found
    assert word in found[0].message


def test_each_broken_jwt_rule_is_reported_at_its_own_index():
    found = findings({"jwtRules": [{"issuer": "a"}, {"issuer": "b", "audiences": [""]}]})
    assert [f.field for f in found] == ["spec.jwtRules[1].audiences[0]"]


VALID = [
    {},
    rule(),
    {"jwtRules": [{"jwksUri": "https://example.com/.well-known/jwks.json"}]},
    rule(jwksUri="http://keys.internal:8080/jwks"),
    rule(jwks=JWKS),
    rule(jwks=json.dumps({"kty": "EC", "crv": "P-256", "x": "a", "y": "b"})),
    rule(
        audiences=["bookstore_android.apps.example.com"],
        fromHeaders=[{"name": "x-goog-iap-jwt-assertion"}, {"name": "Authorization", "prefix": "Bearer "}],
        fromParams=["access_token"],
        fromCookies=["session"],
        outputPayloadToHeader="x-jwt-payload",
        forwardOriginalToken=True,
        outputClaimToHeaders=[{"header": "x-jwt-sub", "claim": "sub"}, {"header": "x_group", "claim": "groups.id"}],
        timeout="5s",
        spaceDelimitedClaims=["scope", "roles"],
    ),
    {"targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}], **rule()},
]


@pytest.mark.parametrize("spec", VALID)
def test_valid_spec_gives_no_finding(spec):
    assert findings(spec) == []


def _corpus(kind: str) -> list:
    params = []
    for path in sorted([*VALIDATION_DATASET.glob("*.yaml"), *SAMPLES.rglob("*.yaml")]):
        for doc in YAML(typ="safe", pure=True).load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == kind:
                params.append(pytest.param(doc, id=f"{path.name}:{doc['metadata']['name']}"))
    return params


CORPUS = _corpus("RequestAuthentication")


def test_corpus_has_istios_request_authentications():
    assert len(CORPUS) >= 2


@pytest.mark.parametrize("doc", CORPUS)
def test_istio_corpus_policy_parses_and_has_no_error(doc):
    spec = RequestAuthentication.model_validate(doc.get("spec") or {})
    ctx = ValidationContext(
        kind=doc["kind"], api_version=doc["apiVersion"], name=doc["metadata"]["name"],
        namespace=doc["metadata"].get("namespace", "default"),
    )
    assert [f for f in validate_spec(spec, ctx) if f.level == "error"] == []
