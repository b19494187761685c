"""WorkloadEntry specs parse as Istio reads them: camelCase or snake_case keys, protojson integers, strict fields."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from malla.api.networking.workload_entry import WorkloadEntry

VM = """
address: vm1.vpc01.corp.net
ports: {http: 8080, grpc: "9090"}
labels: {app: details-legacy, instance-id: vm1}
network: vpc01
locality: us/us-east-1/az-1/r11
weight: "10"
serviceAccount: details-legacy
"""


def test_camel_case_document_parses_every_field():
    we = WorkloadEntry.model_validate(YAML(typ="safe", pure=True).load(VM))
    assert we.address == "vm1.vpc01.corp.net"
    assert we.ports == {"http": 8080, "grpc": 9090}
    assert we.labels == {"app": "details-legacy", "instance-id": "vm1"}
    assert (we.network, we.locality, we.weight) == ("vpc01", "us/us-east-1/az-1/r11", 10)
    assert we.service_account == "details-legacy"


def test_snake_case_keys_are_accepted_too():
    assert WorkloadEntry.model_validate({"service_account": "sa"}).service_account == "sa"


def test_unset_fields_stay_unset():
    we = WorkloadEntry.model_validate({"network": "n1"})
    assert (we.address, we.weight, we.service_account) == (None, None, None)
    assert we.ports == {} and we.labels == {}


@pytest.mark.parametrize(("spec", "loc"), [
    ({"addr": "1.1.1.1"}, ("addr",)),
    ({"serviceaccount": "sa"}, ("serviceaccount",)),
])
def test_unknown_fields_are_rejected_with_their_path(spec, loc):
    with pytest.raises(ValidationError) as err:
        WorkloadEntry.model_validate(spec)
    assert err.value.errors()[0]["loc"] == loc


@pytest.mark.parametrize("spec", [
    {"ports": {"http": -1}},
    {"ports": {"http": 2**32}},
    {"weight": True},
    {"labels": {"app": 1}},
    {"address": 10},
])
def test_wrong_types_are_rejected(spec):
    with pytest.raises(ValidationError):
        WorkloadEntry.model_validate(spec)
