"""AuthorizationPolicy as Envoy RBAC: which proxies a policy reaches, and the rules Envoy gets.

Rules are read back from the generated listeners as JSON (what ``proxy-config``
would show), so each assertion is about what Envoy will enforce.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from malla.config.parse import parse_text
from malla.pilot.consistency import assert_consistent
from malla.pilot.generate import generate
from malla.pilot.protocol import Protocol
from malla.pilot.resources import LISTENER
from malla.pilot.snapshot import MeshSnapshot, Proxy
from malla.policy import authz
from tests.conformance import CONFORMANCE
from tests.pilot.mesh import router, sidecar, snapshot, workload

HTTP, TCP = 9080, 9000
REVIEWS = sidecar("reviews", ip="127.0.0.20", inbound=[(HTTP, 19080, Protocol.HTTP), (TCP, 19000, Protocol.TCP)])
WORKLOADS = [workload("reviews", "127.0.0.20", ports={"http": HTTP, "tcp": TCP})]


def policy(name: str, spec: str, *, namespace: str = "default", annotations: str = "") -> str:
    meta = f"{{name: {name}, namespace: {namespace}{', annotations: ' + annotations if annotations else ''}}}"
    body = "\n".join("  " + line for line in spec.strip().splitlines())
    return f"---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {meta}\nspec:\n{body}\n"


def stages(text: str, proxy: Proxy = REVIEWS, *, port: int = HTTP, tcp: bool = False) -> list[dict[str, Any]]:
    """The RBAC configs Envoy gets on one chain, in order (JSON)."""
    snap = snapshot(text, workloads=WORKLOADS)
    make = authz.network_filters if tcp else authz.http_filters
    return [_unpack(f.typed_config) for f in make(proxy, snap, port=port)]


def _unpack(any_message: Any) -> dict[str, Any]:
    return json.loads(json_format.MessageToJson(any_message))


def only_policy(stage: dict[str, Any]) -> dict[str, Any]:
    (value,) = stage["rules"]["policies"].values()
    return value


# --- which proxies a policy applies to ---------------------------------------------------


def names(text: str, proxy: Proxy) -> list[str]:
    return [c.name for c in authz.applicable_policies(proxy, snapshot(text))]


def test_root_namespace_policies_apply_mesh_wide_and_a_namespace_s_only_to_its_workloads() -> None:
    text = policy("mesh", "{}", namespace="istio-system") + policy("ns", "{}", namespace="bar")
    assert names(text, sidecar("a", namespace="foo")) == ["mesh"]
    assert names(text, sidecar("b", namespace="bar")) == ["ns", "mesh"]  # Istio's order: own namespace first


def test_a_selector_narrows_to_labelled_workloads_and_in_the_root_namespace_reaches_every_namespace() -> None:
    text = policy("own", "selector: {matchLabels: {app: reviews}}") + policy(
        "root", "selector: {matchLabels: {app: reviews, version: v2}}", namespace="istio-system")
    assert names(text, sidecar("reviews", labels={"app": "reviews"})) == ["own"]
    assert names(text, sidecar("ratings", labels={"app": "ratings"})) == []
    assert names(text, sidecar("reviews", namespace="foo", labels={"app": "reviews", "version": "v2"})) == ["root"]


def test_a_target_ref_to_a_kubernetes_gateway_selects_that_gateway_s_proxy_only() -> None:
    ref = "targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge}]"
    text = policy("gw", ref, namespace="web") + policy("svc", "targetRef: {kind: Service, group: '', name: reviews}",
                                                       namespace="web")
    edge = dataclasses.replace(router("edge", namespace="web"),
                               labels={"gateway.networking.k8s.io/gateway-name": "edge"})
    other = dataclasses.replace(edge, labels={"gateway.networking.k8s.io/gateway-name": "other"})
    assert names(text, edge) == ["gw"]
    assert names(text, other) == []
    assert names(text, sidecar("reviews", namespace="web")) == []


def test_no_policy_means_no_filter() -> None:
    assert stages("") == []
    assert stages(policy("elsewhere", "{}", namespace="foo")) == []


# --- actions and their order ----------------------------------------------------------------


def test_allow_with_no_rules_allows_nothing_and_an_empty_rule_allows_everything() -> None:
    (deny_all,) = stages(policy("nothing", "{}"))
    assert deny_all["rules"].get("action", "ALLOW") == "ALLOW" and "policies" not in deny_all["rules"]
    (allow_all,) = stages(policy("everything", "rules: [{}]"))
    assert only_policy(allow_all) == {
        "permissions": [{"andRules": {"rules": [{"any": True}]}}],
        "principals": [{"andIds": {"ids": [{"any": True}]}}],
    }


def test_custom_then_deny_then_allow_and_audit_only_shadows() -> None:
    text = (policy("a-allow", "rules: [{}]") + policy("b-deny", "action: DENY\nrules: [{to: [{operation: {paths: [/admin*]}}]}]")
            + policy("c-audit", "action: AUDIT\nrules: [{}]")
            + policy("d-custom", "action: CUSTOM\nprovider: {name: ext}\nrules: [{to: [{operation: {paths: [/ext]}}]}]"))
    audit, custom, deny, allow = stages(text)
    assert "rules" not in audit and audit["shadowRules"]["action"] == "DENY"
    assert audit["shadowRulesStatPrefix"] == "istio_audit_"
    # No extension provider can be configured: CUSTOM fails closed, denying what it would have sent out.
    assert custom["rules"]["action"] == "DENY" and list(custom["rules"]["policies"]) == ["ns[default]-policy[d-custom]-rule[0]"]
    assert deny["rules"]["action"] == "DENY"
    assert only_policy(deny)["permissions"][0]["andRules"]["rules"] == [
        {"orRules": {"rules": [{"urlPath": {"path": {"prefix": "/admin"}}}]}}]
    assert allow["rules"].get("action", "ALLOW") == "ALLOW"


def test_dry_run_policies_are_shadow_rules_and_do_not_enforce() -> None:
    (stage,) = stages(policy("dry", "{}", annotations='{"istio.io/dry-run": "true"}'))
    assert "rules" not in stage
    assert stage["shadowRulesStatPrefix"] == "istio_dry_run_allow_"


# --- rule fields ---------------------------------------------------------------------------


def test_sources_become_peer_identity_matchers() -> None:
    (stage,) = stages(policy("p", """
