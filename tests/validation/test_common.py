"""The shared rules judge a value the same way in every kind that uses them, as Istio does.

Each rule is exercised through several kinds' ``validate_spec``: hosts
(Istio's ValidateFQDN and ValidateWildcardDomain), workload selectors,
exportTo, Unix socket addresses, durations, port names, CIDRs and the
Wasm module fields.
"""

from __future__ import annotations

import json

import pytest

from malla.api.kinds import BY_GROUP_KIND
from malla.config.validation import Finding, ValidationContext, validate_spec

GROUPS = {kind: group for group, kind in BY_GROUP_KIND}


def findings(kind: str, spec: dict) -> list[Finding]:
    info = BY_GROUP_KIND[(GROUPS[kind], kind)]
    ctx = ValidationContext(kind=kind, api_version=f"{GROUPS[kind]}/{info.versions[0]}", name="r", namespace="default")
    return validate_spec(info.spec_model.model_validate(spec), ctx)


def errors_at(kind: str, spec: dict, field: str) -> list[str]:
    return [f.message for f in findings(kind, spec) if f.level == "error" and f.field == field]


# --- Hosts: one grammar for every kind --------------------------------------------------------

# (kind, spec with {host} in it, field where a bad host is reported)
HOST_FIELDS = [
    ("DestinationRule", {"host": "{host}"}, "spec.host"),
    ("VirtualService", {"hosts": ["{host}"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}, "spec.hosts[0]"),
    ("VirtualService", {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "{host}"}}]}]},
     "spec.http[0].route[0].destination.host"),
    ("ServiceEntry", {"hosts": ["{host}"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]}, "spec.hosts[0]"),
    ("Gateway", {"servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["ns/{host}"]}]},
     "spec.servers[0].hosts[0]"),
    ("Sidecar", {"egress": [{"hosts": ["./{host}"]}]}, "spec.egress[0].hosts[0]"),
]


def with_host(spec: dict, host: str) -> dict:
    return json.loads(json.dumps(spec).replace("{host}", host))


@pytest.mark.parametrize(("kind", "spec", "field"), HOST_FIELDS, ids=[f"{k}:{f}" for k, _, f in HOST_FIELDS])
@pytest.mark.parametrize("host", ["Reviews.Example.COM", "reviews.example.com.", "*.example.com", "a-1.b2.example"])
def test_hosts_istio_accepts_are_accepted_everywhere(kind, spec, field, host):
    assert errors_at(kind, with_host(spec, host), field) == []


@pytest.mark.parametrize(("kind", "spec", "field"), HOST_FIELDS, ids=[f"{k}:{f}" for k, _, f in HOST_FIELDS])
@pytest.mark.parametrize(
    ("host", "word"),
    [
        ("api_v1.example.com", "label 'api_v1'"),
        ("foo.example.123", "all digits"),
        ("foo.*.example.com", "wildcard"),
        ("-foo.example.com", "label '-foo'"),
        ("foo..example.com", "label ''"),
        (f"{'a' * 64}.example.com", "label"),
    ],
)
def test_hosts_istio_rejects_are_rejected_everywhere(kind, spec, field, host, word):
    messages = errors_at(kind, with_host(spec, host), field)
    assert messages and any(word in m for m in messages), findings(kind, with_host(spec, host))


def test_fqdn_only_fields_refuse_wildcards_where_wildcard_domains_take_them():
    egress_proxy = {"outboundTrafficPolicy": {"mode": "ALLOW_ANY", "egressProxy": {"host": "*.example.com", "port": {"number": 80}}}}
    assert errors_at("Sidecar", egress_proxy, "spec.outboundTrafficPolicy.egressProxy.host")
    assert errors_at("DestinationRule", {"host": "*.example.com"}, "spec.host") == []


# --- Workload selectors: the same rules whatever the field is called ------------------------

