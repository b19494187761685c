"""Described requests through generated config: what a user would see."""

from malla.pilot.generate import generate
from malla.pilot.protocol import Protocol
from malla.pilot.simulate import Request, simulate
from malla.pilot.snapshot import MeshConfig

from tests.pilot.bookinfo import bookinfo, ingress, productpage_proxy
from tests.pilot.mesh import sidecar, snapshot, workload

REVIEWS = "reviews.default.svc.cluster.local"


def via_proxy(resources, host, path="/", **kw):
    return simulate(resources, Request(port=15001, address="127.0.0.21", host=host, path=path, **kw))


def test_default_routing_reaches_the_service_by_any_of_its_names():
    res = generate(productpage_proxy(), bookinfo())
    for host in ("reviews:9080", "reviews.default:9080", "reviews.default.svc:9080", f"{REVIEWS}:9080"):
        r = via_proxy(res, host, "/reviews/0")
        assert r.listener == "127.0.0.21_15001"
        assert r.route_config == "15001"
        assert r.virtual_host == f"{REVIEWS}:9080"
        assert r.cluster == f"outbound|9080||{REVIEWS}"
        assert r.route.route.retry_policy.num_retries.value == 2
        assert r.route.route.timeout.ToNanoseconds() == 0


def test_unknown_hosts_pass_through_or_are_blocked():
    res = generate(productpage_proxy(), bookinfo())
    assert via_proxy(res, "example.com").cluster == "PassthroughCluster"
    blocked = generate(productpage_proxy(), bookinfo(mesh=MeshConfig(outbound_traffic_policy="REGISTRY_ONLY")))
    r = via_proxy(blocked, "example.com")
    assert (r.virtual_host, r.direct_response) == ("block_all", 502)


def test_header_based_routing_jason_goes_to_v2():
    res = generate(
        productpage_proxy(), bookinfo("destination-rule-all.yaml", "virtual-service-reviews-jason-v2-v3.yaml")
    )
    jason = via_proxy(res, "reviews:9080", headers={"end-user": "jason"})
    assert jason.cluster == f"outbound|9080|v2|{REVIEWS}"
    assert via_proxy(res, "reviews:9080", headers={"end-user": "bob"}).cluster == f"outbound|9080|v3|{REVIEWS}"
    assert via_proxy(res, "reviews:9080").cluster == f"outbound|9080|v3|{REVIEWS}"


def test_weighted_routing():
    res = generate(productpage_proxy(), bookinfo("destination-rule-all.yaml", "virtual-service-reviews-80-20.yaml"))
    r = via_proxy(res, "reviews:9080")
    assert r.weighted_clusters == ((f"outbound|9080|v1|{REVIEWS}", 80), (f"outbound|9080|v2|{REVIEWS}", 20))


def test_fault_injection_aborts_for_jason_only():
    res = generate(
        productpage_proxy(), bookinfo("destination-rule-all.yaml", "virtual-service-ratings-test-abort.yaml")
    )
    jason = via_proxy(res, "ratings:9080", headers={"end-user": "jason"})
    assert jason.fault.abort.http_status == 500
    assert jason.fault.abort.percentage.numerator == 1_000_000  # 100% of a million
    assert via_proxy(res, "ratings:9080").fault is None


def test_gateway_routes_bookinfo_paths_and_404s_the_rest():
    snap = bookinfo("bookinfo-gateway.yaml", "destination-rule-all.yaml")
    res = generate(ingress(), snap)
    page = simulate(res, Request(port=8080, host="bookinfo.example.com", path="/productpage"))
    assert (page.listener, page.route_config) == ("0.0.0.0_8080", "http.8080")
    assert page.cluster == "outbound|9080||productpage.default.svc.cluster.local"
    assert simulate(res, Request(port=8080, host="x", path="/static/css/a.css")).cluster == page.cluster
    missing = simulate(res, Request(port=8080, host="x", path="/admin"))
    assert missing.error == "no route matched (404)"


def test_inbound_accepts_mtls_and_plaintext_by_default_then_strict():
    proxy = sidecar("reviews", ip="127.0.0.31", inbound=[(9080, 19080, Protocol.HTTP)])
    res = generate(proxy, snapshot())
    plain = simulate(res, Request(port=9080, address="127.0.0.31", host="reviews:9080"))
    assert (plain.listener, plain.filter_chain, plain.cluster) == ("virtualInbound", "inbound|9080||", "inbound|9080||")
    mtls = simulate(res, Request(port=9080, address="127.0.0.31", host="reviews:9080", tls=True))
    assert mtls.filter_chain == "inbound|9080||-mtls"
    strict = generate(
        proxy,
        snapshot(
            """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
"""
        ),
    )
    refused = simulate(strict, Request(port=9080, address="127.0.0.31", host="reviews:9080"))
    assert refused.error == "no filter chain matched (the connection is closed)"


def test_tcp_service_gets_its_own_listener_and_weighted_tcp_routes():
    snap = snapshot(
        """
apiVersion: v1
kind: Service
metadata: {name: mongodb}
spec: {selector: {app: mongodb}, ports: [{name: mongo, port: 27017}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mongodb}
spec: {host: mongodb, subsets: [{name: a, labels: {v: a}}, {name: b, labels: {v: b}}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mongodb}
spec:
  hosts: [mongodb]
  tcp:
  - match: [{port: 27017}]
    route:
    - {destination: {host: mongodb, subset: a}, weight: 75}
    - {destination: {host: mongodb, subset: b}, weight: 25}
""",
        workloads=[workload("mongodb", "127.0.0.40", ports={"mongo": 27017})],
    )
    res = generate(sidecar(ip="127.0.0.41"), snap)
    r = simulate(res, Request(port=27017, address="127.0.0.41", protocol="tcp"))
    assert r.listener == "127.0.0.41_27017"
    assert r.weighted_clusters == (
        ("outbound|27017|a|mongodb.default.svc.cluster.local", 75),
        ("outbound|27017|b|mongodb.default.svc.cluster.local", 25),
    )


def test_tls_services_share_a_port_by_sni():
    snap = snapshot(
        """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: apis}
spec:
  hosts: [a.example.com, b.example.com]
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
"""
    )
    res = generate(sidecar(ip="127.0.0.42"), snap)
    a = simulate(res, Request(port=443, address="127.0.0.42", protocol="tcp", tls=True, sni="a.example.com"))
    b = simulate(res, Request(port=443, address="127.0.0.42", protocol="tcp", tls=True, sni="b.example.com"))
    assert (a.cluster, b.cluster) == ("outbound|443||a.example.com", "outbound|443||b.example.com")
    assert simulate(res, Request(port=443, address="127.0.0.42", tls=True, sni="c.example.com")).error
