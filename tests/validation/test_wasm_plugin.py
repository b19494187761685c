"""WasmPlugin rules: module url and checksum, name lengths, VM environment, traffic selector ports."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from malla.api.extensions.wasm_plugin import WasmPlugin
from malla.config.validation import Finding, ValidationContext, validate_spec
from tests.conformance import SAMPLES, VALIDATION_DATASET

URL = "oci://ghcr.io/istio-ecosystem/wasm-extensions/basic_auth:1.12.0"
SHA = "0123456789abcdef" * 4


def findings(spec: dict) -> list[Finding]:
    ctx = ValidationContext(kind="WasmPlugin", api_version="extensions.istio.io/v1alpha1", name="w", namespace="istio-system")
    return validate_spec(WasmPlugin.model_validate(spec), ctx)


def plugin(**fields) -> dict:
    return {"url": URL, **fields}


def env(*variables: dict) -> dict:
    return plugin(vmConfig={"env": list(variables)})


CASES = [
    ({}, "error", "spec.url", "url is required"),
    ({"url": ""}, "error", "spec.url", "url is required"),
    ({"url": "ftp://example.com/plugin.wasm"}, "error", "spec.url", "scheme 'ftp'"),
    ({"url": "localhost:5000/plugin:v1"}, "error", "spec.url", "scheme 'localhost'"),
    ({"url": "oci:///plugin:v1"}, "error", "spec.url", "no host"),
    ({"url": "https://example.com:port/plugin.wasm"}, "error", "spec.url", "invalid port"),
    ({"url": "https://example.com/my plugin.wasm"}, "error", "spec.url", "spaces"),
    (plugin(sha256="abc"), "error", "spec.sha256", "64 lower-case hex"),
    (plugin(sha256=SHA.upper()), "error", "spec.sha256", "64 lower-case hex"),
    (plugin(imagePullSecret="s" * 254), "error", "spec.imagePullSecret", "at most 253"),
    # the CRD gives both minLength 1, as for TrafficExtension's wasm
    (plugin(imagePullSecret=""), "error", "spec.imagePullSecret", "must not be empty"),
    (plugin(pluginName="p" * 257), "error", "spec.pluginName", "at most 256"),
    (plugin(pluginName=""), "error", "spec.pluginName", "must not be empty"),
    (env({"value": "x"}), "error", "spec.vmConfig.env[0].name", "name is required"),
    (env({"name": "N" * 257}), "error", "spec.vmConfig.env[0].name", "at most 256"),
    (env({"name": "A"}, {"name": "A", "value": "b"}), "error", "spec.vmConfig.env[1].name", "duplicate"),
    (env({"name": "A", "valueFrom": "HOST", "value": "b"}), "error", "spec.vmConfig.env[0].value", "only be set when valueFrom is INLINE"),
    (env({"name": "A", "value": "v" * 2049}), "error", "spec.vmConfig.env[0].value", "at most 2048"),
    (env(*({"name": f"E{i}"} for i in range(257))), "error", "spec.vmConfig.env", "at most 256"),
    (plugin(match=[{"ports": [{"number": 0}]}]), "error", "spec.match[0].ports[0].number", "between 1 and 65535"),
    (plugin(match=[{"mode": "SERVER"}, {"ports": [{"number": 80}, {"number": 70000}]}]), "error", "spec.match[1].ports[1].number", "65535"),
    (plugin(match=[{"ports": [{}]}]), "error", "spec.match[0].ports[0].number", "port number is required"),
    # match.ports is a list-map keyed by number in the CRD
    (plugin(match=[{"ports": [{"number": 80}, {"number": 80}]}]), "error", "spec.match[0].ports[1].number", "duplicate port 80"),
    (plugin(selector={"matchLabels": {"istio": "ingressgateway"}}, targetRefs=[{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}]),
     "error", "spec.targetRefs", "only one of"),
    (plugin(targetRef={"kind": "Gateway", "name": "gw"}), "error", "spec.targetRef.kind", "core/Gateway"),
]


@pytest.mark.parametrize(("spec", "level", "path", "word"), CASES, ids=[f"{c[2]}:{c[3]}" for c in CASES])
def test_broken_rule_gives_one_finding_at_its_path(spec, level, path, word):
    found = findings(spec)
    assert [(f.level, f.field) for f in found] == [(level, path)], found
    assert word in found[0].message


@pytest.mark.parametrize(
    "url",
    [
        URL,
        "oci://private-registry:5000/openid-connect/openid:latest",
        "docker.io/istio/plugin:1.0",  # no scheme: Istio reads it as http://
        "file:///opt/filters/plugin.wasm",
        "/opt/filters/plugin.wasm",
        "https://storage.example.com/plugins/basic_auth.wasm",
        "http://10.0.0.1:8080/plugin.wasm",
    ],
)
def test_supported_urls_are_accepted(url):
    assert findings({"url": url}) == []


def test_complete_plugin_gives_no_finding():
    spec = plugin(
        sha256=SHA,
        imagePullPolicy="Always",
        imagePullSecret="pull-secret",
        pluginName="basic_auth",
        phase="AUTHN",
        priority=-5,
        failStrategy="FAIL_OPEN",
        type="HTTP",
        pluginConfig={"basic_auth_rules": [{"prefix": "/productpage", "request_methods": ["GET"]}]},
        vmConfig={"env": [{"name": "POD_NAME", "valueFrom": "HOST"}, {"name": "TRUST_DOMAIN", "value": "cluster.local"}]},
        match=[{"mode": "CLIENT", "ports": [{"number": 8080}, {"number": 65535}]}],
        targetRefs=[{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "bookinfo-gateway"}],
    )
    assert findings(spec) == []


def _corpus(kind: str) -> list:
    params = []
    for path in sorted([*VALIDATION_DATASET.glob("*.yaml"), *SAMPLES.rglob("*.yaml")]):
        for doc in YAML(typ="safe", pure=True).load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == kind:
                params.append(pytest.param(doc, id=f"{path.name}:{doc['metadata']['name']}"))
    return params


CORPUS = _corpus("WasmPlugin")


def test_corpus_has_istios_wasm_plugin():
    assert len(CORPUS) >= 1


@pytest.mark.parametrize("doc", CORPUS)
def test_istio_corpus_plugin_parses_and_has_no_error(doc):
    spec = WasmPlugin.model_validate(doc.get("spec") or {})
    ctx = ValidationContext(
        kind=doc["kind"], api_version=doc["apiVersion"], name=doc["metadata"]["name"],
        namespace=doc["metadata"].get("namespace", "default"),
    )
    assert [f for f in validate_spec(spec, ctx) if f.level == "error"] == []