SELECTORS = [
    ("AuthorizationPolicy", "selector", "matchLabels", {}),
    ("PeerAuthentication", "selector", "matchLabels", {}),
    ("RequestAuthentication", "selector", "matchLabels", {}),
    ("Telemetry", "selector", "matchLabels", {}),
    ("WasmPlugin", "selector", "matchLabels", {"url": "oci://example.com/p:1"}),
    ("TrafficExtension", "selector", "matchLabels", {"lua": {"inlineCode": "function envoy_on_request(h) end"}}),
    ("ProxyConfig", "selector", "matchLabels", {}),
    ("DestinationRule", "workloadSelector", "matchLabels", {"host": "reviews"}),
    ("Sidecar", "workloadSelector", "labels", {"egress": [{"hosts": ["./*"]}]}),
    ("EnvoyFilter", "workloadSelector", "labels", {}),
    ("ServiceEntry", "workloadSelector", "labels", {"hosts": ["a.example.com"], "resolution": "STATIC",
                                                     "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]}),
]
SELECTOR_IDS = [s[0] for s in SELECTORS]


@pytest.mark.parametrize(("kind", "field", "labels_field", "rest"), SELECTORS, ids=SELECTOR_IDS)
@pytest.mark.parametrize(
    ("labels", "entry", "word"),
    [
        ({"app": "*"}, "app", "wildcard"),  # '*' alone is no "match any": Istio refuses it
        ({"app": "rev*"}, "app", "wildcard"),
        ({"a*": "x"}, "a*", "wildcard"),
        ({"": "x"}, "", "empty label key"),
        ({"app": "x" * 64}, "app", "at most 63"),
    ],
)
def test_selector_labels_istio_refuses_are_errors_in_every_kind(kind, field, labels_field, rest, labels, entry, word):
    spec = {**rest, field: {labels_field: labels}}
    messages = errors_at(kind, spec, f"spec.{field}.{labels_field}[{entry}]")
    assert len(messages) == 1 and word in messages[0], findings(kind, spec)


@pytest.mark.parametrize(("kind", "field", "labels_field", "rest"), SELECTORS, ids=SELECTOR_IDS)
def test_selector_label_no_workload_can_carry_is_a_warning(kind, field, labels_field, rest):
    spec = {**rest, field: {labels_field: {"app": "a b"}}}
    found = [f for f in findings(kind, spec) if f.field == f"spec.{field}.{labels_field}[app]"]
    assert [f.level for f in found] == ["warning"] and "never matches" in found[0].message


@pytest.mark.parametrize(("kind", "field", "labels_field", "rest"), SELECTORS, ids=SELECTOR_IDS)
def test_selector_without_labels_warns_at_the_selector(kind, field, labels_field, rest):
    found = [f for f in findings(kind, {**rest, field: {}}) if f.field == f"spec.{field}"]
    assert [f.level for f in found] == ["warning"] and "every workload" in found[0].message


@pytest.mark.parametrize(("kind", "field", "labels_field", "rest"), SELECTORS, ids=SELECTOR_IDS)
def test_exact_selector_labels_are_accepted(kind, field, labels_field, rest):
    spec = {**rest, field: {labels_field: {"app": "reviews", "example.com/Tier": "Front_end.v1"}}}
    assert [f for f in findings(kind, spec) if f.field.startswith(f"spec.{field}")] == []


def test_traffic_extension_has_no_single_target_ref_and_needs_none():
    lua = {"lua": {"inlineCode": "function envoy_on_request(h) end"}}
    gw = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}
    assert findings("TrafficExtension", {**lua, "targetRefs": [gw]}) == []
    found = findings("TrafficExtension", {**lua, "selector": {"matchLabels": {"app": "a"}}, "targetRefs": [gw]})
    assert [(f.level, f.field) for f in found] == [("error", "spec.targetRefs")]


# --- exportTo, Unix sockets, durations, port names, CIDRs ------------------------------------

EXPORTERS = [
    ("VirtualService", {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}),
    ("DestinationRule", {"host": "reviews"}),
    ("ServiceEntry", {"hosts": ["a.example.com"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]}),
]


@pytest.mark.parametrize(("kind", "rest"), EXPORTERS, ids=[k for k, _ in EXPORTERS])
@pytest.mark.parametrize(
    ("export_to", "field", "word"),
    [
        ([".", "default"], "spec.exportTo[1]", "'.' and the current namespace"),
        (["default", "."], "spec.exportTo[1]", "'.' and the current namespace"),
        (["ns1", "ns1"], "spec.exportTo[1]", "duplicate"),
        (["ns_1"], "spec.exportTo[0]", "namespace name"),
        (["*", "ns1"], "spec.exportTo", "'*'"),
    ],
)
def test_export_to_is_judged_alike(kind, rest, export_to, field, word):
    messages = errors_at(kind, {**rest, "exportTo": export_to}, field)
    assert len(messages) == 1 and word in messages[0]


@pytest.mark.parametrize(("kind", "rest"), EXPORTERS, ids=[k for k, _ in EXPORTERS])
def test_upper_case_namespaces_are_valid_export_targets_as_in_istio(kind, rest):
    assert [f for f in findings(kind, {**rest, "exportTo": ["Team-A"]}) if f.field.startswith("spec.exportTo")] == []


UNIX_FIELDS = [
    ("ServiceEntry", lambda a: {"hosts": ["a.example.com"], "resolution": "STATIC", "endpoints": [{"address": a}],
                                "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]}, "spec.endpoints[0].address"),
    ("WorkloadEntry", lambda a: {"address": a}, "spec.address"),
    ("Gateway", lambda a: {"servers": [{"port": {"number": 0, "name": "u", "protocol": "HTTP"}, "hosts": ["*"], "bind": a}]},
     "spec.servers[0].bind"),
    ("Sidecar", lambda a: {"ingress": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "defaultEndpoint": a}]},
     "spec.ingress[0].defaultEndpoint"),
]


@pytest.mark.parametrize(("kind", "make", "field"), UNIX_FIELDS, ids=[k for k, _, _ in UNIX_FIELDS])
@pytest.mark.parametrize(
    ("address", "word"), [("unix://relative.sock", "absolute path"), ("unix:///var/run/", "directory"), ("unix://", "empty")]
)
def test_unix_socket_addresses_are_judged_alike(kind, make, field, address, word):
    messages = errors_at(kind, make(address), field)
    assert len(messages) == 1 and word in messages[0], findings(kind, make(address))


@pytest.mark.parametrize(("kind", "make", "field"), UNIX_FIELDS, ids=[k for k, _, _ in UNIX_FIELDS])
@pytest.mark.parametrize("address", ["unix:///var/run/app.sock", "unix://@abstract", "unix://@"])
def test_unix_sockets_istio_accepts_are_accepted(kind, make, field, address):
    assert errors_at(kind, make(address), field) == []


DURATIONS = [
    ("RequestAuthentication", lambda d: {"jwtRules": [{"issuer": "i", "timeout": d}]}, "spec.jwtRules[0].timeout"),
    ("VirtualService", lambda d: {"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a"}}], "timeout": d}]},
     "spec.http[0].timeout"),
    ("DestinationRule", lambda d: {"host": "a", "trafficPolicy": {"connectionPool": {"tcp": {"connectTimeout": d}}}},
     "spec.trafficPolicy.connectionPool.tcp.connectTimeout"),
]