rules:
- from:
  - source:
      principals: [cluster.local/ns/default/sa/client, "cluster.local/ns/dev/*", "*/sa/admin"]
      notNamespaces: [kube-*]
      ipBlocks: [10.0.0.0/8]
      remoteIpBlocks: [1.2.3.4]
"""))
    ids = only_policy(stage)["principals"][0]["andIds"]["ids"]
    assert ids[0]["orIds"]["ids"] == [
        {"authenticated": {"principalName": {"exact": "spiffe://cluster.local/ns/default/sa/client"}}},
        {"authenticated": {"principalName": {"prefix": "spiffe://cluster.local/ns/dev/"}}},
        {"authenticated": {"principalName": {"safeRegex": {"regex": r"spiffe://.*/sa/admin"}}}},
    ]
    assert ids[1] == {"notId": {"orIds": {"ids": [{"authenticated": {"principalName": {"safeRegex": {"regex": ".*/ns/kube-.*/.*"}}}}]}}}
    assert ids[2] == {"orIds": {"ids": [{"directRemoteIp": {"addressPrefix": "10.0.0.0", "prefixLen": 8}}]}}
    assert ids[3] == {"orIds": {"ids": [{"remoteIp": {"addressPrefix": "1.2.3.4", "prefixLen": 32}}]}}


def test_operations_match_host_port_method_and_path_with_templates() -> None:
    (stage,) = stages(policy("p", """
rules:
- to:
  - operation:
      hosts: [reviews]
      ports: ["19080", "7000"]
      notMethods: [DELETE]
      paths: [/exact, "*.png", "/api/{*}/items/{**}"]
"""))
    host, ports, methods, paths = only_policy(stage)["permissions"][0]["andRules"]["rules"]
    assert host["orRules"]["rules"][0]["header"]["stringMatch"]["safeRegex"]["regex"] == "(?i)reviews(:[0-9]+)?"
    # 19080 is the app port behind this chain: always true here; another port is left to Envoy.
    assert ports["orRules"]["rules"] == [{"any": True}, {"destinationPort": 7000}]
    assert methods == {"notRule": {"orRules": {"rules": [{"header": {"name": ":method", "stringMatch": {"exact": "DELETE"}}}]}}}
    exact, suffix, template = paths["orRules"]["rules"]
    assert exact == {"urlPath": {"path": {"exact": "/exact"}}}
    assert suffix == {"urlPath": {"path": {"suffix": ".png"}}}
    assert template["uriTemplate"]["typedConfig"]["pathTemplate"] == "/api/*/items/**"


def jwt_claim(path: list[str], matcher: dict[str, Any]) -> dict[str, Any]:
    one = {"stringMatch": matcher}
    return {"sourcedMetadata": {"metadataMatcher": {
        "filter": "envoy.filters.http.jwt_authn",
        "path": [{"key": k} for k in ["payload", *path]],
        "value": {"orMatch": {"valueMatchers": [one, {"listMatch": {"oneOf": one}}]}},
    }}}


def test_request_principals_and_token_conditions_read_the_jwt_payload_metadata() -> None:
    (stage,) = stages(policy("p", """
rules:
- from: [{source: {requestPrincipals: ["https://issuer.example.com/tenant/alice"]}}]
  when:
  - {key: "request.auth.claims[groups]", values: [admin]}
  - {key: request.auth.audiences, values: [api]}
