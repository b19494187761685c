"""Analyzers of Kubernetes workloads and workload-selecting policies, on small inputs."""

from __future__ import annotations

from tests.analysis.conftest import findings, pairs

PODS = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: cart-1, namespace: shop, labels: {app: cart}}
spec: {containers: [{name: cart}]}
"""


def test_unnamed_service_port_is_reported_with_its_numbers() -> None:
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop}\nspec:\n  ports: [{port: 80, targetPort: 8080}, {name: http-web, port: 81}]\n"
    found = findings(svc, "service.PortNameAnalyzer")
    assert [d.message for d in found] == ["Port name  (port: 80, targetPort: 8080) doesn't follow the naming convention of Istio port."]
    assert found[0].level == "info" and found[0].field == "spec.ports[0]"


def test_deployment_behind_services_disagreeing_on_protocol() -> None:
    text = PODS + """
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart, namespace: shop}
spec:
  template:
    metadata: {labels: {app: cart}}
    spec: {containers: [{name: cart}]}
---
apiVersion: v1
kind: Service
metadata: {name: cart-tcp, namespace: shop}
spec: {selector: {app: cart}, ports: [{name: tcp, port: 80, protocol: TCP}]}
---
apiVersion: v1
kind: Service
metadata: {name: cart-udp, namespace: shop}
spec: {selector: {app: cart}, ports: [{name: udp, port: 80, protocol: UDP}]}
"""
    found = findings(text, "deployment.MultiServiceAnalyzer")
    assert [d.message for d in found] == [
        "This deployment cart is associated with multiple services using port 80 but different protocols: [shop/cart-tcp shop/cart-udp]"
    ]


def test_application_running_as_the_proxy_uid() -> None:
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: app, securityContext: {runAsUser: 1337}}\n  - {name: istio-proxy, securityContext: {runAsUser: 1337}}\n"
    found = findings(pod, "applicationUID.Analyzer")
    assert pairs(found) == [("IST0144", "Pod default/p")]
    assert found[0].field == "spec.containers[0].securityContext.runAsUser"


def test_sidecar_selectors() -> None:
    def sidecar(name: str, selector: str = "") -> str:
        sel = f"\n  workloadSelector: {{labels: {selector}}}" if selector else " {}"
        return f"---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: {name}, namespace: shop}}\nspec:{sel}\n"

    text = PODS + sidecar("s1", "{app: cart}") + sidecar("s2", "{app: cart}") + sidecar("s3", "{app: none}") + sidecar("d1") + sidecar("d2")
    found = findings(text, "sidecar.SelectorAnalyzer")
    assert sorted(pairs(found)) == [
        ("IST0101", "Sidecar shop/s3"),
        ("IST0110", "Sidecar shop/s1"),
        ("IST0110", "Sidecar shop/s2"),
        ("IST0111", "Sidecar shop/d1"),
        ("IST0111", "Sidecar shop/d2"),
    ]
    conflict = next(d for d in found if d.code == "IST0110")
    assert conflict.message == 'The Sidecars [s1 s2] in namespace "shop" select the same workload pod "cart-1", which can lead to undefined behavior.'


def test_telemetry_selectors_and_empty_access_log_providers() -> None:
    text = PODS + """
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: t1, namespace: shop}
spec:
  selector: {matchLabels: {app: nope}}
  accessLogging: [{filter: {expression: "response.code >= 500"}}]
"""
    assert pairs(findings(text, "telemetry.SelectorAnalyzer")) == [("IST0101", "Telemetry shop/t1")]
    found = findings(text, "telemetry.ProviderAnalyzer")
    assert [d.message for d in found] == ['The Telemetry t1 in namespace "shop" with empty providers will be ignored.']
    with_default = findings(text, "telemetry.ProviderAnalyzer", mesh_config={"defaultProviders": {"accessLogging": ["envoy"]}})
    assert with_default == []


def test_authorization_policy_without_workloads_and_with_unknown_namespaces() -> None:
    text = PODS + """
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: cart, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  rules: [{from: [{source: {namespaces: ["shop", "front-*", "ghost"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: nothing, namespace: shop}
spec:
  selector: {matchLabels: {app: gone}}
---
apiVersion: v1
kind: Namespace
metadata: {name: front-end}
"""
    found = findings(text, "auth.AuthorizationPoliciesAnalyzer")
    assert [(d.resource, d.message) for d in found] == [
        ("AuthorizationPolicy shop/cart", 'Referenced namespace not found: "ghost"'),
        ("AuthorizationPolicy shop/nothing", "No matching workloads for this resource with the following labels: app=gone"),
    ]


def test_selector_on_kubernetes_gateway_pods_is_ineffective() -> None:
    text = """
apiVersion: v1
kind: Pod
metadata: {name: gw-pod, labels: {gateway.networking.k8s.io/gateway-name: web}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ap}
spec:
  selector: {matchLabels: {gateway.networking.k8s.io/gateway-name: web}}
"""
    found = findings(text, "k8sgateway.SelectorAnalyzer")
    assert [d.message for d in found] == ["Ineffective selector on Kubernetes Gateway web. Use the TargetRef field instead."]
