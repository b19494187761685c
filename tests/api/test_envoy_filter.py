"""EnvoyFilter specs parse as Istio reads them: camelCase or snake_case keys, enums by name or number, strict fields."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from malla.api.networking.envoy_filter import EnvoyFilter

LUA = """
workloadSelector:
  labels: {app: reviews}
priority: -5
configPatches:
- applyTo: HTTP_FILTER
  match:
    context: SIDECAR_INBOUND
    proxy:
      proxyVersion: '^1\\.2.*'
      metadata: {ROUTER_MODE: sni-dnat}
    listener:
      portNumber: 8080
      name: virtualInbound
      listenerFilter: envoy.filters.listener.tls_inspector
      filterChain:
        name: inbound
        sni: reviews.example.com
        transportProtocol: tls
        applicationProtocols: h2,http/1.1
        destinationPort: 9080
        filter:
          name: envoy.filters.network.http_connection_manager
          subFilter:
            name: envoy.filters.http.router
  patch:
    operation: INSERT_BEFORE
    filterClass: AUTHN
    value:
      name: envoy.lua
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
        inlineCode: |
          function envoy_on_request(request_handle) end
- applyTo: HTTP_ROUTE
  match:
    routeConfiguration:
      portNumber: 80
      portName: http
      gateway: istio-system/gw
      name: "80"
      vhost:
        name: reviews:80
        domainName: reviews.example.com
        route: {name: default, action: DIRECT_RESPONSE}
  patch: {operation: MERGE, value: {route: {timeout: 0.5s}}}
- applyTo: CLUSTER
  match:
    cluster: {portNumber: 9080, service: reviews.default.svc.cluster.local, subset: v1, name: outbound|9080|v1|reviews}
  patch: {operation: REMOVE}
- applyTo: HTTP_FILTER
  match:
    context: WAYPOINT
    waypoint:
      portNumber: 8080
      route: {name: default}
      filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: envoy.filters.http.router}}
  patch: {operation: INSERT_FIRST, value: {name: x}}
"""


def load() -> EnvoyFilter:
    return EnvoyFilter.model_validate(YAML(typ="safe", pure=True).load(LUA))


def test_camel_case_document_parses_every_field():
    ef = load()
    assert ef.workload_selector.labels == {"app": "reviews"}
    assert ef.priority == -5
    http, route, cluster, waypoint = ef.config_patches
    assert (http.apply_to, http.match.context) == ("HTTP_FILTER", "SIDECAR_INBOUND")
    assert http.match.proxy.metadata == {"ROUTER_MODE": "sni-dnat"}
    listener = http.match.listener
    assert (listener.port_number, listener.name, listener.listener_filter) == (
        8080, "virtualInbound", "envoy.filters.listener.tls_inspector")
    chain = listener.filter_chain
    assert (chain.sni, chain.transport_protocol, chain.application_protocols, chain.destination_port) == (
        "reviews.example.com", "tls", "h2,http/1.1", 9080)
    assert chain.filter.sub_filter.name == "envoy.filters.http.router"
    assert (http.patch.operation, http.patch.filter_class) == ("INSERT_BEFORE", "AUTHN")
    assert http.patch.value["typed_config"]["inlineCode"].startswith("function")
    vhost = route.match.route_configuration.vhost
    assert (vhost.domain_name, vhost.route.action) == ("reviews.example.com", "DIRECT_RESPONSE")
    assert route.match.route_configuration.gateway == "istio-system/gw"
    assert cluster.match.cluster.subset == "v1" and cluster.patch.value is None
    assert (waypoint.match.context, waypoint.match.waypoint.port_number) == ("WAYPOINT", 8080)
    assert waypoint.match.waypoint.route.name == "default"


def test_snake_case_keys_are_accepted_too():
    ef = EnvoyFilter.model_validate({
        "workload_selector": {"labels": {"app": "a"}},
        "config_patches": [{"apply_to": "LISTENER", "match": {"listener": {"filter_chain": {"filter": {
            "name": "f", "sub_filter": {"name": "s"}}}}}, "patch": {"operation": "MERGE", "value": {},
                                                                   "filter_class": "STATS"}}],
        "target_refs": [],
    })
    assert ef.config_patches[0].match.listener.filter_chain.filter.sub_filter.name == "s"
    assert ef.config_patches[0].patch.filter_class == "STATS"


@pytest.mark.parametrize(("patch", "read", "name"), [
    ({"applyTo": 4}, lambda cp: cp.apply_to, "HTTP_FILTER"),
    ({"applyTo": 10}, lambda cp: cp.apply_to, "BOOTSTRAP"),
    ({"applyTo": 11}, lambda cp: cp.apply_to, "LISTENER_FILTER"),
    ({"match": {"context": 3}}, lambda cp: cp.match.context, "GATEWAY"),
    ({"match": {"context": 4}}, lambda cp: cp.match.context, "WAYPOINT"),
    ({"patch": {"operation": 6}}, lambda cp: cp.patch.operation, "INSERT_FIRST"),
    ({"patch": {"operation": 7}}, lambda cp: cp.patch.operation, "REPLACE"),
    ({"patch": {"filterClass": 2}}, lambda cp: cp.patch.filter_class, "AUTHZ"),
    ({"match": {"routeConfiguration": {"vhost": {"route": {"action": 2}}}}},
     lambda cp: cp.match.route_configuration.vhost.route.action, "REDIRECT"),
])
def test_enums_by_number_read_as_names(patch, read, name):
    assert read(EnvoyFilter.model_validate({"configPatches": [patch]}).config_patches[0]) == name


@pytest.mark.parametrize(("spec", "loc"), [
    ({"workloadLabels": {"app": "a"}}, ("workloadLabels",)),  # removed from the proto (reserved)
    ({"filters": []}, ("filters",)),
    ({"configPatches": [{"applyTo": "CLUSTER", "match": {"cluster": {"host": "x"}}}]},
     ("configPatches", 0, "match", "cluster", "host")),
    ({"configPatches": [{"patch": {"operation": "ADD", "valeu": {}}}]}, ("configPatches", 0, "patch", "valeu")),
])
def test_unknown_fields_are_rejected_with_their_path(spec, loc):
    with pytest.raises(ValidationError) as err:
        EnvoyFilter.model_validate(spec)
    assert err.value.errors()[0]["loc"] == loc


@pytest.mark.parametrize("spec", [
    {"configPatches": [{"applyTo": "SOMETHING"}]},
    {"configPatches": [{"match": {"context": "SIDECAR"}}]},
    {"configPatches": [{"patch": {"operation": 99}}]},
    {"configPatches": [{"patch": {"value": "not an object"}}]},
    {"priority": 2**31},
])
def test_wrong_values_are_rejected(spec):
    with pytest.raises(ValidationError):
        EnvoyFilter.model_validate(spec)


def test_patch_values_round_trip_unchanged():
    ef = load()
    again = EnvoyFilter.model_validate(ef.to_dict())
    assert again == ef
    assert again.config_patches[1].patch.value == {"route": {"timeout": "0.5s"}}
