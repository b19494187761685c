"""Which answer mesh DNS gives for a name, seen from a namespace (pure, no sockets)."""

import ipaddress

from malla.dns.names import Outcome, resolve_name
from malla.pilot.vips import VIP_NETWORK, auto_vips

from tests.pilot.mesh import snapshot, workload

MESH = """
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop}
spec: {selector: {app: ratings}, clusterIP: 10.96.0.30, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec: {selector: {app: ratings}, clusterIP: 10.96.0.31, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: pods}
spec: {selector: {app: pods}, clusterIP: None, ports: [{name: http, port: 8080}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments}
spec:
  hosts: [payments.example.com]
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ledger}
spec:
  hosts: [ledger.internal]
  addresses: [192.0.2.40]
  resolution: STATIC
  endpoints: [{address: 192.0.2.41}]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wiki}
spec:
  hosts: ["*.wikipedia.org"]
  resolution: NONE
  ports: [{number: 443, name: tls, protocol: TLS}]
"""

WORKLOADS = [
    workload("reviews-v1", "10.89.0.2"),
    workload("reviews-v2", "127.0.1.7"),
    workload("pods-a", "10.89.0.6", labels={"app": "pods"}, ports={"http": 8080}),
    workload("pods-b", "10.89.0.10", labels={"app": "pods"}, ports={"http": 8080}),
]


def mesh():
    return snapshot(MESH, workloads=WORKLOADS)


def test_kubernetes_style_names_of_a_workload_service_all_answer_its_vip():
    snap = mesh()
    answers = {resolve_name(snap, n, namespace="default").ipv4 for n in (
        "reviews", "reviews.default", "reviews.default.svc", "reviews.default.svc.cluster.local",
        "REVIEWS.default.svc.cluster.local.",
    )}
    assert len(answers) == 1
    (vip,) = answers.pop()
    assert ipaddress.ip_address(vip) in VIP_NETWORK
    assert vip == auto_vips(snap.registry.services)[("default", "reviews.default.svc.cluster.local")]


def test_short_names_resolve_in_the_asking_workloads_namespace():
    snap = mesh()
    assert resolve_name(snap, "ratings", namespace="shop").ipv4 == ("10.96.0.30",)
    assert resolve_name(snap, "ratings", namespace="default").ipv4 == ("10.96.0.31",)
    assert resolve_name(snap, "ratings.shop", namespace="default").ipv4 == ("10.96.0.30",)


def test_service_entry_hosts():
    snap = mesh()
    payments = resolve_name(snap, "payments.example.com", namespace="default")
    assert payments.outcome is Outcome.MESH and ipaddress.ip_address(payments.ipv4[0]) in VIP_NETWORK
    assert resolve_name(snap, "ledger.internal", namespace="default").ipv4 == ("192.0.2.40",)
    # Hosts under a wildcard entry are real names: the host's resolver knows them.
    assert resolve_name(snap, "en.wikipedia.org", namespace="default").outcome is Outcome.FORWARD


def test_headless_service_answers_its_endpoints():
    answer = resolve_name(mesh(), "pods", namespace="default")
    assert answer.ipv4 == ("10.89.0.6", "10.89.0.10")


def test_unknown_mesh_names_fail_fast_and_others_go_to_the_host():
    snap = mesh()
    # What a resolver tries first for "reviews.default" with Kubernetes' search list:
    assert resolve_name(snap, "reviews.default.default.svc.cluster.local", namespace="default").outcome is Outcome.NXDOMAIN
    assert resolve_name(snap, "cluster.local", namespace="default").outcome is Outcome.NXDOMAIN
    assert resolve_name(snap, "printer.corp.test", namespace="default").outcome is Outcome.FORWARD
    assert resolve_name(snap, "reviews", namespace="elsewhere").outcome is Outcome.FORWARD
