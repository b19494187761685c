import pytest

from malla.pilot.generate import generate
from malla.pilot.sidecar_scope import build_scope
from malla.pilot.simulate import Request, simulate
from malla.pilot.snapshot import MeshConfig, sidecar_for

from tests.pilot.mesh import sidecar, snapshot, workload

SIDECARS = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec:
  egress: [{hosts: ["*/*"]}]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: ns-wide, namespace: shop}
spec:
  egress: [{hosts: ["./*", "istio-system/*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: for-cart, namespace: shop}
spec:
  workloadSelector: {labels: {app: cart}}
  egress: [{hosts: ["~/*"]}]
"""


@pytest.mark.parametrize(
    ("namespace", "labels", "expected"),
    [("shop", {"app": "cart"}, "for-cart"), ("shop", {"app": "ui"}, "ns-wide"), ("default", {"app": "x"}, "default")],
)
def test_sidecar_resource_selection_follows_istio(namespace, labels, expected):
    snap = snapshot(SIDECARS)
    assert snap.sidecar_scope(sidecar(namespace=namespace, labels=labels)).name == expected


def test_scope_filters_services_and_virtual_services_by_egress_hosts():
    text = (
        SIDECARS
        + """
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop-api, namespace: shop}
spec: {hosts: [api.shop.internal], resolution: DNS, ports: [{number: 80, name: http}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: other, namespace: elsewhere}
spec: {hosts: [other.internal], resolution: DNS, ports: [{number: 80, name: http}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: shop}
spec: {hosts: [api.shop.internal], http: [{route: [{destination: {host: api.shop.internal}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: gw-only, namespace: shop}
spec: {hosts: [api.shop.internal], gateways: [ingress], http: [{route: [{destination: {host: api.shop.internal}}]}]}
"""
    )
    snap = snapshot(text)
    ui = build_scope(sidecar(namespace="shop", labels={"app": "ui"}), snap)
    assert [s.hostname for s in ui.services] == ["api.shop.internal"]
    assert [v.name for v in ui.virtual_services] == ["api"]
    assert ui.outbound_policy == "ALLOW_ANY"
    cart = build_scope(sidecar(namespace="shop", labels={"app": "cart"}), snap)
    assert cart.services == () and cart.virtual_services == ()
    outsider = build_scope(sidecar(namespace="default"), snap)
    assert [s.hostname for s in outsider.services] == ["api.shop.internal", "other.internal"]
    assert outsider.outbound_policy == "REGISTRY_ONLY"


def test_snapshot_indexes_configs():
    snap = snapshot(SIDECARS)
    assert [c.name for c in snap.configs_of("Sidecar")] == ["default", "for-cart", "ns-wide"]
    assert [c.name for c in snap.configs_of("Sidecar", "shop")] == ["for-cart", "ns-wide"]
    assert snap.config("Sidecar", "shop", "ns-wide").namespace == "shop"
    assert snap.config("Sidecar", "shop", "missing") is None


def test_mesh_config_is_one_frozen_object_in_the_hash():
    mesh = MeshConfig()
    assert mesh.default_retries.attempts == 2 and not mesh.protocol_sniffing
    with pytest.raises(AttributeError):
        mesh.trust_domain = "x"  # type: ignore[misc]
    assert snapshot(mesh=mesh).version != snapshot(mesh=mesh.with_(trust_domain="example.org")).version


def test_a_workloads_sidecar_serves_its_registered_ports():
    reviews = workload("reviews", "127.0.0.5", ports={"http": 9080, "grpc-admin": 9090})
    proxy = sidecar_for(reviews, app_ports={"http": 40001})
    assert [(p.port, p.app_port, p.protocol.value) for p in proxy.inbound] == [
        (9080, 40001, "HTTP"),
        (9090, 9090, "GRPC"),
    ]
    snap = snapshot(workloads=[reviews])
    served = simulate(generate(proxy, snap), Request(port=9080, address="127.0.0.5", host="reviews:9080"))
    assert served.cluster == "inbound|9080||"
    caller = simulate(
        generate(sidecar(ip="127.0.0.6"), snap), Request(port=15001, address="127.0.0.6", host="reviews:9080")
    )
    assert caller.cluster == "outbound|9080||reviews.default.svc.cluster.local"
