"""PeerAuthentication specs parse: mTLS mode by name or number, portLevelMtls keyed by port number."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from malla.api.security.peer_authentication import PeerAuthentication

YAML_SPEC = """
selector:
  matchLabels:
    app: finance
mtls:
  mode: STRICT
portLevelMtls:
  8080:
    mode: DISABLE
"""


def test_yaml_with_integer_port_keys_parses():
    spec = PeerAuthentication.model_validate(YAML(typ="safe", pure=True).load(YAML_SPEC))
    assert spec.mtls.mode == "STRICT"
    assert spec.port_level_mtls[8080].mode == "DISABLE"


def test_json_with_string_port_keys_gives_the_same_spec():
    from_json = PeerAuthentication.model_validate(
        json.loads('{"selector": {"matchLabels": {"app": "finance"}}, "mtls": {"mode": "STRICT"},'
                   ' "port_level_mtls": {"8080": {"mode": "DISABLE"}}}')
    )
    assert from_json == PeerAuthentication.model_validate(YAML(typ="safe", pure=True).load(YAML_SPEC))


@pytest.mark.parametrize(("given", "kept"), [("UNSET", "UNSET"), (0, "UNSET"), (1, "DISABLE"), (2, "PERMISSIVE"), (3, "STRICT")])
def test_mode_accepts_name_or_number(given, kept):
    assert PeerAuthentication.model_validate({"mtls": {"mode": given}}).mtls.mode == kept


def test_unknown_mode_names_the_allowed_values():
    with pytest.raises(ValidationError) as info:
        PeerAuthentication.model_validate({"mtls": {"mode": "MUTUAL"}})
    assert info.value.errors()[0]["loc"] == ("mtls", "mode")
    assert "UNSET, DISABLE, PERMISSIVE, STRICT" in str(info.value)


def test_port_key_that_is_not_a_number_is_rejected():
    with pytest.raises(ValidationError) as info:
        PeerAuthentication.model_validate({"portLevelMtls": {"http": {"mode": "STRICT"}}})
    assert info.value.errors()[0]["loc"][0] == "portLevelMtls"


def test_unknown_field_is_rejected_with_its_path():
    with pytest.raises(ValidationError) as info:
        PeerAuthentication.model_validate({"mtls": {"mode": "STRICT", "enabled": True}})
    assert info.value.errors()[0]["loc"] == ("mtls", "enabled")


def test_written_back_as_protojson_with_camel_case_keys_and_string_ports():
    spec = PeerAuthentication.model_validate({"port_level_mtls": {9080: {"mode": "STRICT"}}})
    assert spec.to_dict() == {"portLevelMtls": {"9080": {"mode": "STRICT"}}}
