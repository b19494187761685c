from malla.pilot.consistency import assert_consistent, check_consistency
from malla.pilot.generate import Change, cds_needs_push, eds_needs_push, generate, lds_needs_push, rds_needs_push
from malla.pilot.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE

from tests.pilot.bookinfo import bookinfo, ingress, productpage_proxy
from tests.pilot.mesh import router, sidecar

FILES = ("destination-rule-all.yaml", "virtual-service-reviews-jason-v2-v3.yaml", "bookinfo-gateway.yaml")


def serialized(resources):
    return {
        t: {n: m.SerializeToString(deterministic=True) for n, m in by_name.items()} for t, by_name in resources.items()
    }


def test_generation_is_deterministic_and_sorted():
    first = generate(productpage_proxy(), bookinfo(*FILES))
    second = generate(productpage_proxy(), bookinfo(*FILES))
    assert serialized(first) == serialized(second)
    for by_name in first.values():
        assert list(by_name) == sorted(by_name)


def test_every_eds_cluster_has_its_assignment_and_every_listener_its_routes():
    for proxy in (productpage_proxy(), ingress()):
        resources = generate(proxy, bookinfo(*FILES))
        report = check_consistency(resources)
        assert report.ok, report.errors
        assert_consistent(resources)


def test_consistency_reports_dangling_references():
    resources = generate(productpage_proxy(), bookinfo(*FILES))
    del resources[ROUTE]["15001"]
    del resources[ENDPOINT][next(iter(resources[ENDPOINT]))]
    report = check_consistency(resources, secrets=["default"])
    assert any("route configuration '15001'" in e for e in report.errors)
    assert any("waits for endpoints" in e for e in report.errors)
    assert any("secret 'ROOTCA'" in e for e in report.errors)


def test_consistency_warns_about_routes_to_missing_clusters():
    extra = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: typo}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v9}}]}]
"""
    report = check_consistency(generate(productpage_proxy(), bookinfo(extra=extra)))
    assert report.ok
    assert report.warnings == [
        "route configuration 15001 sends to cluster 'outbound|9080|v9|reviews.default.svc.cluster.local', which does not exist"
    ]


def test_snapshot_version_is_a_content_hash():
    assert bookinfo(*FILES).version == bookinfo(*FILES).version
    assert bookinfo(*FILES).version != bookinfo(*FILES[:1]).version


def test_an_endpoint_change_pushes_only_endpoints():
    change = Change(endpoints=frozenset({"reviews.default.svc.cluster.local"}))
    proxy = sidecar()
    assert eds_needs_push(change, proxy)
    assert not cds_needs_push(change, proxy) and not lds_needs_push(change, proxy) and not rds_needs_push(change, proxy)


def test_config_changes_push_what_they_affect():
    proxy, gateway = sidecar(), router()
    vs = Change(kinds=frozenset({"VirtualService"}))
    assert rds_needs_push(vs, proxy) and lds_needs_push(vs, proxy) and not cds_needs_push(vs, proxy)
    dr = Change(kinds=frozenset({"DestinationRule"}))
    # Listeners read DestinationRules too: TCP hash policies, tunnels, AUTO_PASSTHROUGH subsets.
    assert all(f(dr, proxy) for f in (cds_needs_push, eds_needs_push, rds_needs_push, lds_needs_push))
    sidecar_change = Change(kinds=frozenset({"Sidecar"}))
    assert not lds_needs_push(sidecar_change, gateway)
    gw = Change(kinds=frozenset({"Gateway"}))
    assert lds_needs_push(gw, gateway) and rds_needs_push(gw, gateway)
    assert not lds_needs_push(gw, proxy) and not rds_needs_push(gw, proxy)
    pa = Change(kinds=frozenset({"PeerAuthentication"}))
    assert lds_needs_push(pa, proxy) and not lds_needs_push(pa, gateway) and not cds_needs_push(pa, proxy)
    assert all(f(Change(full=True), proxy) for f in (cds_needs_push, eds_needs_push, lds_needs_push, rds_needs_push))


def test_generated_types():
    resources = generate(productpage_proxy(), bookinfo())
    assert set(resources) == {CLUSTER, ENDPOINT, LISTENER, ROUTE}
    assert list(resources[LISTENER]) == ["127.0.0.21_15001", "virtualInbound"]
