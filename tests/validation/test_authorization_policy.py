"""AuthorizationPolicy rules: each broken rule gives one finding at its field path; Istio's own policies give no errors."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from malla.api.security.authorization_policy import AuthorizationPolicy
from malla.config.validation import Finding, ValidationContext, validate_spec
from tests.conformance import SAMPLES, VALIDATION_DATASET

GW = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}
CUSTOM = {"action": "CUSTOM", "provider": {"name": "ext-authz"}}


def findings(spec: dict, *, annotations: dict | None = None) -> list[Finding]:
    ctx = ValidationContext(
        kind="AuthorizationPolicy", api_version="security.istio.io/v1", name="p", namespace="default",
        annotations=annotations or {},
    )
    return validate_spec(AuthorizationPolicy.model_validate(spec), ctx)


FAIL_CLOSED = ("warning", "spec.provider.name")


def rule_findings(spec: dict, *, annotations: dict | None = None) -> list[Finding]:
    """The findings besides the fail-closed warning every usable CUSTOM policy gets (tested on its own)."""
    return [f for f in findings(spec, annotations=annotations) if (f.level, f.field) != FAIL_CLOSED]


def test_custom_policy_warns_that_it_fails_closed_without_extension_providers():
    found = findings({**CUSTOM, "rules": [{}]})
    assert [(f.level, f.field) for f in found] == [FAIL_CLOSED]
    assert "'ext-authz' is not declared" in found[0].message and "denied (fail closed)" in found[0].message


def source(**fields) -> dict:
    return {"rules": [{"from": [{"source": fields}]}]}


def operation(**fields) -> dict:
    return {"rules": [{"to": [{"operation": fields}]}]}


def when(**condition) -> dict:
    return {"rules": [{"when": [condition]}]}


SRC = "spec.rules[0].from[0].source"
OP = "spec.rules[0].to[0].operation"
WHEN = "spec.rules[0].when[0]"

CASES = [
    # selector / targetRef / targetRefs
    ({"selector": {"matchLabels": {"app": "a"}}, "targetRef": GW}, "error", "spec.targetRef", "only one of"),
    ({"targetRef": GW, "targetRefs": [GW]}, "error", "spec.targetRefs", "only one of"),
    ({"selector": {}}, "warning", "spec.selector", "without labels"),
    ({"selector": {"matchLabels": {"app": "*"}}}, "error", "spec.selector.matchLabels[app]", "wildcard"),
    ({"selector": {"matchLabels": {"": "a"}}}, "error", "spec.selector.matchLabels[]", "empty label key"),
    # Istio accepts a selector label no workload can carry; it never matches anything.
    ({"selector": {"matchLabels": {"app": "a b"}}}, "warning", "spec.selector.matchLabels[app]", "invalid label value"),
    ({"selector": {"matchLabels": {"-app": "a"}}}, "warning", "spec.selector.matchLabels[-app]", "invalid label key"),
    ({"targetRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway"}}, "error", "spec.targetRef.name", "name is required"),
    ({"targetRef": {**GW, "namespace": "other"}}, "error", "spec.targetRef.namespace", "cross-namespace"),
    ({"targetRef": {"name": "gw"}}, "error", "spec.targetRef.kind", "kind is required"),
    ({"targetRef": {"group": "apps", "kind": "Deployment", "name": "d"}}, "error", "spec.targetRef.kind", "not supported"),
    ({"targetRefs": [GW, {"group": "networking.istio.io", "kind": "Service", "name": "s"}]}, "error", "spec.targetRefs[1].kind", "not supported"),
    ({"targetRefs": [{**GW, "name": f"gw{i}"} for i in range(17)]}, "error", "spec.targetRefs", "at most 16"),
    # action and provider
    ({"provider": {"name": "ext-authz"}, "rules": [{}]}, "error", "spec.provider", "only allowed with action CUSTOM"),
    ({"action": "AUDIT", "provider": {"name": "x"}, "rules": [{}]}, "error", "spec.provider", "only allowed with action CUSTOM"),
    ({"action": "CUSTOM", "provider": {"name": "ext-authz"}}, "error", "spec.rules", "never triggered"),
    ({"action": "CUSTOM", "rules": [{}]}, "error", "spec.provider.name", "provider.name"),
    ({"action": "CUSTOM", "provider": {}, "rules": [{}]}, "error", "spec.provider.name", "provider.name"),
    ({"action": "DENY"}, "error", "spec.rules", "never triggered"),
    ({"action": "AUDIT"}, "warning", "spec.rules", "nothing is audited"),
    # from / source
    ({"rules": [{"from": []}]}, "error", "spec.rules[0].from", "must not be empty"),
    ({"rules": [{"from": [{}]}]}, "error", SRC, "needs a source"),
    (source(), "error", SRC, "must not be empty"),
    (source(serviceAccounts=["ns/sa"], namespaces=["ns"]), "error", SRC, "cannot be combined"),
    (source(notServiceAccounts=["sa"], principals=["td/ns/a/sa/b"]), "error", SRC, "cannot be combined"),
    (source(principals=["a", ""]), "error", f"{SRC}.principals[1]", "empty value"),
    (source(notNamespaces=[""]), "error", f"{SRC}.notNamespaces[0]", "empty value"),
    (source(trustDomains=[""]), "error", f"{SRC}.trustDomains[0]", "empty value"),
    (source(ipBlocks=["10.0.0.300"]), "error", f"{SRC}.ipBlocks[0]", "invalid address"),
    (source(remoteIpBlocks=["10.0.0.0/33"]), "error", f"{SRC}.remoteIpBlocks[0]", "invalid address"),
    (source(notRemoteIpBlocks=["10.0.0.0/255.0.0.0"]), "error", f"{SRC}.notRemoteIpBlocks[0]", "prefix length"),
    (source(notIpBlocks=["example.com"]), "error", f"{SRC}.notIpBlocks[0]", "invalid address"),
    (source(serviceAccounts=["ns/*"]), "error", f"{SRC}.serviceAccounts[0]", "wildcard"),
    (source(serviceAccounts=["a/b/c"]), "error", f"{SRC}.serviceAccounts[0]", "namespace/serviceAccount"),
    (source(serviceAccounts=["ns/"]), "error", f"{SRC}.serviceAccounts[0]", "empty service account name"),
    (source(notServiceAccounts=["/sa"]), "error", f"{SRC}.notServiceAccounts[0]", "empty namespace"),
    (source(serviceAccounts=["s" * 321]), "error", f"{SRC}.serviceAccounts[0]", "320"),
    (source(serviceAccounts=[f"sa{i}" for i in range(17)]), "error", f"{SRC}.serviceAccounts", "at most 16"),
    # to / operation
    ({"rules": [{"to": []}]}, "error", "spec.rules[0].to", "must not be empty"),
    ({"rules": [{"to": [{}]}]}, "error", OP, "needs an operation"),
    (operation(), "error", OP, "must not be empty"),
    (operation(hosts=[""]), "error", f"{OP}.hosts[0]", "empty value"),
    (operation(ports=["http"]), "error", f"{OP}.ports[0]", "invalid port"),
    (operation(notPorts=["70000"]), "error", f"{OP}.notPorts[0]", "between 1 and 65535"),
    (operation(ports=["0"]), "warning", f"{OP}.ports[0]", "never matches"),
    (operation(methods=["get"]), "warning", f"{OP}.methods[0]", "case-sensitive"),
    (operation(notMethods=["/pkg.Svc/Get"]), "warning", f"{OP}.notMethods[0]", "gRPC"),
    (operation(paths=["api/v1"]), "warning", f"{OP}.paths[0]", "start with '/'"),
    (operation(paths=["/a/*/b"]), "warning", f"{OP}.paths[0]", "matched literally"),
    (operation(notPaths=["/a/**"]), "warning", f"{OP}.notPaths[0]", "matched literally"),
    (operation(paths=["*/a*"]), "warning", f"{OP}.paths[0]", "matched literally"),
    (operation(paths=["/a/{*}/b{"]), "error", f"{OP}.paths[0]", "'{'"),
    (operation(paths=["/x{y}"]), "error", f"{OP}.paths[0]", "'{'"),
    (operation(paths=["/{**}/a/{*}"]), "error", f"{OP}.paths[0]", "last operator"),
    (operation(notPaths=["/a/{*}/b c"]), "error", f"{OP}.notPaths[0]", "segment"),
    (operation(paths=["/a//{*}"]), "error", f"{OP}.paths[0]", "segment"),
    # when / conditions
    (when(values=["a"]), "error", f"{WHEN}.key", "key is required"),
    (when(key="source.ip"), "error", WHEN, "at least one of values or notValues"),
    (when(key="request.method", values=["GET"]), "error", f"{WHEN}.key", "unknown attribute"),
    (when(key="request.headers", values=["a"]), "error", f"{WHEN}.key", "name[key]"),
    (when(key="request.auth.claims[]", values=["a"]), "error", f"{WHEN}.key", "name[key]"),
    (when(key="experimental.envoy.filters.a", values=["a"]), "error", f"{WHEN}.key", "name[key]"),
    (when(key="destination.namespace", values=["a"]), "error", f"{WHEN}.key", "metadata.namespace"),
    (when(key="destination.labels[app]", values=["a"]), "error", f"{WHEN}.key", "workload selector"),
    (when(key="destination.user", values=["a"]), "error", f"{WHEN}.key", "no longer supported"),
    (when(key="source.ip", values=["1.2.3"]), "error", f"{WHEN}.values[0]", "invalid address"),
    (when(key="remote.ip", notValues=["10.0.0.0/255.0.0.0"]), "error", f"{WHEN}.notValues[0]", "prefix length"),
    (when(key="destination.port", notValues=["abc"]), "error", f"{WHEN}.notValues[0]", "invalid port"),
    (when(key="source.serviceAccount", values=["a/b/c"]), "error", f"{WHEN}.values[0]", "namespace/serviceAccount"),
    (when(key="source.namespace", values=["ns", ""]), "error", f"{WHEN}.values[1]", "empty value"),
    # CUSTOM limits
    ({**CUSTOM, **source(principals=["a"])}, "error", f"{SRC}.principals", "not supported with action CUSTOM"),
    ({**CUSTOM, **source(notRequestPrincipals=["*"])}, "error", f"{SRC}.notRequestPrincipals", "not supported with action CUSTOM"),
    ({**CUSTOM, **source(serviceAccounts=["sa"])}, "error", f"{SRC}.serviceAccounts", "not supported with action CUSTOM"),
    ({**CUSTOM, **when(key="source.principal", values=["a"])}, "error", f"{WHEN}.key", "not supported with action CUSTOM"),
    ({**CUSTOM, **when(key="request.auth.claims[iss]", values=["a"])}, "error", f"{WHEN}.key", "not supported with action CUSTOM"),
    # DENY rules a TCP connection always matches
    ({"action": "DENY", **operation(methods=["POST"])}, "warning", "spec.rules[0]", "TCP ports"),
    ({"action": "DENY", **source(requestPrincipals=["*"])}, "warning", "spec.rules[0]", "TCP ports"),
    (
        {"action": "DENY", "rules": [{"from": [{"source": {"namespaces": ["dev"]}}], "to": [{"operation": {"paths": ["/x"]}}]}]},
        "warning",
        "spec.rules[0]",
        "TCP ports",
    ),
]


@pytest.mark.parametrize(("spec", "level", "path", "word"), CASES, ids=[f"{c[2]}:{c[3]}" for c in CASES])
def test_broken_rule_gives_one_finding_at_its_path(spec, level, path, word):
    found = rule_findings(spec)
    assert [(f.level, f.field) for f in found] == [(level, path)], found
    assert word in found[0].message


VALID = [
    {},
    {"rules": [{}]},
    {"action": "DENY", **operation(methods=["POST"], ports=["8080"])},
    {"action": "DENY", **source(namespaces=["dev"])},
    {"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}], "to": [{"operation": {"notPorts": ["15021"]}}]}]},
    {"action": "AUDIT", **operation(paths=["/user/profile/*"])},
    {**CUSTOM, "rules": [{"from": [{"source": {"ipBlocks": ["203.0.113.4", "2001:db8::/32"]}}], "to": [{"operation": {"paths": ["/admin/*"]}}]}]},
    {**CUSTOM, **when(key="request.headers[x-user]", values=["a"])},
    {"targetRef": {"kind": "Service", "group": "", "name": "reviews"}},
    {"targetRefs": [{"kind": "Service", "group": "core", "name": "reviews"}, {"kind": "ServiceEntry", "group": "networking.istio.io", "name": "se"}]},
    {"targetRefs": [{"kind": "GatewayClass", "group": "gateway.networking.k8s.io", "name": "istio-waypoint"}]},
    source(serviceAccounts=["sa", "ns/sa"], notServiceAccounts=["ns/other"], trustDomains=["cluster.local"], remoteIpBlocks=["1.2.3.4"]),
    operation(paths=["/a/{*}/b/{**}", "*.png", "/api/*", "*", "/exact"], methods=["GET", "*"], hosts=["*.example.com"], ports=["65535"]),
]


@pytest.mark.parametrize("spec", VALID)
def test_valid_policy_gives_no_finding(spec):
    assert rule_findings(spec) == []


SUPPORTED_KEYS = [
    ("request.headers[User-Agent]", "curl/*"),
    ("request.experimental.inline.headers[x-a]", "b"),
    ("source.ip", "10.1.0.0/16"),
    ("remote.ip", "2001:db8::1"),
    ("source.namespace", "default"),
    ("source.serviceAccount", "default/productpage"),
    ("source.principal", "cluster.local/ns/default/sa/productpage"),
    ("request.auth.principal", "issuer/subject"),
    ("request.auth.audiences", "aud"),
    ("request.auth.presenter", "client"),
    ("request.auth.claims[groups]", "admin"),
    ("destination.ip", "10.0.0.1"),
    ("destination.port", "8080"),
    ("connection.sni", "www.example.com"),
    ("experimental.envoy.filters.network.mysql_proxy[db.table]", "[update]"),
]


@pytest.mark.parametrize(("key", "value"), SUPPORTED_KEYS)
def test_every_supported_condition_key_is_accepted(key, value):
    assert findings(when(key=key, values=[value], notValues=[value])) == []


DRY_RUN = "metadata.annotations[istio.io/dry-run]"


@pytest.mark.parametrize(
    ("spec", "value", "word"),
    [({"action": "AUDIT", "rules": [{}]}, "true", "ALLOW or DENY"), ({**CUSTOM, "rules": [{}]}, "true", "ALLOW or DENY"), ({}, "yes", "invalid")],
)
def test_dry_run_annotation_needs_allow_or_deny_and_a_boolean(spec, value, word):
    found = rule_findings(spec, annotations={"istio.io/dry-run": value})
    assert [(f.level, f.field) for f in found] == [("error", DRY_RUN)], found
    assert word in found[0].message


@pytest.mark.parametrize(("action", "value"), [("ALLOW", "true"), ("DENY", "false"), ("DENY", "True"), ("ALLOW", "0")])
def test_dry_run_annotation_on_allow_or_deny_is_accepted(action, value):
    assert findings({"action": action, "rules": [{}]}, annotations={"istio.io/dry-run": value}) == []


def _corpus(kind: str) -> list:
    params = []
    for path in sorted([*VALIDATION_DATASET.glob("*.yaml"), *SAMPLES.rglob("*.yaml")]):
        for doc in YAML(typ="safe", pure=True).load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == kind:
                params.append(pytest.param(doc, id=f"{path.name}:{doc['metadata']['name']}"))
    return params


CORPUS = _corpus("AuthorizationPolicy")


def test_corpus_has_istios_authorization_policies():
    assert len(CORPUS) >= 2


@pytest.mark.parametrize("doc", CORPUS)
def test_istio_corpus_policy_parses_and_has_no_error(doc):
    spec = AuthorizationPolicy.model_validate(doc.get("spec") or {})
    ctx = ValidationContext(
        kind=doc["kind"], api_version=doc["apiVersion"], name=doc["metadata"]["name"],
        namespace=doc["metadata"].get("namespace", "default"),
    )
    assert [f for f in validate_spec(spec, ctx) if f.level == "error"] == []
