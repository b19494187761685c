"""Telemetry rules: provider names, sampling range, one source per custom tag, tag overrides, CEL filters."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from malla.api.telemetry.telemetry import Telemetry
from malla.config.validation import Finding, ValidationContext, validate_spec
from malla.config.validation.telemetry import cel_syntax_problem
from tests.conformance import SAMPLES, VALIDATION_DATASET

TRACING = "spec.tracing[0]"
OVERRIDE = "spec.metrics[0].overrides[0]"


def findings(spec: dict) -> list[Finding]:
    ctx = ValidationContext(kind="Telemetry", api_version="telemetry.istio.io/v1", name="t", namespace="istio-system")
    return validate_spec(Telemetry.model_validate(spec), ctx)


def tag(**sources) -> dict:
    return {"tracing": [{"customTags": {"my_tag": sources}}]}


def override(**fields) -> dict:
    return {"metrics": [{"overrides": [fields]}]}


def log_filter(expression: str | None) -> dict:
    return {"accessLogging": [{"filter": {} if expression is None else {"expression": expression}}]}


CASES = [
    ({"selector": {"matchLabels": {"app": "a"}}, "targetRef": {"kind": "Service", "name": "s"}}, "error", "spec.targetRef", "only one of"),
    ({"targetRefs": [{"kind": "Service", "name": "s", "namespace": "other"}]}, "error", "spec.targetRefs[0].namespace", "cross-namespace"),
    ({"selector": {"matchLabels": {"": "a"}}}, "error", "spec.selector.matchLabels[]", "empty label key"),
    ({"tracing": [{}, {}]}, "warning", "spec.tracing", "only one tracing entry"),
    ({"tracing": [{"providers": [{"name": "zipkin"}, {"name": "b"}]}]}, "warning", f"{TRACING}.providers", "only one tracing provider"),
    ({"tracing": [{"providers": [{}]}]}, "error", f"{TRACING}.providers[0].name", "provider name is required"),
    ({"metrics": [{"providers": [{"name": ""}]}]}, "error", "spec.metrics[0].providers[0].name", "provider name is required"),
    ({"accessLogging": [{"providers": [{"name": "envoy"}, {}]}]}, "error", "spec.accessLogging[0].providers[1].name", "provider name"),
    ({"tracing": [{"randomSamplingPercentage": 100.5}]}, "error", f"{TRACING}.randomSamplingPercentage", "between 0.0 and 100.0"),
    ({"tracing": [{"randomSamplingPercentage": -1}]}, "error", f"{TRACING}.randomSamplingPercentage", "between 0.0 and 100.0"),
    (tag(), "error", f"{TRACING}.customTags[my_tag]", "exactly one of"),
    (tag(literal={"value": "a"}, header={"name": "x"}), "error", f"{TRACING}.customTags[my_tag]", "literal and header"),
    (tag(literal={}), "error", f"{TRACING}.customTags[my_tag].literal.value", "may not be empty"),
    (tag(environment={"defaultValue": "x"}), "error", f"{TRACING}.customTags[my_tag].environment.name", "may not be empty"),
    (tag(header={"name": ""}), "error", f"{TRACING}.customTags[my_tag].header.name", "may not be empty"),
    (tag(formatter={}), "error", f"{TRACING}.customTags[my_tag].formatter.value", "may not be empty"),
    ({"tracing": [{"customTags": {"": {"literal": {"value": "a"}}}}]}, "error", f"{TRACING}.customTags[]", "name may not be empty"),
    ({"metrics": [{"reportingInterval": "-1s"}]}, "error", "spec.metrics[0].reportingInterval", "must not be negative"),
    (override(match={"metric": "REQUEST_COUNT", "customMetric": "my_metric"}), "error", f"{OVERRIDE}.match", "only one"),
    (override(match={"customMetric": ""}), "error", f"{OVERRIDE}.match.customMetric", "may not be empty"),
    (override(tagOverrides={"request_host": {}}), "error", f"{OVERRIDE}.tagOverrides[request_host].value", "UPSERT"),
    (override(tagOverrides={"request_host": {"operation": "UPSERT", "value": ""}}), "error", f"{OVERRIDE}.tagOverrides[request_host].value", "UPSERT"),
    (override(tagOverrides={"response_code": {"operation": "REMOVE", "value": "x"}}), "error", f"{OVERRIDE}.tagOverrides[response_code].value", "only be set"),
    (override(tagOverrides={"": {"operation": "REMOVE"}}), "warning", f"{OVERRIDE}.tagOverrides[]", "may not be empty"),
    (override(tagOverrides={"request-host": {"value": "request.host"}}), "warning", f"{OVERRIDE}.tagOverrides[request-host]", "Prometheus label"),
    (log_filter("response.code >= 400 &&"), "error", "spec.accessLogging[0].filter.expression", "right-hand side"),
    (log_filter("(response.code >= 400"), "error", "spec.accessLogging[0].filter.expression", "never closed"),
    (log_filter("response.code = 400"), "error", "spec.accessLogging[0].filter.expression", "=="),
    (log_filter(None), "error", "spec.accessLogging[0].filter.expression", "empty"),
]


@pytest.mark.parametrize(("spec", "level", "path", "word"), CASES, ids=[f"{c[2]}:{c[3]}" for c in CASES])
def test_broken_rule_gives_one_finding_at_its_path(spec, level, path, word):
    found = findings(spec)
    assert [(f.level, f.field) for f in found] == [(level, path)], found
    assert word in found[0].message


VALID = [
    {},
    {"tracing": [{"randomSamplingPercentage": 10.0}]},
    {"tracing": [{"randomSamplingPercentage": 0}, ]},
    {"tracing": [{"providers": [{"name": "zipkin"}], "randomSamplingPercentage": 100, "customTags": {
        "lit": {"literal": {"value": "foo"}},
        "env": {"environment": {"name": "POD_NAME"}},
        "hdr": {"header": {"name": "x-request-id", "defaultValue": "none"}},
        "fmt": {"formatter": {"value": "%REQ(:PATH)%"}},
    }}]},
    {"metrics": [{"providers": [{"name": "prometheus"}], "reportingInterval": "10s", "overrides": [
        {"match": {"metric": "ALL_METRICS", "mode": "SERVER"}, "disabled": True},
        {"match": {"customMetric": "my_metric"}, "tagOverrides": {"request_method": {"value": "request.method"}}},
        {"tagOverrides": {"response_code": {"operation": "REMOVE"}}},
    ]}]},
    {"accessLogging": [{"providers": [{"name": "envoy"}], "filter": {"expression": "response.code >= 400 || xds.cluster_name == 'x'"}}]},
    {"accessLogging": [{"disabled": True}]},
    {"targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}], "tracing": [{}]},
]


@pytest.mark.parametrize("spec", VALID)
def test_valid_spec_gives_no_finding(spec):
    assert findings(spec) == []


@pytest.mark.parametrize(
    "expression",
    [
        "response.code >= 400",
        "!(request.url_path.startsWith('/health'))",
        'request.headers["x-user"] != "" && connection.mtls',
        "'it\\'s' == \"a\" || '''multi\nline''' != ''",
        "size(request.headers) > 3 ? true : false",
        "{'a': [1, 2]}.size() <= 1",
    ],
)
def test_well_formed_cel_passes_the_scan(expression):
    assert cel_syntax_problem(expression) is None


@pytest.mark.parametrize(
    ("expression", "word"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("request.headers['x'", "never closed"),
        ("a)", "unbalanced"),
        ("[a}", "unbalanced"),
        ("'abc == 'abc'", "unterminated"),
        ('"abc', "unterminated"),
        ("a = b", "=="),
        ("=a", "=="),
        ("a ||", "right-hand side"),
        ("a.", "right-hand side"),
    ],
)
def test_malformed_cel_is_reported(expression, word):
    problem = cel_syntax_problem(expression)
    assert problem is not None and word in problem


def _corpus(kind: str) -> list:
    params = []
    for path in sorted([*VALIDATION_DATASET.glob("*.yaml"), *SAMPLES.rglob("*.yaml")]):
        for doc in YAML(typ="safe", pure=True).load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == kind:
                params.append(pytest.param(doc, id=f"{path.name}:{doc['metadata']['name']}"))
    return params


CORPUS = _corpus("Telemetry")


def test_corpus_has_istios_telemetry():
    assert len(CORPUS) >= 2


@pytest.mark.parametrize("doc", CORPUS)
def test_istio_corpus_resource_parses_and_has_no_error(doc):
    spec = Telemetry.model_validate(doc.get("spec") or {})
    ctx = ValidationContext(
        kind=doc["kind"], api_version=doc["apiVersion"], name=doc["metadata"]["name"],
        namespace=doc["metadata"].get("namespace", "default"),
    )
    assert [f for f in validate_spec(spec, ctx) if f.level == "error"] == []
