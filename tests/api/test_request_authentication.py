"""RequestAuthentication specs parse: every JWTRule field, jwks_uri in either spelling, Go durations."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from malla.api.security.request_authentication import RequestAuthentication

FULL = """
selector:
  matchLabels:
    app: httpbin
jwtRules:
- issuer: https://example.com
  audiences: [bookstore_android.apps.example.com]
  jwksUri: https://example.com/.well-known/jwks.json
  fromHeaders:
  - name: x-jwt-assertion
    prefix: "Bearer "
  fromParams: [my_token]
  fromCookies: [session]
  outputPayloadToHeader: x-jwt-payload
  forwardOriginalToken: true
  outputClaimToHeaders:
  - header: x-sub
    claim: sub
  timeout: 1.5s
  spaceDelimitedClaims: [scope]
"""


def test_every_jwt_rule_field_parses():
    spec = RequestAuthentication.model_validate(YAML(typ="safe", pure=True).load(FULL))
    rule = spec.jwt_rules[0]
    assert rule.issuer == "https://example.com"
    assert rule.jwks_uri == "https://example.com/.well-known/jwks.json"
    assert rule.from_headers[0].name == "x-jwt-assertion" and rule.from_headers[0].prefix == "Bearer "
    assert rule.from_params == ["my_token"] and rule.from_cookies == ["session"]
    assert rule.forward_original_token is True
    assert rule.output_claim_to_headers[0].claim == "sub"
    assert rule.timeout.millis == 1500
    assert rule.space_delimited_claims == ["scope"]


def test_jwks_uri_may_be_spelled_as_in_the_proto():
    rule = RequestAuthentication.model_validate({"jwtRules": [{"issuer": "a", "jwks_uri": "https://a/keys"}]}).jwt_rules[0]
    assert rule.jwks_uri == "https://a/keys"


@pytest.mark.parametrize(("text", "millis"), [("100ms", 100), ("2s", 2000), ("1m", 60_000), ("1h30m", 5_400_000)])
def test_timeout_accepts_go_durations(text, millis):
    rule = RequestAuthentication.model_validate({"jwtRules": [{"issuer": "a", "timeout": text}]}).jwt_rules[0]
    assert rule.timeout.millis == millis


def test_bad_timeout_names_the_field_and_the_accepted_forms():
    with pytest.raises(ValidationError) as info:
        RequestAuthentication.model_validate({"jwtRules": [{"issuer": "a", "timeout": "5 seconds"}]})
    assert info.value.errors()[0]["loc"] == ("jwtRules", 0, "timeout")
    assert "100ms" in str(info.value)


def test_forward_original_token_must_be_a_boolean():
    with pytest.raises(ValidationError) as info:
        RequestAuthentication.model_validate({"jwtRules": [{"issuer": "a", "forwardOriginalToken": "yes"}]})
    assert info.value.errors()[0]["loc"] == ("jwtRules", 0, "forwardOriginalToken")


def test_unknown_field_is_rejected_with_its_path():
    with pytest.raises(ValidationError) as info:
        RequestAuthentication.model_validate({"jwtRules": [{"issuer": "a", "jwtHeaders": ["x"]}]})
    assert info.value.errors()[0]["loc"] == ("jwtRules", 0, "jwtHeaders")


def test_target_refs_parse():
    spec = RequestAuthentication.model_validate({"targetRefs": [{"kind": "Service", "name": "reviews"}]})
    assert spec.target_refs[0].kind == "Service" and spec.selector is None
