"""WorkloadSelector, PolicyTargetReference, PortSelector and WorkloadMode parse as Istio's YAML writes them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from malla.api.security.common import PolicyTargetReference, PortSelector, WorkloadSelector


def test_selector_labels_parse_in_camel_and_snake_case():
    camel = WorkloadSelector.model_validate({"matchLabels": {"app": "httpbin"}})
    snake = WorkloadSelector.model_validate({"match_labels": {"app": "httpbin"}})
    assert camel == snake
    assert camel.match_labels == {"app": "httpbin"}
    assert camel.to_dict() == {"matchLabels": {"app": "httpbin"}}


def test_selector_label_values_must_be_strings():
    with pytest.raises(ValidationError) as info:
        WorkloadSelector.model_validate({"matchLabels": {"version": 1}})
    assert info.value.errors()[0]["loc"] == ("matchLabels", "version")


def test_target_ref_keeps_unset_fields_visible():
    ref = PolicyTargetReference.model_validate({"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"})
    assert (ref.group, ref.kind, ref.name, ref.namespace) == ("gateway.networking.k8s.io", "Gateway", "gw", None)


def test_target_ref_unknown_field_is_rejected_with_its_name():
    with pytest.raises(ValidationError) as info:
        PolicyTargetReference.model_validate({"kind": "Service", "name": "a", "sectionName": "http"})
    assert info.value.errors()[0]["loc"] == ("sectionName",)


def test_port_selector_accepts_a_numeric_string_as_protojson_does():
    assert PortSelector.model_validate({"number": "8080"}).number == 8080
