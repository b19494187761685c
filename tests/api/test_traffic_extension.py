"""TrafficExtension specs parse: both filter kinds (wasm, lua), the nested ExecutionPhase enum, match, targetRefs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from malla.api.extensions.traffic_extension import TrafficExtension

WASM = """
selector:
  matchLabels:
    istio: ingressgateway
phase: AUTHZ
priority: 1000
match:
- mode: CLIENT
  ports:
  - number: 8080
  - number: 8081
wasm:
  url: oci://private-registry:5000/acl-check/acl:latest
  sha256: 1ef0c9a92b0420cf25f7fe5d481b231464bc88f486ca3b9c83ed5cc21d2f6210
  imagePullPolicy: Always
  imagePullSecret: private-registry-pull-secret
  verificationKey: key
  pluginName: acl
  pluginConfig:
    acl_server: some_server
    rules: [{prefix: /admin}]
  failStrategy: FAIL_OPEN
  vmConfig:
    env:
    - name: POD_NAME
      valueFrom: HOST
    - name: TRUST_DOMAIN
      value: cluster.local
  type: HTTP
"""

LUA = """
targetRefs:
- kind: Service
  name: reviews
match:
- mode: SERVER
phase: STATS
lua:
  inlineCode: |
    function envoy_on_request(request_handle)
      request_handle:logInfo("hello")
    end
"""


def _load(text: str) -> TrafficExtension:
    return TrafficExtension.model_validate(YAML(typ="safe", pure=True).load(text))


def test_every_wasm_field_parses():
    spec = _load(WASM)
    assert spec.selector.match_labels == {"istio": "ingressgateway"}
    assert spec.phase == "AUTHZ" and spec.priority == 1000
    assert spec.match[0].mode == "CLIENT" and [p.number for p in spec.match[0].ports] == [8080, 8081]
    wasm = spec.wasm
    assert wasm.url.startswith("oci://") and wasm.sha256.startswith("1ef0")
    assert wasm.image_pull_policy == "Always" and wasm.image_pull_secret == "private-registry-pull-secret"
    assert wasm.verification_key == "key" and wasm.plugin_name == "acl"
    assert wasm.plugin_config == {"acl_server": "some_server", "rules": [{"prefix": "/admin"}]}
    assert wasm.fail_strategy == "FAIL_OPEN" and wasm.type == "HTTP"
    assert wasm.vm_config.env[0].value_from == "HOST" and wasm.vm_config.env[1].value == "cluster.local"
    assert spec.lua is None and spec.target_refs == []


def test_lua_filter_with_target_refs_parses():
    spec = _load(LUA)
    assert spec.target_refs[0].kind == "Service" and spec.target_refs[0].name == "reviews"
    assert spec.phase == "STATS" and spec.match[0].mode == "SERVER" and spec.match[0].ports == []
    assert spec.lua.inline_code.startswith("function envoy_on_request(request_handle)\n")
    assert spec.wasm is None and spec.selector is None and spec.priority is None


@pytest.mark.parametrize("text", [WASM, LUA], ids=["wasm", "lua"])
def test_round_trip_keeps_the_yaml_keys(text):
    spec = _load(text)
    data = spec.to_dict()
    assert ("inlineCode" in data["lua"]) if spec.lua else ("imagePullPolicy" in data["wasm"])
    assert TrafficExtension.model_validate(data) == spec


@pytest.mark.parametrize(
    ("given", "kept"),
    [(0, "UNSPECIFIED"), (1, "AUTHN"), ("AUTHZ", "AUTHZ"), (3, "STATS"), ("UNSPECIFIED", "UNSPECIFIED")],
)
def test_phase_accepts_name_or_number(given, kept):
    assert TrafficExtension.model_validate({"phase": given}).phase == kept


@pytest.mark.parametrize("bad", ["UNSPECIFIED_PHASE", "authn", 4])
def test_phase_outside_execution_phase_is_rejected(bad):
    # WasmPlugin's zero value is UNSPECIFIED_PHASE; TrafficExtension's ExecutionPhase spells it UNSPECIFIED.
    with pytest.raises(ValidationError) as info:
        TrafficExtension.model_validate({"phase": bad})
    assert info.value.errors()[0]["loc"] == ("phase",)
    assert "AUTHN" in str(info.value)


@pytest.mark.parametrize(
    ("field", "given", "kept"),
    [("imagePullPolicy", 1, "IfNotPresent"), ("failStrategy", 2, "FAIL_RELOAD"), ("type", 2, "NETWORK")],
)
def test_wasm_enums_accept_name_or_number(field, given, kept):
    spec = TrafficExtension.model_validate({"wasm": {"url": "oci://r/p", field: given}})
    assert spec.to_dict()["wasm"][field] == kept


def test_priority_is_a_32_bit_integer():
    assert TrafficExtension.model_validate({"priority": "-7"}).priority == -7
    with pytest.raises(ValidationError) as info:
        TrafficExtension.model_validate({"priority": 2**31})
    assert info.value.errors()[0]["loc"] == ("priority",)


@pytest.mark.parametrize(
    ("spec", "loc"),
    [
        ({"lua": {"inlineCode": "x", "sourceCode": "y"}}, ("lua", "sourceCode")),
        ({"wasm": {"url": "oci://r/p", "vmConfig": {"env": [{"name": "A", "fromHost": True}]}}}, ("wasm", "vmConfig", "env", 0, "fromHost")),
        ({"targetRef": {"kind": "Service", "name": "reviews"}}, ("targetRef",)),
        ({"url": "oci://r/p"}, ("url",)),
    ],
    ids=["lua", "vmConfig", "targetRef-is-not-a-field", "wasmplugin-url-at-top"],
)
def test_unknown_field_is_rejected_with_its_path(spec, loc):
    with pytest.raises(ValidationError) as info:
        TrafficExtension.model_validate(spec)
    assert info.value.errors()[0]["loc"] == loc


def test_snake_case_keys_are_accepted():
    spec = TrafficExtension.model_validate(
        {"target_refs": [{"kind": "Gateway", "name": "gw"}], "lua": {"inline_code": "x"}, "wasm": {"plugin_name": "p"}}
    )
    assert spec.target_refs[0].name == "gw" and spec.lua.inline_code == "x" and spec.wasm.plugin_name == "p"


def test_inline_code_must_be_a_string():
    with pytest.raises(ValidationError) as info:
        TrafficExtension.model_validate({"lua": {"inlineCode": 42}})
    assert info.value.errors()[0]["loc"] == ("lua", "inlineCode")
