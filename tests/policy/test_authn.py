"""RequestAuthentication -> Envoy ``jwt_authn``: what each proxy gets, checked on the generated config.

Applicability (root namespace, namespace, selector, targetRef), merging of
several resources, every jwtRules field, the JWKS clusters a remote key set
needs, and real Envoy accepting the result (``envoy --mode validate``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from google.protobuf.json_format import MessageToDict

from malla.config.parse import parse_text
from malla.pilot.consistency import assert_consistent, http_connection_managers
from malla.pilot.generate import Change, cds_needs_push, generate
from malla.pilot.protocol import Protocol
from malla.pilot.resources import CLUSTER, LISTENER
from malla.pilot.snapshot import MeshConfig, Proxy
from malla.pilot.static_config import static_bootstrap_json
from malla.policy.authn import JWT_AUTHN_FILTER
from malla.policy.jwks import UNUSABLE_JWKS
from tests.conformance import CONFORMANCE
from tests.pilot.mesh import router, sidecar, snapshot
from tests.pilot.test_envoy_validate import validate
from tests.policy.tokens import Issuer

ISSUER = Issuer("https://issuer.example.com")
JWKS = ISSUER.jwks()
REVIEWS = sidecar("reviews", ip="127.0.0.20", inbound=[(9080, 19080, Protocol.HTTP)])


def ra(name: str, rules: str, *, namespace: str = "default", selector: str = "", created: str = "") -> str:
    stamp = f", creationTimestamp: '{created}'" if created else ""
    return f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: {name}, namespace: {namespace}{stamp}}}
spec:
  {selector}
  jwtRules:
{rules}
---"""


def inline_rule(issuer: str = ISSUER.iss, *, more: str = "") -> str:
    return f"  - issuer: {issuer}\n    jwks: '{JWKS}'\n{more}"


def jwt_configs(proxy: Proxy, text: str, *, mesh: MeshConfig | None = None) -> dict[str, dict]:
    """Listener name -> its jwt_authn config (as a dict), for listeners whose first HTTP filter is jwt_authn."""
    resources = generate(proxy, snapshot(text, mesh=mesh))
    assert_consistent(resources)
    out = {}
    for name, listener in resources[LISTENER].items():
        for manager in http_connection_managers(listener):
            first = manager.http_filters[0]
            if first.name == JWT_AUTHN_FILTER:
                config = jwt_pb2.JwtAuthentication()
                first.typed_config.Unpack(config)
                out[name] = MessageToDict(config)
    return out


def only_config(proxy: Proxy, text: str) -> dict:
    configs = list(jwt_configs(proxy, text).values())
    assert configs, "no listener of the proxy checks tokens"
    assert all(c == configs[0] for c in configs)
    return configs[0]


def test_inline_jwks_rule_becomes_a_provider_that_lets_tokenless_requests_through() -> None:
    config = only_config(REVIEWS, ra("jwt", inline_rule(), selector="selector: {matchLabels: {app: reviews}}"))
    assert config == {
        "providers": {
            "origins-0": {
                "issuer": ISSUER.iss,
                "localJwks": {"inlineString": json.dumps(
                    {"keys": [*json.loads(JWKS)["keys"], *json.loads(UNUSABLE_JWKS)["keys"]]}, separators=(",", ":"))},
                "payloadInMetadata": "payload",
                "normalizePayloadInMetadata": {"spaceDelimitedClaims": ["permission", "scope"]},
            }
        },
        "rules": [{
            "match": {"prefix": "/"},
            "requires": {"requiresAny": {"requirements": [{"providerName": "origins-0"}, {"allowMissing": {}}]}},
        }],
        "bypassCorsPreflight": True,
    }


