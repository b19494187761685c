"""EnvoyFilter rules: each broken rule gives a finding at its field path; Istio's own filters give no errors."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from malla.api.networking.envoy_filter import EnvoyFilter
from malla.config.validation import Finding, ValidationContext, validate_spec
from tests.conformance import SAMPLES, VALIDATION_DATASET

HCM = "envoy.filters.network.http_connection_manager"
CP = "spec.configPatches[0]"
EXT_AUTHZ = {
    "name": "envoy.filters.http.ext_authz",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "grpc_service": {"envoy_grpc": {"cluster_name": "acme-ext-authz"}},
    },
}
GW = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}


def findings(spec: dict) -> list[Finding]:
    ctx = ValidationContext(kind="EnvoyFilter", api_version="networking.istio.io/v1alpha3", name="ef",
                            namespace="default")
    return validate_spec(EnvoyFilter.model_validate(spec), ctx)


def significant(found: list[Finding]) -> list[Finding]:
    """All findings but the warning every EnvoyFilter gets."""
    return [f for f in found if f.field != "spec" or "implementation details" not in f.message]


def patch(apply_to="HTTP_FILTER", *, match=None, priority=None, **patch_fields) -> dict:
    cp = {"applyTo": apply_to, "patch": patch_fields}
    if match is not None:
        cp["match"] = match
    spec = {"configPatches": [cp]}
    if priority is not None:
        spec["priority"] = priority
    return spec


def http_filter_match(**filter_match) -> dict:
    return {"context": "SIDECAR_INBOUND", "listener": {"filterChain": {"filter": filter_match}}}


ADD = {"operation": "ADD", "value": EXT_AUTHZ}

CASES = [
    # which workloads
    ({"workloadSelector": {"labels": {"": "x"}}}, "error", "spec.workloadSelector.labels[]", "empty"),
    ({"workloadSelector": {"labels": {"app": "*"}}}, "error", "spec.workloadSelector.labels[app]", "wildcard"),
    ({"workloadSelector": {}}, "warning", "spec.workloadSelector", "every workload"),
    ({"workloadSelector": {"labels": {"app": "a"}}, "targetRefs": [GW]}, "error", "spec.targetRefs", "only one of"),
    ({"targetRefs": [{**GW, "name": f"g{i}"} for i in range(17)]}, "error", "spec.targetRefs", "at most 16"),
    ({"targetRefs": [{"name": "gw"}]}, "error", "spec.targetRefs[0].kind", "kind is required"),
    ({"targetRefs": [{**GW, "namespace": "other"}]}, "error", "spec.targetRefs[0].namespace", "cross-namespace"),
    ({}, "warning", "spec.configPatches", "changes nothing"),
    # required fields
    ({"configPatches": [{"patch": ADD}]}, "error", f"{CP}.applyTo", "applyTo is required"),
    ({"configPatches": [{"applyTo": "INVALID", "patch": ADD}]}, "error", f"{CP}.applyTo", "applyTo is required"),
    ({"configPatches": [{"applyTo": "CLUSTER"}]}, "error", f"{CP}.patch", "patch is required"),
    (patch("CLUSTER", value={"name": "c"}), "error", f"{CP}.patch.operation", "operation is required"),
    (patch("CLUSTER", operation="ADD"), "error", f"{CP}.patch.value", "value is required"),
    (patch("CLUSTER", operation="REMOVE", value={"name": "c"}), "warning", f"{CP}.patch.value", "takes no value"),
    # filterClass
    (patch(operation="INSERT_FIRST", value=EXT_AUTHZ, filterClass="AUTHZ"), "warning", f"{CP}.patch.filterClass",
     "only with applyTo HTTP_FILTER and operation ADD"),
    (patch("NETWORK_FILTER", operation="ADD", value={"name": "envoy.filters.network.tcp_proxy", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": "s", "cluster": "c"}}, filterClass="AUTHN"), "warning", f"{CP}.patch.filterClass", "ignored"),
    # matches
    (patch(match={"proxy": {"proxyVersion": "%#@~++==`24c234`"}}, **ADD), "error", f"{CP}.match.proxy.proxyVersion",
     "invalid regex"),
    (patch(match={"listener": {}, "cluster": {}}, **ADD), "error", f"{CP}.match", "only one of"),
    (patch(match={"context": "WAYPOINT"}, **ADD), "error", f"{CP}.match.waypoint", "context WAYPOINT"),
    (patch(match={"context": "SIDECAR_INBOUND", "waypoint": {"filter": {"name": HCM}}}, **ADD), "error",
     f"{CP}.match.waypoint", "context WAYPOINT"),
    (patch(match={"cluster": {"name": "c"}}, **ADD), "error", f"{CP}.match.cluster", "match on listener"),
    (patch("VIRTUAL_HOST", match={"listener": {}}, operation="MERGE", value={}), "error", f"{CP}.match.listener",
     "match on routeConfiguration"),
    (patch("CLUSTER", match={"routeConfiguration": {}}, operation="MERGE", value={}), "error",
     f"{CP}.match.routeConfiguration", "match on cluster"),
    (patch("LISTENER", match=http_filter_match(name=HCM), operation="MERGE", value={}), "warning",
     f"{CP}.match.listener.filterChain.filter", "no effect with applyTo LISTENER"),
    (patch(match=http_filter_match(subFilter={"name": "envoy.filters.http.router"}), **ADD), "error",
     f"{CP}.match.listener.filterChain.filter.name", "needs the name of the filter"),
    (patch("NETWORK_FILTER", match=http_filter_match(name=HCM, subFilter={"name": "envoy.filters.http.router"}),
           operation="REMOVE"), "error", f"{CP}.match.listener.filterChain.filter.subFilter", "HTTP_FILTER only"),
    (patch(match=http_filter_match(name="envoy.filters.network.tcp_proxy", subFilter={"name": "x"}), **ADD),
     "error", f"{CP}.match.listener.filterChain.filter.name", f"to name {HCM}"),
    (patch(match=http_filter_match(name=HCM, subFilter={}), **ADD), "error",
     f"{CP}.match.listener.filterChain.filter.subFilter.name", "needs the name of the HTTP filter"),
    (patch(match=http_filter_match(name="envoy.http_connection_manager"), operation="INSERT_FIRST", value=EXT_AUTHZ),
     "warning", f"{CP}.match.listener.filterChain.filter.name", f"use '{HCM}'"),
    (patch(match=http_filter_match(name=HCM, subFilter={"name": "envoy.router"}), operation="INSERT_FIRST",
           value=EXT_AUTHZ), "warning", f"{CP}.match.listener.filterChain.filter.subFilter.name",
     "'envoy.filters.http.router'"),
    (patch(match={"listener": {"portNumber": 70000}}, **ADD), "error", f"{CP}.match.listener.portNumber", "65535"),
    (patch(match={"listener": {"filterChain": {"destinationPort": 70000}}}, **ADD), "error",
     f"{CP}.match.listener.filterChain.destinationPort", "65535"),
    (patch("HTTP_ROUTE", match={"routeConfiguration": {"portNumber": 70000}}, operation="MERGE", value={}), "error",
     f"{CP}.match.routeConfiguration.portNumber", "65535"),
    (patch("CLUSTER", match={"cluster": {"portNumber": 70000}}, operation="MERGE", value={}), "error",
     f"{CP}.match.cluster.portNumber", "65535"),
    (patch(match={"context": "WAYPOINT", "waypoint": {"portNumber": 70000}}, **ADD), "error",
     f"{CP}.match.waypoint.portNumber", "65535"),
    # operations that istiod rejects in analysis or silently ignores
    (patch("CLUSTER", operation="REPLACE", value={"name": "c"}), "error", f"{CP}.patch.operation", "IST0152"),
    (patch("ROUTE_CONFIGURATION", operation="ADD", value={}), "error", f"{CP}.patch.operation", "IST0153"),
    (patch("ROUTE_CONFIGURATION", operation="REMOVE"), "error", f"{CP}.patch.operation", "IST0154"),
    (patch("CLUSTER", operation="INSERT_BEFORE", value={"name": "c"}), "warning", f"{CP}.patch.operation",
     "no effect with applyTo CLUSTER"),
    (patch("EXTENSION_CONFIG", operation="MERGE", value={"name": "e"}), "warning", f"{CP}.patch.operation",
     "no effect"),
    (patch("BOOTSTRAP", operation="ADD", value={}), "warning", f"{CP}.patch.operation", "no effect"),
    (patch("LISTENER", operation="INSERT_FIRST", value={"name": "l"}), "warning", f"{CP}.patch.operation",
     "no effect"),
    # relative operations need a priority
    (patch(match=http_filter_match(name=HCM), operation="INSERT_BEFORE", value=EXT_AUTHZ), "warning",
     f"{CP}.patch.operation", "IST0151"),
    (patch(match=http_filter_match(name=HCM), operation="REPLACE", value=EXT_AUTHZ), "warning",
     f"{CP}.patch.operation", "IST0151"),
    (patch(match=http_filter_match(name=HCM), operation="REMOVE"), "warning", f"{CP}.patch.operation", "IST0151"),
    ({"configPatches": [
        {"applyTo": "HTTP_FILTER", "match": {"proxy": {"proxyVersion": "^1\\.2.*"}}, "patch": ADD},
        {"applyTo": "HTTP_FILTER", "patch": {"operation": "INSERT_AFTER", "value": EXT_AUTHZ}},
    ]}, "warning", "spec.configPatches[1].patch.operation", "IST0155"),
    # the value is the Envoy object being patched
    (patch(operation="ADD", value={"name": "f", "typed_config": {
        "@type": "type.googleapis.com/envoy.config.filter.network.ext_authz.v2.ExtAuthz"}}), "error",
     f"{CP}.patch.value", "use the v3 type"),
    (patch(operation="ADD", value={"name": "f", "typed_config": {"@type": "type.googleapis.com/acme.Nope"}}),
     "error", f"{CP}.patch.value", "referenced type unknown"),
    (patch("CLUSTER", operation="ADD", value={"name": False}), "error", f"{CP}.patch.value",
     "not a valid envoy.config.cluster.v3.Cluster"),
    (patch("CLUSTER", operation="ADD", value={"name": "c", "connect_timeout": "soon"}), "error", f"{CP}.patch.value",
     "connect_timeout"),
    (patch("CLUSTER", operation="MERGE", value={"lb_policy": "RING_HASH", "fancy_new_field": 1}), "warning",
     f"{CP}.patch.value", "fancy_new_field"),
    (patch("NETWORK_FILTER", operation="INSERT_FIRST", value={"name": "envoy.filters.network.tcp_proxy"},
           priority=1), "warning", f"{CP}.patch.value", "without typed_config"),
]


@pytest.mark.parametrize(("spec", "level", "path", "word"), CASES)
def test_each_broken_rule_is_reported_at_its_field(spec, level, path, word):
    found = findings(spec)
    hits = [f for f in found if f.field == path and word in f.message]
    assert [f.level for f in hits] == [level], found


def test_every_envoy_filter_is_warned_about():
    found = findings({"configPatches": [{"applyTo": "CLUSTER", "patch": {"operation": "ADD", "value": {"name": "c"}}}]})
    assert [(f.level, f.field) for f in found] == [("warning", "spec")]
    assert "implementation details" in found[0].message


def test_a_priority_silences_the_relative_operation_warning():
    spec = patch(match=http_filter_match(name=HCM), operation="INSERT_BEFORE", value=EXT_AUTHZ, priority=10)
    assert significant(findings(spec)) == []


ISTIO_DOC_EXAMPLES = [
    # from envoy_filter.proto: ext_authz after Istio's authz filter
    patch(match={"context": "SIDECAR_INBOUND"}, operation="ADD", filterClass="AUTHZ", value=EXT_AUTHZ),
    # REPLACE with a priority
    patch(match={"context": "SIDECAR_INBOUND"}, operation="REPLACE", value=EXT_AUTHZ, priority=-1),
    # ECDS: a named Wasm extension, then an HTTP filter that refers to it
    {"configPatches": [
        {"applyTo": "EXTENSION_CONFIG", "patch": {"operation": "ADD", "value": {
            "name": "my-wasm-extension",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                             "config": {"root_id": "r", "vm_config": {"vm_id": "v", "runtime": "envoy.wasm.runtime.v8",
                                                                     "code": {"remote": {"http_uri": {
                                                                         "uri": "http://x", "timeout": "10s"}}}}}}}}},
        {"applyTo": "HTTP_FILTER", "match": {"context": "SIDECAR_INBOUND"}, "patch": {
            "operation": "ADD", "filterClass": "AUTHZ", "value": {
                "name": "my-wasm-extension",
                "config_discovery": {"config_source": {"ads": {}},
                                     "type_urls": [
                                         "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"]}}}},
    ]},
    # a new cluster, a route merge and a virtual host merge
    patch("CLUSTER", operation="ADD", value={"name": "rate_limit_cluster", "type": "STRICT_DNS",
                                             "connect_timeout": "10s", "lb_policy": "ROUND_ROBIN"}),
    patch("HTTP_ROUTE", match={"context": "SIDECAR_OUTBOUND", "routeConfiguration": {
        "vhost": {"name": "reviews:80", "route": {"name": "default", "action": "ROUTE"}}}},
        operation="MERGE", value={"route": {"timeout": "0.5s"}}),
    patch("VIRTUAL_HOST", match={"context": "GATEWAY", "routeConfiguration": {"portNumber": 443, "vhost": {
        "domainName": "example.com"}}}, operation="MERGE", value={"rate_limits": [{"actions": [
            {"request_headers": {"header_name": ":path", "descriptor_key": "PATH"}}]}]}),
    # waypoint
    patch(match={"context": "WAYPOINT", "waypoint": {"filter": {"name": HCM, "subFilter": {
        "name": "envoy.filters.http.router"}}, "portNumber": 8080}}, operation="INSERT_FIRST", value=EXT_AUTHZ),
    # listener filter and bootstrap
    patch("LISTENER_FILTER",
          match={"listener": {"portNumber": 15006, "listenerFilter": "envoy.filters.listener.tls_inspector"}},
          operation="INSERT_FIRST", value={"name": "envoy.filters.listener.proxy_protocol", "typed_config": {
              "@type": "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol"}}),
    patch("BOOTSTRAP", operation="MERGE", value={"stats_config": {"stats_tags": [{"tag_name": "x",
                                                                                  "regex": "(x)"}]}}),
    {"targetRefs": [GW], "configPatches": [{"applyTo": "CLUSTER", "patch": {"operation": "MERGE", "value": {
        "per_connection_buffer_limit_bytes": 1024}}}]},
]


@pytest.mark.parametrize("spec", ISTIO_DOC_EXAMPLES)
def test_valid_filters_have_no_other_findings(spec):
    # Istio's examples patching what malla does not (bootstrap, extension configs, listener filters) are
    # valid but get the warning that malla ignores them (the test below).
    assert [f for f in significant(findings(spec)) if "is not applied by malla" not in f.message] == []


@pytest.mark.parametrize("kind", ["BOOTSTRAP", "EXTENSION_CONFIG", "LISTENER_FILTER"])
def test_patches_malla_does_not_apply_are_named_at_their_apply_to(kind):
    value = {"name": "envoy.filters.listener.tls_inspector"} if kind == "LISTENER_FILTER" else {}
    spec = {"configPatches": [{"applyTo": kind, "patch": {"operation": "ADD" if value else "MERGE", "value": value}}]}
    warned = [f for f in significant(findings(spec)) if f.field == "spec.configPatches[0].applyTo"]
    assert [f.level for f in warned] == ["warning"]
    assert f"applyTo {kind} is not applied by malla: this patch is ignored" in warned[0].message


def _istio_documents():
    yaml = YAML(typ="safe", pure=True)
    for root in (VALIDATION_DATASET, SAMPLES):
        for path in sorted(root.rglob("*.yaml")):
            text = path.read_text()
            if "EnvoyFilter" not in text:
                continue  # parsing every sample with the pure-Python loader is slow
            for doc in yaml.load_all(text):
                if isinstance(doc, dict) and doc.get("kind") == "EnvoyFilter":
                    yield pytest.param(doc, id=f"{path.name}:{doc['metadata']['name']}")


ISTIO_DOCUMENTS = list(_istio_documents())


def test_istio_has_envoy_filters_to_check():
    assert len(ISTIO_DOCUMENTS) >= 3


@pytest.mark.parametrize("doc", ISTIO_DOCUMENTS)
def test_istio_envoy_filters_have_no_errors(doc):
    assert [f for f in findings(doc.get("spec") or {}) if f.level == "error"] == []
