"""ProxyConfig specs parse as Istio reads them: camelCase or snake_case keys, wrapper integers, strict fields."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from malla.api.networking.proxy_config import ProxyConfig

PER_WORKLOAD = """
selector:
  matchLabels: {app: ratings}
concurrency: 0
environmentVariables: {ISTIO_META_FOO: bar}
image:
  imageType: debug
"""


def test_camel_case_document_parses_every_field():
    pc = ProxyConfig.model_validate(YAML(typ="safe", pure=True).load(PER_WORKLOAD))
    assert pc.selector.match_labels == {"app": "ratings"}
    assert pc.concurrency == 0  # set to 0 (all cores) is not the same as unset
    assert pc.environment_variables == {"ISTIO_META_FOO": "bar"}
    assert pc.image.image_type == "debug"
    assert pc.target_ref is None


def test_snake_case_keys_and_target_ref():
    pc = ProxyConfig.model_validate({
        "environment_variables": {"A": "b"}, "image": {"image_type": "distroless"},
        "targetRef": {"kind": "Gateway", "name": "waypoint", "group": "gateway.networking.k8s.io"},
    })
    assert pc.environment_variables == {"A": "b"}
    assert pc.image.image_type == "distroless"
    assert (pc.target_ref.kind, pc.target_ref.name) == ("Gateway", "waypoint")


def test_concurrency_is_an_optional_int32():
    assert ProxyConfig.model_validate({}).concurrency is None
    assert ProxyConfig.model_validate({"concurrency": "4"}).concurrency == 4
    assert ProxyConfig.model_validate({"concurrency": -1}).concurrency == -1
    with pytest.raises(ValidationError):
        ProxyConfig.model_validate({"concurrency": 2**31})


@pytest.mark.parametrize(("spec", "loc"), [
    ({"selector": {"labels": {"app": "a"}}}, ("selector", "labels")),
    ({"image": {"hub": "docker.io/istio"}}, ("image", "hub")),
    ({"targetRefs": []}, ("targetRefs",)),
])
def test_unknown_fields_are_rejected_with_their_path(spec, loc):
    with pytest.raises(ValidationError) as err:
        ProxyConfig.model_validate(spec)
    assert err.value.errors()[0]["loc"] == loc


@pytest.mark.parametrize("spec", [
    {"environmentVariables": {"A": 1}},
    {"concurrency": True},
    {"image": "debug"},
])
def test_wrong_types_are_rejected(spec):
    with pytest.raises(ValidationError):
        ProxyConfig.model_validate(spec)
