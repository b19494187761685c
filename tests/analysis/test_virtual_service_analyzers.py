"""VirtualService analyzers on small inputs: hosts, ports, subsets, gateways, conflicts, dead rules."""

from __future__ import annotations

from tests.analysis.conftest import findings, pairs

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: two, namespace: default}
spec:
  ports: [{name: http, port: 80}, {name: https, port: 443}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: ["*.example.com"]
  ports: [{number: 443, name: https, protocol: HTTPS}]
"""


def vs(name: str, body: str, namespace: str = "default") -> str:
    return f"---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{body}"


def test_destination_hosts_resolve_to_services_and_service_entries() -> None:
    text = SERVICES + vs("ok", "  http:\n  - route:\n    - destination: {host: reviews}\n    - destination: {host: api.example.com}\n")
    assert findings(text, "virtualservice.DestinationHostAnalyzer") == []


def test_unknown_host_wrong_port_and_ambiguous_port() -> None:
    text = SERVICES + vs(
        "bad",
        "  http:\n  - route:\n    - destination: {host: ghost}\n"
        "    - destination: {host: reviews, port: {number: 1}}\n"
        "    - destination: {host: two}\n",
    )
    messages = [d.message for d in findings(text, "virtualservice.DestinationHostAnalyzer")]
    assert messages == [
        'Referenced host not found: "ghost"',
        'Referenced host:port not found: "reviews:1"',
        'This VirtualService routes to a service "two" that exposes multiple ports [80 443]. '
        "Specifying a port in the destination is required to disambiguate.",
    ]


def test_service_in_another_namespace_is_found_by_fqdn_unless_not_exported() -> None:
    text = SERVICES + vs("x", "  http:\n  - route:\n    - destination: {host: reviews.default.svc.cluster.local}\n", "other")
    assert findings(text, "virtualservice.DestinationHostAnalyzer") == []
    hidden = text.replace("metadata: {name: reviews, namespace: default}", "metadata:\n  name: reviews\n  namespace: default\n  annotations: {networking.istio.io/exportTo: .}")
    assert pairs(findings(hidden, "virtualservice.DestinationHostAnalyzer")) == [("IST0101", "VirtualService other/x")]


def test_subset_must_be_defined_by_a_destination_rule() -> None:
    text = vs("r", "  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n    - destination: {host: reviews, subset: v9}\n")
    text += "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews.default.svc.cluster.local\n  subsets: [{name: v1, labels: {version: v1}}]\n"
    found = findings(text, "virtualservice.DestinationRuleAnalyzer")
    assert [d.message for d in found] == ['Referenced host+subset in destinationrule not found: "reviews+v9"']
    assert found[0].field == "spec.http[0].route[1].destination.subset"


def test_gateway_must_exist_and_serve_a_host() -> None:
    gw = "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: edge}\nspec:\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"./shop.example.com\"]\n"
    good = gw + vs("shop", "  hosts: [shop.example.com]\n  gateways: [edge/gw]\n  http: [{route: [{destination: {host: shop}}]}]\n", "edge")
    assert findings(good, "virtualservice.GatewayAnalyzer") == []
    # "./" hosts are visible only to VirtualServices in the Gateway's namespace.
    elsewhere = gw + vs("shop", "  hosts: [shop.example.com]\n  gateways: [edge/gw, gone]\n  http: [{route: [{destination: {host: shop}}]}]\n")
    messages = [d.message for d in findings(elsewhere, "virtualservice.GatewayAnalyzer")]
    assert messages == [
        'Referenced gateway not found: "gone"',
        "one or more host [shop.example.com] defined in VirtualService default/shop not found in Gateway edge/gw.",
        "one or more host [shop.example.com] defined in VirtualService default/shop not found in Gateway default/gone.",
    ]


def test_mesh_virtual_services_claiming_one_host_conflict() -> None:
    text = vs("a", "  hosts: [reviews]\n  http: [{route: [{destination: {host: reviews}}]}]\n")
    text += vs("b", "  hosts: [reviews.default.svc.cluster.local]\n  http: [{route: [{destination: {host: reviews}}]}]\n", "other")
    text += vs("c", "  hosts: [reviews]\n  gateways: [gw]\n  http: [{route: [{destination: {host: reviews}}]}]\n")
    found = findings(text, "virtualservice.ConflictingMeshGatewayHostsAnalyzer")
    assert pairs(found) == [("IST0109", "VirtualService default/a"), ("IST0109", "VirtualService other/b")]
    assert "default/a,other/b" in found[0].message and "*/reviews.default.svc.cluster.local" in found[0].message


def test_jwt_claim_routing_needs_request_authentication_on_gateway_pods() -> None:
    text = vs(
        "claims",
        "  hosts: [a.com]\n  gateways: [gw]\n  http:\n  - match: [{headers: {\"@request.auth.claims.group\": {exact: admin}}}]\n"
        "    route: [{destination: {host: a}}]\n",
    )
    text += "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {istio: ingressgateway}\n"
    assert pairs(findings(text, "virtualservice.JWTClaimRouteAnalyzer")) == [("IST0149", "VirtualService default/claims")]
    text += "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: istio-system}\nspec:\n  selector: {matchLabels: {istio: ingressgateway}}\n"
    assert findings(text, "virtualservice.JWTClaimRouteAnalyzer") == []


def test_rules_after_a_catch_all_and_shadowed_prefixes() -> None:
    text = vs(
        "dead",
        "  hosts: [a]\n  http:\n"
        "  - name: api\n    match: [{uri: {prefix: /api}}]\n    route: [{destination: {host: a}}]\n"
        "  - name: api-v1\n    match: [{uri: {prefix: /api/v1}}]\n    route: [{destination: {host: a}}]\n"
        "  - route: [{destination: {host: a}}]\n"
        "  - route: [{destination: {host: a}}]\n",
    )
    messages = [d.message for d in findings(text, "schema.ValidationAnalyzer.VirtualService")]
    assert messages == [
        "VirtualService rule #3 not used (only the last rule can have no matches).",
        'VirtualService rule "api-v1" match #0 of prefix /api/v1 is not used (duplicate/overlapping match in rule #0 of prefix /api on "api").',
    ]
