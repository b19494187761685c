"""ServiceEntry specs parse as Istio reads them: camelCase or snake_case keys, enums by name or number, no stray keys."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from malla.api.networking.service_entry import ServiceEntry
from malla.api.networking.workload_entry import WorkloadEntry

MONGO = """
hosts: [mymongodb.somedomain]
addresses: [192.192.192.192/24]
ports:
- number: 27018
  name: mongodb
  protocol: MONGO
  targetPort: "27019"
location: MESH_INTERNAL
resolution: STATIC
endpoints:
- address: 2.2.2.2
  ports: {mongodb: 27020}
  labels: {app: mongo}
  locality: us/east
  weight: 2
- address: 3.3.3.3
exportTo: ["."]
subjectAltNames: ["spiffe://cluster.local/ns/db/sa/mongo"]
"""


def load(text: str) -> ServiceEntry:
    return ServiceEntry.model_validate(YAML(typ="safe", pure=True).load(text))


def test_camel_case_document_parses_every_field():
    se = load(MONGO)
    assert se.hosts == ["mymongodb.somedomain"]
    assert se.addresses == ["192.192.192.192/24"]
    assert (se.ports[0].number, se.ports[0].name, se.ports[0].protocol, se.ports[0].target_port) == (
        27018, "mongodb", "MONGO", 27019)
    assert (se.location, se.resolution) == ("MESH_INTERNAL", "STATIC")
    assert isinstance(se.endpoints[0], WorkloadEntry)
    assert se.endpoints[0].ports == {"mongodb": 27020}
    assert (se.endpoints[0].locality, se.endpoints[0].weight) == ("us/east", 2)
    assert se.export_to == ["."]
    assert se.subject_alt_names == ["spiffe://cluster.local/ns/db/sa/mongo"]
    assert se.workload_selector is None


def test_snake_case_keys_are_accepted_too():
    se = ServiceEntry.model_validate({
        "hosts": ["a.example.com"], "export_to": ["*"], "subject_alt_names": ["x"],
        "workload_selector": {"labels": {"app": "a"}}, "ports": [{"number": 80, "name": "http", "target_port": 8080}],
    })
    assert se.export_to == ["*"]
    assert se.workload_selector.labels == {"app": "a"}
    assert se.ports[0].target_port == 8080


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("resolution", 0, "NONE"), ("resolution", 3, "DNS_ROUND_ROBIN"), ("resolution", "DYNAMIC_DNS", "DYNAMIC_DNS"),
    ("location", 1, "MESH_INTERNAL"), ("location", "MESH_EXTERNAL", "MESH_EXTERNAL"),
])
def test_enums_by_name_or_number(field, value, expected):
    assert getattr(ServiceEntry.model_validate({"hosts": ["a.example.com"], field: value}), field) == expected


def test_unknown_enum_value_names_the_allowed_ones():
    with pytest.raises(ValidationError) as err:
        ServiceEntry.model_validate({"resolution": "ROUND_ROBIN"})
    assert "DNS_ROUND_ROBIN" in str(err.value)
    assert err.value.errors()[0]["loc"] == ("resolution",)


@pytest.mark.parametrize(("spec", "loc"), [
    ({"hostz": ["a"]}, ("hostz",)),
    ({"ports": [{"number": 80, "port": 80}]}, ("ports", 0, "port")),
    ({"endpoints": [{"address": "1.1.1.1", "addresss": "x"}]}, ("endpoints", 0, "addresss")),
    ({"workloadSelector": {"matchLabels": {"app": "a"}}}, ("workloadSelector", "matchLabels")),
])
def test_unknown_fields_are_rejected_with_their_path(spec, loc):
    with pytest.raises(ValidationError) as err:
        ServiceEntry.model_validate(spec)
    assert err.value.errors()[0]["loc"] == loc


@pytest.mark.parametrize("spec", [
    {"ports": [{"number": -1}]},
    {"ports": [{"number": "eighty"}]},
    {"hosts": "a.example.com"},
    {"endpoints": [{"ports": {"http": 2**32}}]},
])
def test_wrong_types_are_rejected(spec):
    with pytest.raises(ValidationError):
        ServiceEntry.model_validate(spec)


def test_unset_fields_stay_unset_and_round_trip():
    se = ServiceEntry.model_validate({"hosts": ["a.example.com"]})
    assert (se.resolution, se.location, se.workload_selector) == (None, None, None)
    assert se.ports == [] and se.endpoints == []
    assert se.to_dict() == {"hosts": ["a.example.com"], "addresses": [], "ports": [], "endpoints": [],
                            "exportTo": [], "subjectAltNames": []}
    assert ServiceEntry.model_validate(load(MONGO).to_dict()) == load(MONGO)
