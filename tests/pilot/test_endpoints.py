from envoy.config.core.v3 import health_check_pb2

from malla.pilot.endpoints import build_endpoints

from tests.pilot.mesh import sidecar, snapshot, workload

REVIEWS = """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""
HOST = "reviews.default.svc.cluster.local"
WORKLOADS = [
    workload("reviews-v2", "127.0.0.12", labels={"app": "reviews", "version": "v2"}, locality="us/east/b"),
    workload("reviews-v1", "127.0.0.11", labels={"app": "reviews", "version": "v1"}, locality="us/east/a"),
    workload("reviews-v1b", "127.0.0.13", labels={"app": "reviews", "version": "v1"}, locality="eu/west/a"),
    workload("reviews-sick", "127.0.0.14", labels={"app": "reviews", "version": "v1"}, healthy=False),
]


def addresses(cla):
    return [
        (g.locality.region, g.priority, [e.endpoint.address.socket_address.address for e in g.lb_endpoints])
        for g in cla.endpoints
    ]


def assignments(text=REVIEWS, *, proxy=None, names=None):
    snap = snapshot(text, workloads=WORKLOADS)
    names = names or [f"outbound|9080||{HOST}", f"outbound|9080|v1|{HOST}", f"outbound|9080|v2|{HOST}"]
    return {a.cluster_name: a for a in build_endpoints(proxy or sidecar(), snap, names)}


def test_subsets_select_by_label_and_unhealthy_endpoints_are_left_out():
    out = assignments()
    assert addresses(out[f"outbound|9080|v1|{HOST}"]) == [("eu", 0, ["127.0.0.13"]), ("us", 0, ["127.0.0.11"])]
    assert addresses(out[f"outbound|9080|v2|{HOST}"]) == [("us", 0, ["127.0.0.12"])]
    every = [a for g in out[f"outbound|9080||{HOST}"].endpoints for a in g.lb_endpoints]
    assert len(every) == 3
    assert all(e.health_status == health_check_pb2.HEALTHY for e in every)


def test_endpoint_metadata_drives_auto_mtls():
    (endpoint,) = assignments()[f"outbound|9080|v2|{HOST}"].endpoints[0].lb_endpoints
    md = endpoint.metadata.filter_metadata
    assert md["envoy.transport_socket_match"]["tlsMode"] == "istio"
    assert md["istio"]["workload"] == "default/reviews-v2"


def test_unknown_subset_inbound_and_foreign_names_get_no_assignment():
    out = assignments(
        names=[f"outbound|9080|v9|{HOST}", "inbound|9080||", "BlackHoleCluster", "outbound|80||nope.example.com"]
    )
    assert out == {}


def test_locality_failover_priorities_need_outlier_detection():
    with_outlier = REVIEWS.replace(
        "  host: reviews\n", "  host: reviews\n  trafficPolicy: {outlierDetection: {consecutive5xxErrors: 1}}\n"
    )
    proxy = sidecar(locality="us/east/a")
    plain = assignments(proxy=proxy)[f"outbound|9080|v1|{HOST}"]
    assert {g.priority for g in plain.endpoints} == {0}
    aware = assignments(with_outlier, proxy=proxy)[f"outbound|9080||{HOST}"]
    assert addresses(aware) == [("us", 0, ["127.0.0.11"]), ("us", 1, ["127.0.0.12"]), ("eu", 2, ["127.0.0.13"])]


def test_locality_failover_to_a_named_region():
    text = REVIEWS.replace(
        "  host: reviews\n",
        "  host: reviews\n  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 1}\n"
        "    loadBalancer: {localityLbSetting: {failover: [{from: asia, to: eu}]}}\n",
    )
    aware = assignments(text, proxy=sidecar(locality="asia/north/a"))[f"outbound|9080||{HOST}"]
    assert sorted((g.locality.region, g.priority) for g in aware.endpoints) == [("eu", 0), ("us", 1), ("us", 1)]


def test_locality_distribute_sets_weights():
    text = REVIEWS.replace(
        "  host: reviews\n",
        "  host: reviews\n  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 1}\n"
        "    loadBalancer:\n      localityLbSetting:\n        distribute: [{from: us/east/*, to: {'us/east/*': 80, 'eu/*': 20}}]\n",
    )
    aware = assignments(text, proxy=sidecar(locality="us/east/a"))[f"outbound|9080||{HOST}"]
    weights = {
        (g.locality.region, g.locality.zone, g.locality.sub_zone): g.load_balancing_weight.value
        for g in aware.endpoints
    }
    assert weights == {("us", "east", "a"): 40, ("us", "east", "b"): 40, ("eu", "west", "a"): 20}


def test_servers_that_disable_mtls_are_sent_plaintext():
    text = (
        REVIEWS
        + """
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: legacy-v2}
spec:
  selector: {matchLabels: {version: v2}}
  mtls: {mode: DISABLE}
"""
    )
    out = assignments(text)
    modes = {
        e.endpoint.address.socket_address.address: e.metadata.filter_metadata["envoy.transport_socket_match"]["tlsMode"]
        for g in out[f"outbound|9080||{HOST}"].endpoints
        for e in g.lb_endpoints
    }
    assert modes == {"127.0.0.11": "istio", "127.0.0.12": "disabled", "127.0.0.13": "istio"}
