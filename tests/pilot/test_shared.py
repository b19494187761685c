"""Proxies of one class share generated config, and sharing never changes what a proxy gets."""

from __future__ import annotations

import pytest

from malla.config.parse import parse_text
from malla.pilot.generate import Resources, generate, regenerate_endpoints
from malla.pilot.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from malla.pilot.services import Workload
from malla.pilot.shared import SharedGeneration, changed_addresses, endpoints_only_change
from malla.pilot.snapshot import CaptureMode, MeshSnapshot, Proxy

from tests.pilot.bookinfo import SAMPLES, bookinfo
from tests.pilot.bookinfo import workloads as bookinfo_workloads
from tests.pilot.golden import CASES, GOLDEN
from tests.pilot.mesh import proxies, sidecar, snapshot, workload


def wire(resources: Resources) -> dict[str, dict[str, bytes]]:
    return {t: {n: m.SerializeToString(deterministic=True) for n, m in named.items()} for t, named in resources.items()}


def assert_sharing_is_invisible(snap: MeshSnapshot, group: list[Proxy]) -> SharedGeneration:
    shared = SharedGeneration(snap)
    for proxy in group:
        assert wire(generate(proxy, snap, shared=shared)) == wire(generate(proxy, snap)), proxy.id
    return shared


@pytest.mark.parametrize("case", CASES)
def test_every_golden_proxy_gets_the_same_config_with_a_shared_memo(case: str) -> None:
    text = (GOLDEN / case / "input.yaml").read_text()
    assert_sharing_is_invisible(snapshot(text), proxies(text))


LABEL_SELECTED = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-for-canary, namespace: default}
spec:
  host: reviews
  workloadSelector: {matchLabels: {track: canary}}
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings-by-source, namespace: default}
spec:
  hosts: [ratings]
  http:
  - match: [{sourceLabels: {track: canary}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: ratings}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: narrow, namespace: default}
spec:
  workloadSelector: {labels: {scope: narrow}}
  egress: [{hosts: ["./details.default.svc.cluster.local"]}]
