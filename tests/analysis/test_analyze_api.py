"""The ``analyze`` entry point: selection, filtering, ordering, and what each Diagnostic carries."""

from __future__ import annotations

import pytest

from malla.analysis import ANALYZERS, analyze
from malla.analysis.messages import catalogue
from tests.analysis.conftest import findings, load_text

TWO_BROKEN = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: zeta, namespace: team-b}
spec:
  hosts: [zeta]
  http:
  - route:
    - destination: {host: nowhere}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: alpha, namespace: team-a}
spec:
  hosts: [alpha]
  gateways: [missing-gw]
  http:
  - route:
    - destination: {host: nowhere}
"""


def test_every_analyzer_declares_catalogue_codes_and_a_unique_name() -> None:
    names = [a.name for a in ANALYZERS]
    assert len(names) == len(set(names))
    known = {m.code for m in catalogue().values()}
    for a in ANALYZERS:
        assert a.codes and set(a.codes) <= known, a.name
        assert a.description


def test_diagnostic_carries_code_level_resource_field_and_origin() -> None:
    found = findings(TWO_BROKEN, "virtualservice.DestinationHostAnalyzer")
    d = next(d for d in found if d.resource == "VirtualService team-b/zeta")
    assert d.code == "IST0101"
    assert d.level == "error"
    assert d.message == 'Referenced host not found: "nowhere"'
    assert d.field == "spec.http[0].route[0].destination.host"
    assert d.origin is not None and d.origin.document == 1


def test_results_are_sorted_by_resource_then_severity() -> None:
    loaded = load_text(TWO_BROKEN)
    found = analyze(loaded.configs, loaded.kube)
    refs = [d.resource or "" for d in found]
    assert refs == sorted(refs)
    alpha = [d.code for d in found if d.resource == "VirtualService team-a/alpha"]
    assert alpha.index("IST0101") < alpha.index("IST0132"), "errors before warnings"
    assert analyze(loaded.configs, loaded.kube) == found, "deterministic"


def test_namespace_keeps_only_that_namespace() -> None:
    loaded = load_text(TWO_BROKEN)
    found = analyze(loaded.configs, loaded.kube, namespace="team-a")
    assert found and {d.resource for d in found} == {"VirtualService team-a/alpha"}


def test_unknown_analyzer_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown analyzer\(s\) nope\..*virtualservice\.GatewayAnalyzer"):
        analyze([], [], analyzers=["nope.Analyzer"])


def test_default_ingress_workload_can_be_left_out() -> None:
    gw = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
"""
    assert findings(gw, "gateway.IngressGatewayPortAnalyzer") == []
    without = findings(gw, "gateway.IngressGatewayPortAnalyzer", default_ingress=False)
    assert [d.message for d in without] == ['Referenced selector not found: "istio=ingressgateway"']
    off = findings(gw, "gateway.IngressGatewayPortAnalyzer", mesh_config={"ingressControllerMode": "OFF"})
    assert [d.code for d in off] == ["IST0101"]


def test_kubernetes_system_namespaces_are_not_reported() -> None:
    svc = """
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: kube-system}
spec:
  ports: [{port: 8080}]
"""
    assert findings(svc, "service.PortNameAnalyzer") == []
    assert findings(svc.replace("kube-system", "apps"), "service.PortNameAnalyzer") != []


def test_malformed_kubernetes_objects_do_not_stop_analysis() -> None:
    text = """
apiVersion: v1
kind: Service
metadata: {name: s}
spec: [not, a, mapping]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec: {template: [x], selector: 3}
---
apiVersion: v1
kind: Pod
metadata: {name: p, labels: {istio: ingressgateway}}
spec: {containers: "istio-proxy", securityContext: 7}
---
apiVersion: v1
kind: Secret
metadata: {name: cert, namespace: default}
data: [1, 2]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: cert}
"""
    loaded = load_text(text)
    found = analyze(loaded.configs, loaded.kube)
    invalid = [d for d in found if d.code == "IST0161"]
    assert [d.resource for d in invalid] == ["Gateway default/gw"]
