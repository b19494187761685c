"""TrafficExtension rules: one of wasm/lua, Wasm module settings, Lua code, selection, traffic selector ports."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from malla.api.extensions.traffic_extension import TrafficExtension
from malla.config.validation import Finding, ValidationContext, validate_spec
from tests.conformance import SAMPLES, VALIDATION_DATASET

URL = "oci://ghcr.io/istio-ecosystem/wasm-extensions/basic_auth:1.12.0"
SHA = "0123456789abcdef" * 4
CODE = 'function envoy_on_request(h)\n  h:headers():add("x-lua", "1")\nend\n'
GATEWAY = {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}


def findings(spec: dict) -> list[Finding]:
    ctx = ValidationContext(
        kind="TrafficExtension", api_version="extensions.istio.io/v1alpha1", name="t", namespace="default"
    )
    return validate_spec(TrafficExtension.model_validate(spec), ctx)


def lua(code: str = CODE, **fields) -> dict:
    return {"lua": {"inlineCode": code}, **fields}


def wasm(**settings) -> dict:
    return {"wasm": {"url": URL, **settings}}


def env(*variables: dict) -> dict:
    return wasm(vmConfig={"env": list(variables)})


CASES = [
    # filter_config oneof
    ({}, "error", "spec", "exactly one of wasm or lua"),
    ({"phase": "AUTHN", "priority": 10}, "error", "spec", "exactly one of wasm or lua"),
    ({**lua(), **wasm()}, "error", "spec.lua", "found both"),
    # lua
    ({"lua": {}}, "error", "spec.lua.inlineCode", "inlineCode is required"),
    (lua(""), "error", "spec.lua.inlineCode", "inlineCode is required"),
    (lua("-- envoy_on_request\n" + "x" * 65536), "error", "spec.lua.inlineCode", "65536"),
    # 33k characters but 66k bytes: the limit is on the UTF-8 size istiod measures
    (lua("-- " + "é" * 33000 + "\nfunction envoy_on_response(h) end"), "error", "spec.lua.inlineCode", "66037 bytes"),
    (lua("function on_request(h) end"), "warning", "spec.lua.inlineCode", "neither envoy_on_request nor envoy_on_response"),
    # wasm module
    ({"wasm": {}}, "error", "spec.wasm.url", "url is required"),
    ({"wasm": {"url": ""}}, "error", "spec.wasm.url", "url is required"),
    ({"wasm": {"url": "ftp://example.com/plugin.wasm"}}, "error", "spec.wasm.url", "scheme 'ftp'"),
    ({"wasm": {"url": "oci:///plugin:v1"}}, "error", "spec.wasm.url", "no host"),
    ({"wasm": {"url": "https://example.com/my plugin.wasm"}}, "error", "spec.wasm.url", "spaces"),
    (wasm(sha256="abc"), "error", "spec.wasm.sha256", "64 lower-case hex"),
    (wasm(sha256=SHA.upper()), "error", "spec.wasm.sha256", "64 lower-case hex"),
    (wasm(imagePullSecret=""), "error", "spec.wasm.imagePullSecret", "must not be empty"),
    (wasm(imagePullSecret="s" * 254), "error", "spec.wasm.imagePullSecret", "at most 253"),
    (wasm(pluginName=""), "error", "spec.wasm.pluginName", "must not be empty"),
    (wasm(pluginName="p" * 257), "error", "spec.wasm.pluginName", "at most 256"),
    # wasm VM environment
    (env({"value": "x"}), "error", "spec.wasm.vmConfig.env[0].name", "name is required"),
    (env({"name": "N" * 257}), "error", "spec.wasm.vmConfig.env[0].name", "at most 256"),
    (env({"name": "A"}, {"name": "A", "value": "b"}), "error", "spec.wasm.vmConfig.env[1].name", "duplicate"),
    (env({"name": "A", "valueFrom": "HOST", "value": "b"}), "error", "spec.wasm.vmConfig.env[0].value", "valueFrom is INLINE"),
    (env({"name": "A", "value": "v" * 2049}), "error", "spec.wasm.vmConfig.env[0].value", "at most 2048"),
    (env(*({"name": f"E{i}"} for i in range(257))), "error", "spec.wasm.vmConfig.env", "at most 256"),
    # traffic selectors
    (lua(match=[{"ports": [{"number": 0}]}]), "error", "spec.match[0].ports[0].number", "between 1 and 65535"),
    (lua(match=[{"mode": "SERVER"}, {"ports": [{"number": 80}, {"number": 70000}]}]), "error", "spec.match[1].ports[1].number", "65535"),
    (lua(match=[{"ports": [{}]}]), "error", "spec.match[0].ports[0].number", "port number is required"),
    (lua(match=[{"ports": [{"number": 80}, {"number": 80}]}]), "error", "spec.match[0].ports[1].number", "duplicate port 80"),
    # selection
    (lua(selector={"matchLabels": {"app": "x"}}, targetRefs=[GATEWAY]), "error", "spec.targetRefs", "only one of"),
    (lua(targetRefs=[{"kind": "Gateway", "name": "gw"}]), "error", "spec.targetRefs[0].kind", "core/Gateway"),
    (lua(targetRefs=[{**GATEWAY, "namespace": "other"}]), "error", "spec.targetRefs[0].namespace", "cross-namespace"),
    (lua(targetRefs=[{"kind": "Service"}]), "error", "spec.targetRefs[0].name", "name is required"),
    (lua(targetRefs=[{**GATEWAY, "name": f"gw{i}"} for i in range(17)]), "error", "spec.targetRefs", "at most 16"),
    (lua(selector={"matchLabels": {"app": "*"}}), "error", "spec.selector.matchLabels[app]", "wildcard"),
    (lua(selector={}), "warning", "spec.selector", "every workload"),
]


@pytest.mark.parametrize(("spec", "level", "path", "word"), CASES, ids=[f"{c[2]}:{c[3]}" for c in CASES])
def test_broken_rule_gives_one_finding_at_its_path(spec, level, path, word):
    found = findings(spec)
    assert [(f.level, f.field) for f in found] == [(level, path)], found
    assert word in found[0].message


@pytest.mark.parametrize(
    "code",
    [
        CODE,
        "function envoy_on_response(response_handle)\n  response_handle:logInfo('done')\nend",
        "envoy_on_request = function(h) end",
        "-- " + "x" * 65000 + "\nfunction envoy_on_request(h) end",
    ],
    ids=["request", "response", "assigned", "near-the-limit"],
)
def test_lua_scripts_with_an_entry_point_are_accepted(code):
    assert findings(lua(code)) == []


@pytest.mark.parametrize(
    "url",
    [URL, "docker.io/istio/plugin:1.0", "file:///opt/filters/plugin.wasm", "https://storage.example.com/p.wasm"],
)
def test_supported_wasm_urls_are_accepted(url):
    assert findings({"wasm": {"url": url}}) == []


def test_complete_wasm_extension_gives_no_finding():
    spec = wasm(
        sha256=SHA,
        imagePullPolicy="IfNotPresent",
        imagePullSecret="pull-secret",
        pluginName="basic_auth",
        pluginConfig={"basic_auth_rules": [{"prefix": "/productpage", "request_methods": ["GET"]}]},
        failStrategy="FAIL_OPEN",
        vmConfig={"env": [{"name": "POD_NAME", "valueFrom": "HOST"}, {"name": "TRUST_DOMAIN", "value": "cluster.local"}]},
        type="HTTP",
    )
    spec.update(
        phase="AUTHN",
        priority=-5,
        match=[{"mode": "CLIENT", "ports": [{"number": 8080}, {"number": 65535}]}],
        targetRefs=[GATEWAY, {"kind": "Service", "name": "reviews"}],
    )
    assert findings(spec) == []


def test_lua_extension_on_a_selected_workload_gives_no_finding():
    spec = lua(selector={"matchLabels": {"app": "productpage"}}, phase="STATS", priority=2**31 - 1, match=[{"mode": "SERVER"}])
    assert findings(spec) == []


def _corpus(kind: str) -> list:
    params = []
    for path in sorted([*VALIDATION_DATASET.glob("*.yaml"), *SAMPLES.rglob("*.yaml")]):
        for doc in YAML(typ="safe", pure=True).load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == kind:
                params.append(pytest.param(doc, id=f"{path.name}:{doc['metadata']['name']}"))
    return params


CORPUS = _corpus("TrafficExtension")


def test_corpus_has_istios_traffic_extension():
    assert len(CORPUS) >= 1


@pytest.mark.parametrize("doc", CORPUS)
def test_istio_corpus_extension_parses_and_has_no_error(doc):
    spec = TrafficExtension.model_validate(doc.get("spec") or {})
    ctx = ValidationContext(
        kind=doc["kind"], api_version=doc["apiVersion"], name=doc["metadata"]["name"],
        namespace=doc["metadata"].get("namespace", "default"),
    )
    assert [f for f in validate_spec(spec, ctx) if f.level == "error"] == []
