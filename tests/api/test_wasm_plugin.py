"""WasmPlugin specs parse: enums (including the camel-case PullPolicy names), Struct config, match, vmConfig."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from malla.api.extensions.wasm_plugin import WasmPlugin

FULL = """
selector:
  matchLabels:
    istio: ingressgateway
url: oci://private-registry:5000/openid-connect/openid:latest
sha256: 2b2f1eb8b9f5a8e4e9a8f0c2f5d6a3c1b7e9d2f4a6c8e0b1d3f5a7c9e1b3d5f7
imagePullPolicy: IfNotPresent
imagePullSecret: private-registry-pull-secret
phase: AUTHN
priority: 10
failStrategy: FAIL_OPEN
type: HTTP
pluginName: openid
pluginConfig:
  openid_server: authn
  nested: {list: [1, 2], flag: true}
vmConfig:
  env:
  - name: POD_NAME
    valueFrom: HOST
  - name: TRUST_DOMAIN
    value: cluster.local
match:
- mode: SERVER
  ports:
  - number: 8080
"""


def _full() -> WasmPlugin:
    return WasmPlugin.model_validate(YAML(typ="safe", pure=True).load(FULL))


def test_every_field_parses():
    spec = _full()
    assert spec.url.startswith("oci://")
    assert spec.image_pull_policy == "IfNotPresent"
    assert spec.phase == "AUTHN" and spec.priority == 10 and spec.fail_strategy == "FAIL_OPEN"
    assert spec.type == "HTTP"
    assert spec.plugin_config == {"openid_server": "authn", "nested": {"list": [1, 2], "flag": True}}
    assert spec.vm_config.env[0].value_from == "HOST" and spec.vm_config.env[1].value_from is None
    assert spec.match[0].mode == "SERVER" and spec.match[0].ports[0].number == 8080


def test_round_trip_keeps_the_yaml_keys():
    data = _full().to_dict()
    assert data["imagePullPolicy"] == "IfNotPresent"
    assert data["vmConfig"]["env"][0] == {"name": "POD_NAME", "valueFrom": "HOST"}
    assert WasmPlugin.model_validate(data) == _full()


@pytest.mark.parametrize(
    ("field", "given", "kept"),
    [
        ("phase", 2, "AUTHZ"),
        ("phase", "STATS", "STATS"),
        ("imagePullPolicy", 2, "Always"),
        ("failStrategy", "FAIL_RELOAD", "FAIL_RELOAD"),
        ("type", 2, "NETWORK"),
    ],
)
def test_enums_accept_name_or_number(field, given, kept):
    spec = WasmPlugin.model_validate({"url": "oci://r/p", field: given})
    assert spec.to_dict()[field] == kept


def test_match_mode_uses_istio_type_numbering():
    spec = WasmPlugin.model_validate({"url": "oci://r/p", "match": [{"mode": 3}]})
    assert spec.match[0].mode == "CLIENT_AND_SERVER"


def test_pull_policy_name_is_case_sensitive():
    with pytest.raises(ValidationError) as info:
        WasmPlugin.model_validate({"url": "oci://r/p", "imagePullPolicy": "ALWAYS"})
    assert info.value.errors()[0]["loc"] == ("imagePullPolicy",)
    assert "IfNotPresent" in str(info.value)


def test_priority_is_a_32_bit_integer():
    with pytest.raises(ValidationError) as info:
        WasmPlugin.model_validate({"url": "oci://r/p", "priority": 2**31})
    assert info.value.errors()[0]["loc"] == ("priority",)


def test_unknown_field_is_rejected_with_its_path():
    with pytest.raises(ValidationError) as info:
        WasmPlugin.model_validate({"url": "oci://r/p", "vmConfig": {"env": [{"name": "A", "valueFromHost": True}]}})
    assert info.value.errors()[0]["loc"] == ("vmConfig", "env", 0, "valueFromHost")


def test_snake_case_keys_are_accepted():
    spec = WasmPlugin.model_validate({"url": "file:///p.wasm", "plugin_name": "p", "vm_config": {"env": [{"name": "A", "value_from": 1}]}})
    assert spec.plugin_name == "p" and spec.vm_config.env[0].value_from == "HOST"
