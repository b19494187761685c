"""AuthorizationPolicy specs parse as Istio writes them: camelCase or snake_case, `from`, enum names or numbers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from malla.api.security.authorization_policy import AuthorizationPolicy

DOC_EXAMPLE = """
selector:
  matchLabels:
    app: httpbin
action: ALLOW
rules:
- from:
  - source:
      principals: ["cluster.local/ns/default/sa/sleep"]
      notIpBlocks: ["203.0.113.4"]
  - source:
      namespaces: ["test"]
  to:
  - operation:
      methods: ["GET"]
      paths: ["/info*"]
      notPorts: ["9000"]
  when:
  - key: request.auth.claims[iss]
    values: ["https://accounts.google.com"]
"""


def _load(text: str) -> dict:
    return YAML(typ="safe", pure=True).load(text)


def test_istio_doc_example_parses_with_every_field_in_place():
    policy = AuthorizationPolicy.model_validate(_load(DOC_EXAMPLE))
    assert policy.action == "ALLOW"
    assert policy.selector.match_labels == {"app": "httpbin"}
    rule = policy.rules[0]
    assert rule.from_[0].source.principals == ["cluster.local/ns/default/sa/sleep"]
    assert rule.from_[0].source.not_ip_blocks == ["203.0.113.4"]
    assert rule.from_[1].source.namespaces == ["test"]
    assert rule.to[0].operation.not_ports == ["9000"]
    assert rule.when[0].key == "request.auth.claims[iss]"


def test_from_is_written_back_as_from():
    policy = AuthorizationPolicy.model_validate(_load(DOC_EXAMPLE))
    assert "from" in policy.to_dict()["rules"][0]
    assert "from_" not in policy.to_dict()["rules"][0]


def test_snake_case_keys_give_the_same_policy():
    camel = AuthorizationPolicy.model_validate(
        {"targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}],
         "rules": [{"from": [{"source": {"notRequestPrincipals": ["*"], "serviceAccounts": ["ns/sa"]}}]}]}
    )
    snake = AuthorizationPolicy.model_validate(
        {"target_refs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}],
         "rules": [{"from": [{"source": {"not_request_principals": ["*"], "service_accounts": ["ns/sa"]}}]}]}
    )
    assert camel == snake


def test_unset_fields_stay_unset():
    policy = AuthorizationPolicy.model_validate({})
    assert policy.action is None and policy.selector is None and policy.provider is None
    assert policy.rules == [] and policy.target_refs == []


@pytest.mark.parametrize(("given", "kept"), [("DENY", "DENY"), (1, "DENY"), (2, "AUDIT"), ("CUSTOM", "CUSTOM"), (0, "ALLOW")])
def test_action_accepts_name_or_number(given, kept):
    assert AuthorizationPolicy.model_validate({"action": given}).action == kept


def test_unknown_action_names_the_allowed_values():
    with pytest.raises(ValidationError) as info:
        AuthorizationPolicy.model_validate({"action": "REJECT"})
    assert info.value.errors()[0]["loc"] == ("action",)
    assert "ALLOW, DENY, AUDIT, CUSTOM" in str(info.value)


def test_unknown_field_is_rejected_with_its_path():
    with pytest.raises(ValidationError) as info:
        AuthorizationPolicy.model_validate({"rules": [{"from": [{"source": {"principal": ["x"]}}]}]})
    assert info.value.errors()[0]["loc"] == ("rules", 0, "from", 0, "source", "principal")


def test_a_port_written_as_a_number_is_rejected_like_kubectl_does():
    with pytest.raises(ValidationError) as info:
        AuthorizationPolicy.model_validate({"rules": [{"to": [{"operation": {"ports": [8080]}}]}]})
    assert info.value.errors()[0]["loc"] == ("rules", 0, "to", 0, "operation", "ports", 0)


def test_custom_provider_parses():
    policy = AuthorizationPolicy.model_validate({"action": "CUSTOM", "provider": {"name": "ext-authz"}, "rules": [{}]})
    assert policy.provider.name == "ext-authz"
    assert policy.rules[0].from_ == []