@pytest.mark.parametrize(("kind", "make", "field"), DURATIONS, ids=[k for k, _, _ in DURATIONS])
@pytest.mark.parametrize(("value", "word"), [("0s", "at least 1ms"), ("-1s", "at least 1ms"), ("1500us", "whole milliseconds")])
def test_durations_are_positive_whole_milliseconds(kind, make, field, value, word):
    messages = errors_at(kind, make(value), field)
    assert len(messages) == 1 and word in messages[0]


@pytest.mark.parametrize(("kind", "make", "field"), DURATIONS, ids=[k for k, _, _ in DURATIONS])
def test_whole_millisecond_durations_are_accepted(kind, make, field):
    assert errors_at(kind, make("1.5s"), field) == []


PORT_NAMES = [
    ("ServiceEntry", lambda n: {"hosts": ["a.example.com"], "ports": [{"number": 80, "name": n, "protocol": "HTTP"}],
                                "addresses": ["10.0.0.1"]}, "spec.ports[0].name"),
    ("Sidecar", lambda n: {"ingress": [{"port": {"number": 80, "name": n, "protocol": "HTTP"}}]}, "spec.ingress[0].port.name"),
    ("WorkloadEntry", lambda n: {"address": "10.0.0.1", "ports": {n: 80}}, None),
]


@pytest.mark.parametrize(("kind", "make", "field"), PORT_NAMES, ids=[k for k, _, _ in PORT_NAMES])
def test_port_names_are_istio_dns_labels(kind, make, field):
    field_of = (lambda n: f"spec.ports[{n}]") if field is None else (lambda n: field)
    assert errors_at(kind, make("HTTP-Web"), field_of("HTTP-Web")) == []  # Istio allows upper case here
    messages = errors_at(kind, make("http_web"), field_of("http_web"))
    assert len(messages) == 1 and "invalid port name" in messages[0]


@pytest.mark.parametrize(
    ("kind", "spec", "field"),
    [
        ("ServiceEntry", {"hosts": ["a.example.com"], "addresses": ["10.0.0.0/255.0.0.0"]}, "spec.addresses[0]"),
        ("VirtualService", {"hosts": ["a"], "tcp": [{"match": [{"destinationSubnets": ["10.0.0.0/255.0.0.0"]}],
                                                     "route": [{"destination": {"host": "a"}}]}]},
         "spec.tcp[0].match[0].destinationSubnets[0]"),
        ("AuthorizationPolicy", {"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/255.0.0.0"]}}]}]},
         "spec.rules[0].from[0].source.ipBlocks[0]"),
    ],
)
def test_netmask_cidrs_are_refused_as_istio_parses_prefix_lengths_only(kind, spec, field):
    messages = errors_at(kind, spec, field)
    assert len(messages) == 1 and "prefix length" in messages[0]


def test_probe_header_names_follow_istios_header_rule():
    probe = {"template": {}, "probe": {"httpGet": {"port": 80, "httpHeaders": [{"name": "X_Custom-1"}]}}}
    assert findings("WorkloadGroup", probe) == []