def test_token_locations_and_outputs() -> None:
    more = """    audiences: [bookstore, web]
    fromHeaders: [{name: x-jwt, prefix: "Token "}, {name: authorization, prefix: "Bearer "}]
    fromParams: [token]
    fromCookies: [session]
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders: [{header: x-jwt-sub, claim: sub}, {header: x-jwt-group, claim: group}]
    forwardOriginalToken: true
    spaceDelimitedClaims: [roles]
"""
    provider = only_config(REVIEWS, ra("jwt", inline_rule(more=more)))["providers"]["origins-0"]
    assert provider["audiences"] == ["bookstore", "web"]
    assert provider["fromHeaders"] == [{"name": "x-jwt", "valuePrefix": "Token "},
                                       {"name": "authorization", "valuePrefix": "Bearer "}]
    assert provider["fromParams"] == ["token"]
    assert provider["fromCookies"] == ["session"]
    assert provider["forwardPayloadHeader"] == "x-jwt-payload"
    assert provider["claimToHeaders"] == [{"headerName": "x-jwt-sub", "claimName": "sub"},
                                          {"headerName": "x-jwt-group", "claimName": "group"}]
    assert provider["forward"] is True
    assert provider["normalizePayloadInMetadata"]["spaceDelimitedClaims"] == ["permission", "roles", "scope"]


def test_token_is_stripped_by_default() -> None:
    provider = only_config(REVIEWS, ra("jwt", inline_rule()))["providers"]["origins-0"]
    assert "forward" not in provider  # false: Envoy removes the token before the app sees it