"""


def mixed_proxies() -> list[Proxy]:
    return [
        sidecar("a", ip="127.0.0.50", labels={"app": "a"}),
        sidecar("b", ip="127.0.0.51", labels={"app": "b"}),
        sidecar("canary", ip="127.0.0.52", labels={"app": "c", "track": "canary"}),
        sidecar("narrow", ip="127.0.0.53", labels={"app": "n", "scope": "narrow"}),
        sidecar("other-ns", namespace="other", ip="127.0.0.54"),
        sidecar("far", ip="127.0.0.55", locality="eu/zone1"),
        sidecar("port", ip="127.0.0.56", outbound_port=20099),
        sidecar("transparent", ip="127.0.0.57", capture=CaptureMode.TRANSPARENT),
    ]


def test_label_selected_config_reaches_only_the_selected_proxies_when_shared() -> None:
    snap = bookinfo(extra=LABEL_SELECTED)
    shared = assert_sharing_is_invisible(snap, mixed_proxies())
    assert shared.labels_matter
    plain, canary = (generate(p, snap, shared=shared) for p in mixed_proxies()[::2][:2])
    assert "RANDOM" in str(canary[CLUSTER]["outbound|9080||reviews.default.svc.cluster.local"])
    assert "RANDOM" not in str(plain[CLUSTER]["outbound|9080||reviews.default.svc.cluster.local"])


def test_proxies_of_one_class_get_the_very_same_objects() -> None:
    snap = bookinfo("destination-rule-all.yaml", "virtual-service-reviews-80-20.yaml")
    a, b = sidecar("a", ip="127.0.0.50"), sidecar("b", ip="127.0.0.51", outbound_port=20007)
    shared = SharedGeneration(snap)
    ra, rb = generate(a, snap, shared=shared), generate(b, snap, shared=shared)
    name = "outbound|9080|v1|reviews.default.svc.cluster.local"
    assert ra[CLUSTER][name] is rb[CLUSTER][name]
    assert ra[ENDPOINT][name] is rb[ENDPOINT][name]
    assert shared.holds(ra[CLUSTER][name])
    # The explicit proxy's route configuration is named by its port: same content, its own name.
    assert set(ra[ROUTE]) != set(rb[ROUTE])
    assert [r.virtual_hosts for r in ra[ROUTE].values()] == [r.virtual_hosts for r in rb[ROUTE].values()]
    # Listeners bind the proxy's own address: never shared.
    assert set(ra[LISTENER]).isdisjoint(rb[LISTENER])
    assert not shared.labels_matter


def _moved(workloads: list[Workload], name: str, address: str) -> list[Workload]:
    return [w if w.name != name else Workload(**{**w.__dict__, "address": address}) for w in workloads]


def test_an_endpoint_move_is_an_endpoint_only_change_of_that_host() -> None:
    before = bookinfo("destination-rule-all.yaml")
    after = MeshSnapshot.build(
        configs=before.configs,
        kube_services=_kube_services(),
        workloads=_moved(bookinfo_workloads(), "ratings-v1", "127.0.0.99"),
        mesh=before.mesh,
    )
    hosts = endpoints_only_change(before, after)
    assert hosts == frozenset({"ratings.default.svc.cluster.local"})
    assert changed_addresses(before, after, hosts) >= {"127.0.0.99"}


def test_a_changed_route_or_service_account_is_not_endpoint_only() -> None:
    before = bookinfo("destination-rule-all.yaml")
    with_vs = bookinfo("destination-rule-all.yaml", "virtual-service-all-v1.yaml")
    assert endpoints_only_change(before, with_vs) is None
    renamed = [
        w if w.name != "ratings-v1" else Workload(**{**w.__dict__, "service_account": "someone-else"})
        for w in bookinfo_workloads()
    ]
    other_sa = MeshSnapshot.build(
        configs=before.configs, kube_services=_kube_services(), workloads=renamed, mesh=before.mesh
    )
    assert endpoints_only_change(before, other_sa) is None


def test_regenerated_endpoints_equal_a_full_generation() -> None:
    before = bookinfo("destination-rule-all.yaml")
    after = MeshSnapshot.build(
        configs=before.configs,
        kube_services=_kube_services(),
        workloads=_moved(bookinfo_workloads(), "ratings-v1", "127.0.0.99"),
        mesh=before.mesh,
    )
    proxy = sidecar("client", ip="127.0.0.60")
    old_shared = SharedGeneration(before)
    previous = generate(proxy, before, shared=old_shared)
    hosts = endpoints_only_change(before, after)
    assert hosts is not None
    shared = old_shared.carry_over(after, changed_hosts=hosts)
    update = regenerate_endpoints(proxy, after, previous, hosts, shared=shared)
    assert update is not None
    assert all(name.endswith("|ratings.default.svc.cluster.local") for name in update.upsert)
    updated = update.apply(previous)
    assert wire(updated) == wire(generate(proxy, after))
    assert updated[CLUSTER] is previous[CLUSTER]
    assert "127.0.0.99" in str(updated[ENDPOINT]["outbound|9080|v1|ratings.default.svc.cluster.local"])


def test_a_proxy_that_cannot_reach_the_moved_host_gets_nothing() -> None:
    narrow = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress: [{hosts: ["./details.default.svc.cluster.local"]}]
"""
    before = bookinfo(extra=narrow)
    after = MeshSnapshot.build(
        configs=before.configs,
        kube_services=_kube_services(),
        workloads=_moved(bookinfo_workloads(), "ratings-v1", "127.0.0.99"),
        mesh=before.mesh,
    )
    proxy = sidecar("client", ip="127.0.0.60")
    shared = SharedGeneration(before)
    previous = generate(proxy, before, shared=shared)
    hosts = endpoints_only_change(before, after)
    assert hosts is not None
    assert regenerate_endpoints(proxy, after, previous, hosts, shared=shared.carry_over(after, changed_hosts=hosts)) is None


def test_a_workload_of_a_new_service_is_not_endpoint_only() -> None:
    before = snapshot(workloads=[workload("details-v1", "127.0.0.21")])
    after = snapshot(workloads=[workload("details-v1", "127.0.0.21"), workload("extra", "127.0.0.22")])
    assert endpoints_only_change(before, after) is None


def _kube_services() -> list[dict]:
    parsed = parse_text((SAMPLES / "platform/kube/bookinfo.yaml").read_text(), path="bookinfo.yaml")
    return [k.body for k in parsed.kube if k.kind == "Service"]