"""))
    principal, groups, audiences = only_policy(stage)["principals"][0]["andIds"]["ids"]
    # The issuer keeps its slashes: iss/sub splits at the last one.
    assert principal["orIds"]["ids"] == [{"andIds": {"ids": [
        jwt_claim(["iss"], {"exact": "https://issuer.example.com/tenant"}), jwt_claim(["sub"], {"exact": "alice"})]}}]
    assert groups["orIds"]["ids"] == [jwt_claim(["groups"], {"exact": "admin"})]
    assert audiences["orIds"]["ids"] == [jwt_claim(["aud"], {"exact": "api"})]


def test_conditions_on_headers_source_and_destination() -> None:
    (stage,) = stages(policy("p", """
rules:
- when:
  - {key: "request.headers[x-user]", values: ["bob*"]}
  - {key: source.namespace, notValues: [dev]}
  - {key: destination.port, values: ["8000"]}
  - {key: connection.sni, values: ["*.example.com"]}
"""))
    rule = only_policy(stage)
    header, namespace = rule["principals"][0]["andIds"]["ids"]
    assert header["orIds"]["ids"] == [{"header": {"name": "x-user", "stringMatch": {"prefix": "bob"}}}]
    assert "notId" in namespace
    assert rule["permissions"][0]["andRules"]["rules"] == [
        {"orRules": {"rules": [{"destinationPort": 8000}]}},
        {"orRules": {"rules": [{"requestedServerName": {"suffix": ".example.com"}}]}},
    ]


# --- TCP ports -------------------------------------------------------------------------------


def test_on_tcp_an_allow_rule_with_http_fields_is_dropped_so_it_allows_nothing() -> None:
    text = policy("p", "rules: [{to: [{operation: {methods: [GET]}}]}, {from: [{source: {namespaces: [default]}}]}]")
    (stage,) = stages(text, port=TCP, tcp=True)
    assert stage["statPrefix"] == "tcp."
    assert list(stage["rules"]["policies"]) == ["ns[default]-policy[p]-rule[1]"]
    (http,) = stages(text)
    assert len(http["rules"]["policies"]) == 2


def test_on_tcp_a_deny_rule_ignores_http_fields_so_it_denies_more() -> None:
    text = policy("p", """
action: DENY
rules:
- from: [{source: {principals: [cluster.local/ns/default/sa/bad], requestPrincipals: ["*"]}}]
  to: [{operation: {paths: [/admin]}}]
""")
    (stage,) = stages(text, port=TCP, tcp=True)
    rule = only_policy(stage)
    assert rule["permissions"] == [{"andRules": {"rules": [{"any": True}]}}]
    assert rule["principals"][0]["andIds"]["ids"] == [
        {"orIds": {"ids": [{"authenticated": {"principalName": {"exact": "spiffe://cluster.local/ns/default/sa/bad"}}}]}}]


# --- on the listeners, consistent, for real Istio YAML -------------------------------------------


def rbac_filters(resources: dict[str, Any]) -> list[str]:
    """Every rbac filter name on the proxy's listeners, as JSON text (for a containment check)."""
    text = json.dumps([json_format.MessageToDict(listener) for listener in resources[LISTENER].values()])
    return [name for name in (authz.HTTP_RBAC_FILTER, authz.NETWORK_RBAC_FILTER) if name in text]


def test_generated_listeners_carry_the_filters_on_receiving_chains_only() -> None:
    snap = snapshot(policy("p", "rules: [{}]"), workloads=WORKLOADS)
    resources = generate(REVIEWS, snap)
    assert_consistent(resources)
    assert rbac_filters(resources) == [authz.HTTP_RBAC_FILTER, authz.NETWORK_RBAC_FILTER]
    client = sidecar("client", namespace="other", ip="127.0.0.30")
    assert rbac_filters(generate(client, snap)) == []


CORPUS = sorted(p for p in CONFORMANCE.rglob("*.yaml") if "kind: AuthorizationPolicy" in p.read_text(errors="replace"))


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: str(p.relative_to(CONFORMANCE)))
def test_every_istio_authorization_policy_translates_for_http_and_tcp(path: Path) -> None:
    parsed = parse_text(path.read_text(), path=str(path))
    policies = [c for c in parsed.configs if c.kind == "AuthorizationPolicy"]
    assert policies, f"{path}: no AuthorizationPolicy parsed: {[d.format() for d in parsed.errors]}"
    # Each one, made mesh-wide, so it reaches one sidecar and one gateway.
    mesh_wide = [dataclasses.replace(c, namespace="istio-system", spec=c.spec.model_copy(
        update={"selector": None, "target_ref": None, "target_refs": []})) for c in policies]
    snap = MeshSnapshot.build(configs=mesh_wide, workloads=WORKLOADS)
    for proxy in (REVIEWS, router()):
        resources = generate(proxy, snap)
        assert_consistent(resources)
    assert stages_for(snap, REVIEWS, HTTP) and stages_for(snap, REVIEWS, TCP, tcp=True)


def stages_for(snap: MeshSnapshot, proxy: Proxy, port: int, *, tcp: bool = False) -> list[Any]:
    return (authz.network_filters if tcp else authz.http_filters)(proxy, snap, port=port)