def test_jwks_uri_is_fetched_by_envoy_through_a_cluster_of_its_own() -> None:
    text = ra("jwt", "  - issuer: https://accounts.example.com\n"
                     "    jwksUri: https://accounts.example.com/certs/jwks.json\n    timeout: 2s\n"
                     "  - issuer: local\n    jwksUri: http://127.0.0.1:8081/jwks\n")
    resources = generate(REVIEWS, snapshot(text))
    assert_consistent(resources)
    providers = only_config(REVIEWS, text)["providers"]
    assert providers["origins-0"]["remoteJwks"] == {
        "httpUri": {"uri": "https://accounts.example.com/certs/jwks.json",
                    "cluster": "jwks|https://accounts.example.com:443", "timeout": "2s"},
        "cacheDuration": "300s",
        "asyncFetch": {"fastListener": True},
    }
    assert providers["origins-1"]["remoteJwks"]["httpUri"]["timeout"] == "5s"
    clusters = {n: MessageToDict(c) for n, c in resources[CLUSTER].items() if n.startswith("jwks|")}
    assert set(clusters) == {"jwks|https://accounts.example.com:443", "jwks|http://127.0.0.1:8081"}
    tls_cluster = clusters["jwks|https://accounts.example.com:443"]
    assert tls_cluster["clusterType"]["name"] == "envoy.clusters.dns"
    tls = tls_cluster["transportSocket"]["typedConfig"]
    assert tls["sni"] == "accounts.example.com"
    validation = tls["commonTlsContext"]["validationContext"]
    assert validation["trustedCa"] == {"filename": MeshConfig().system_ca_bundle}
    assert validation["matchTypedSubjectAltNames"] == [{"sanType": "DNS", "matcher": {"exact": "accounts.example.com"}}]
    plain = clusters["jwks|http://127.0.0.1:8081"]
    assert plain["type"] == "STATIC" and "transportSocket" not in plain
    address = plain["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]["socketAddress"]
    assert address == {"address": "127.0.0.1", "portValue": 8081}


def test_every_remote_jwks_cluster_exists_in_the_proxys_clusters() -> None:
    text = ra("a", "  - issuer: a\n    jwksUri: https://a.example.com/jwks\n") + ra(
        "b", "  - issuer: b\n    jwksUri: https://a.example.com:443/other\n", namespace="istio-system")
    resources = generate(REVIEWS, snapshot(text))
    referenced = {p["remoteJwks"]["httpUri"]["cluster"] for p in only_config(REVIEWS, text)["providers"].values()}
    assert referenced == {"jwks|https://a.example.com:443"}
    assert referenced <= set(resources[CLUSTER])


def test_inline_jwks_wins_over_jwks_uri_and_adds_no_cluster() -> None:
    text = ra("jwt", inline_rule(more="    jwksUri: https://ignored.example.com/jwks\n"))
    provider = only_config(REVIEWS, text)["providers"]["origins-0"]
    assert "localJwks" in provider and "remoteJwks" not in provider
    assert not [n for n in generate(REVIEWS, snapshot(text))[CLUSTER] if n.startswith("jwks|")]


def test_issuer_without_keys_gets_a_key_set_that_verifies_nothing() -> None:
    provider = only_config(REVIEWS, ra("jwt", "  - issuer: https://discovery-only.example.com\n"))["providers"]["origins-0"]
    assert provider["localJwks"] == {"inlineString": UNUSABLE_JWKS}


def test_no_request_authentication_no_filter_no_cluster() -> None:
    resources = generate(REVIEWS, snapshot(""))
    assert not jwt_configs(REVIEWS, "")
    assert not [n for n in resources[CLUSTER] if n.startswith("jwks|")]


@pytest.mark.parametrize(
    ("namespace", "selector", "applies"),
    [
        ("default", "", True),  # namespace-wide
        ("default", "selector: {matchLabels: {app: reviews}}", True),
        ("default", "selector: {matchLabels: {app: ratings}}", False),
        ("default", "selector: {matchLabels: {app: reviews, version: v9}}", False),
        ("istio-system", "", True),  # mesh-wide from the root namespace
        ("istio-system", "selector: {matchLabels: {app: reviews}}", True),  # root selector: every namespace
        ("other", "", False),
        ("other", "selector: {matchLabels: {app: reviews}}", False),
        ("default", "targetRef: {kind: Service, group: '', name: reviews}", False),  # waypoints only
    ],
)
def test_which_resources_apply_to_a_sidecar(namespace: str, selector: str, applies: bool) -> None:
    assert bool(jwt_configs(REVIEWS, ra("jwt", inline_rule(), namespace=namespace, selector=selector))) is applies


def test_root_namespace_follows_mesh_config() -> None:
    text = ra("jwt", inline_rule(), namespace="mesh-root")
    assert jwt_configs(REVIEWS, text, mesh=MeshConfig(root_namespace="mesh-root"))
    assert not jwt_configs(REVIEWS, text)


def test_target_ref_picks_the_kubernetes_gateway_it_names() -> None:
    labels = {"gateway.networking.k8s.io/gateway-name": "web", "istio": "ingressgateway"}
    gateway = router("web-istio", namespace="default", labels=labels)
    gateway_yaml = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
---"""
    named = ra("jwt", inline_rule(), selector="targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: web}]")
    other = ra("jwt", inline_rule(), selector="targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: api}")
    configs = jwt_configs(gateway, gateway_yaml + named)
    assert configs and all(c["providers"]["origins-0"]["issuer"] == ISSUER.iss for c in configs.values())
    assert not jwt_configs(gateway, gateway_yaml + other)
    assert not jwt_configs(REVIEWS, named)  # a sidecar is no Kubernetes Gateway


def test_resources_merge_namespace_first_then_root_each_oldest_first() -> None:
    second, first, mesh_wide = Issuer("second"), Issuer("first"), Issuer("mesh")
    text = "".join([
        ra("a-newer", f"  - issuer: second\n    jwks: '{second.jwks()}'\n",
           selector="selector: {matchLabels: {app: reviews}}", created="2026-02-01T00:00:00Z"),
        ra("z-older", f"  - issuer: first\n    jwks: '{first.jwks()}'\n", created="2026-01-01T00:00:00Z"),
        ra("mesh", f"  - issuer: mesh\n    jwks: '{mesh_wide.jwks()}'\n", namespace="istio-system"),
    ])
    config = only_config(REVIEWS, text)
    assert [config["providers"][f"origins-{i}"]["issuer"] for i in range(3)] == ["first", "second", "mesh"]
    either = [{"requiresAny": {"requirements": [{"providerName": f"origins-{i}"}, {"allowMissing": {}}]}}
              for i in range(3)]
    assert config["rules"][0]["requires"] == {"requiresAny": {"requirements": [
        {"providerName": "origins-0"}, {"providerName": "origins-1"}, {"providerName": "origins-2"},
        {"requiresAll": {"requirements": either}},
    ]}}


def test_only_the_receiving_side_checks_tokens() -> None:
    client = sidecar("reviews", ip="127.0.0.21")  # no inbound ports: outbound listeners only
    assert not jwt_configs(client, ra("jwt", inline_rule()))
    configs = jwt_configs(REVIEWS, ra("jwt", inline_rule()))
    listeners = generate(REVIEWS, snapshot(ra("jwt", inline_rule())))[LISTENER]
    assert configs and all(listeners[name].traffic_direction == 1 for name in configs)  # INBOUND


def test_a_request_authentication_change_pushes_clusters() -> None:
    assert cds_needs_push(Change(kinds=frozenset({"RequestAuthentication"})), REVIEWS)


def _conformance_request_authentications() -> list[Path]:
    return sorted(p for p in CONFORMANCE.rglob("*.yaml") if "kind: RequestAuthentication" in p.read_text(errors="replace"))


@pytest.mark.parametrize("path", _conformance_request_authentications(), ids=lambda p: p.name)
def test_istio_yaml_translates_and_is_consistent(path: Path) -> None:
    parsed = parse_text(path.read_text(), path=str(path))
    found = [c for c in parsed.configs if c.kind == "RequestAuthentication"]
    if not found:
        pytest.fail(f"{path} has no valid RequestAuthentication: {[d.format() for d in parsed.errors]}")
    snap = snapshot(_only_request_authentications(path.read_text()))
    for config in found:
        selector = config.spec.selector.match_labels if config.spec.selector is not None else {}
        proxy = sidecar("httpbin", namespace=config.namespace, labels={"app": "httpbin", **selector},
                        inbound=[(8000, 18000, Protocol.HTTP)])
        resources = generate(proxy, snap)
        assert_consistent(resources)
        if config.spec.jwt_rules and not (config.spec.target_ref or config.spec.target_refs):
            assert _has_jwt_filter(resources), f"{config.key} selects the proxy but added no jwt_authn filter"


def _only_request_authentications(text: str) -> str:
    docs = [d for d in text.split("\n---") if "kind: RequestAuthentication" in d]
    return "\n---\n".join(docs)


def _has_jwt_filter(resources: dict) -> bool:
    return any(
        f.name == JWT_AUTHN_FILTER
        for listener in resources[LISTENER].values()
        for manager in http_connection_managers(listener)
        for f in manager.http_filters
    )


@pytest.mark.envoy
def test_real_envoy_accepts_every_kind_of_rule(tmp_path: Path) -> None:
    rules = (
        inline_rule(more="    fromHeaders: [{name: x-jwt}]\n    outputClaimToHeaders: [{header: x-sub, claim: sub}]\n"
                         "    outputPayloadToHeader: x-payload\n    fromCookies: [session]\n")
        + "  - issuer: https://accounts.example.com\n    jwksUri: https://accounts.example.com/jwks\n"
        + "  - issuer: local\n    jwksUri: http://127.0.0.1:8081/jwks\n"
        + "  - issuer: https://discovery-only.example.com\n"
        + "  - issuer: empty\n    jwks: '{\"keys\": []}'\n"
    )
    for proxy in (REVIEWS, router()):
        resources = generate(proxy, snapshot(ra("jwt", rules, namespace=proxy.namespace) + GATEWAY_FOR_ROUTER))
        assert _has_jwt_filter(resources)
        result = validate(static_bootstrap_json(resources, node_id=proxy.id), tmp_path)
        assert result.returncode == 0, f"{proxy.id}: Envoy rejected the config:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"


GATEWAY_FOR_ROUTER = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
"""


def test_the_consistency_check_refuses_a_jwt_provider_without_its_keys_cluster() -> None:
    """Before anything is served: a provider whose JWKS cluster is missing is an error naming both."""
    from malla.pilot.consistency import check_consistency

    resources = generate(sidecar("reviews", inbound=[(9080, 31000, Protocol.HTTP)]),
                         snapshot(ra("a", "  - issuer: a\n    jwksUri: https://a.example.com/jwks\n")))
    assert check_consistency(resources).ok
    clusters = {k: v for k, v in resources[CLUSTER].items() if not k.startswith("jwks|")}
    report = check_consistency({**resources, CLUSTER: clusters})
    assert any("fetches its keys through cluster 'jwks|https://a.example.com:443'" in e for e in report.errors), report.errors
