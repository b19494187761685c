"""What a push sends: endpoint-only changes touch only endpoints, and only of proxies that hold them."""

from __future__ import annotations

from malla.config.parse import parse_text
from malla.config.store import ConfigStore
from malla.discovery.proxies import node_metadata
from malla.discovery.service import DiscoveryService
from malla.pilot.generate import Change, generate
from malla.pilot.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from malla.pilot.snapshot import MeshConfig, Proxy
from malla.xds.cache import SnapshotCache

from tests.pilot.mesh import sidecar

# Secrets come from the agent's SDS here, so the snapshots need no secret resources.
MESH = MeshConfig(sds_cluster="sds-grpc")


def service_entry(name: str, *addresses: str, namespace: str = "default") -> str:
    endpoints = "".join(f"\n  - {{address: {a}}}" for a in addresses)
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: [{name}.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  endpoints:{endpoints}
"""


NARROW = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: narrow, namespace: default}
spec:
  workloadSelector: {labels: {scope: narrow}}
  egress: [{hosts: ["./alpha.example.internal"]}]
"""


def load(store: ConfigStore, *texts: str) -> None:
    parsed = parse_text("\n---\n".join(texts), path="mesh.yaml")
    assert not parsed.errors
    current = {c.key for c in store.list()}
    store.replace(upsert=parsed.configs, delete=current - {c.key for c in parsed.configs})


def connect(service: DiscoveryService, proxy: Proxy) -> None:
    assert service.connect_node(proxy.id, node_metadata(proxy, workload_name=proxy.labels["app"])) is not None


def versions(cache: SnapshotCache, node: str) -> dict[str, str]:
    snap = cache.get_snapshot(node)
    assert snap is not None
    return {t: snap.type_version(t) for t in (CLUSTER, ENDPOINT, LISTENER, ROUTE)}


def test_an_endpoint_change_sends_new_endpoints_only_to_proxies_that_hold_the_host() -> None:
    store, cache = ConfigStore(), SnapshotCache()
    load(store, service_entry("alpha", "127.7.0.1"), service_entry("beta", "127.7.1.1"), NARROW)
    service = DiscoveryService(store=store, cache=cache, mesh=MESH)
    wide = sidecar("wide", ip="127.0.0.70")
    narrow = sidecar("narrow", ip="127.0.0.71", labels={"app": "narrow", "scope": "narrow"})
    for proxy in (wide, narrow):
        connect(service, proxy)
    before = {p.id: versions(cache, p.id) for p in (wide, narrow)}
    narrow_snapshot = cache.get_snapshot(narrow.id)

    load(store, service_entry("alpha", "127.7.0.1"), service_entry("beta", "127.7.1.1", "127.7.1.2"), NARROW)
    record = service.push(Change(kinds=frozenset({"ServiceEntry"})))

    assert record.proxies == 1
    after = versions(cache, wide.id)
    assert after[ENDPOINT] != before[wide.id][ENDPOINT]
    assert {t: after[t] for t in (CLUSTER, LISTENER, ROUTE)} == {t: before[wide.id][t] for t in (CLUSTER, LISTENER, ROUTE)}
    assert cache.get_snapshot(narrow.id) is narrow_snapshot  # beta is out of its Sidecar's scope
    beta = cache.get_snapshot(wide.id).resource(ENDPOINT, "outbound|8080||beta.example.internal")
    assert beta is not None and b"127.7.1.2" in beta.payload
    # What it holds is exactly what a full generation would give now.
    full = generate(wide, service.snapshot)
    held = cache.get_snapshot(wide.id)
    assert {n: held.resource(ENDPOINT, n).payload for n in full[ENDPOINT]} == {
        n: m.SerializeToString(deterministic=True) for n, m in full[ENDPOINT].items()
    }


def test_a_route_change_is_a_full_push_and_a_no_op_change_pushes_nothing() -> None:
    store, cache = ConfigStore(), SnapshotCache()
    load(store, service_entry("alpha", "127.7.0.1"))
    service = DiscoveryService(store=store, cache=cache, mesh=MESH)
    proxy = sidecar("wide", ip="127.0.0.70")
    connect(service, proxy)
    assert service.push(Change(kinds=frozenset({"ServiceEntry"}))).proxies == 0

    timeout = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: alpha, namespace: default}
spec:
  hosts: [alpha.example.internal]
  http: [{timeout: 3s, route: [{destination: {host: alpha.example.internal}}]}]
"""
    before = versions(cache, proxy.id)
    load(store, service_entry("alpha", "127.7.0.1"), timeout)
    assert service.push(Change(kinds=frozenset({"VirtualService"}))).proxies == 1
    assert versions(cache, proxy.id)[ROUTE] != before[ROUTE]


def test_proxies_of_one_class_share_serialized_resources() -> None:
    store, cache = ConfigStore(), SnapshotCache()
    load(store, *(service_entry(f"s{i}", f"127.7.2.{i + 1}") for i in range(20)))
    service = DiscoveryService(store=store, cache=cache, mesh=MESH)
    a, b = sidecar("a", ip="127.0.0.80"), sidecar("b", ip="127.0.0.81")
    connect(service, a)
    connect(service, b)
    name = "outbound|8080||s3.example.internal"
    for type_url in (CLUSTER, ENDPOINT):
        assert cache.get_snapshot(a.id).resource(type_url, name) is cache.get_snapshot(b.id).resource(type_url, name)
