"""The snapshot cache: shared serialization, response bytes, checks, watchers."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import discovery_pb2

from malla.xds import resources
from malla.xds.cache import SnapshotCache
from malla.xds.protocol import Send
from malla.xds.references import InconsistentSnapshotError
from tests.xds.harness import (
    assignment,
    eds_cluster,
    http_listener,
    route_to,
    snapshot,
)


def full_snapshot(port: int = 8080) -> dict[str, dict[str, object]]:
    return snapshot(http_listener("http", route_config="local"), route_to("local", "svc"),
                    eds_cluster("svc"), assignment("svc", port))


def test_equal_resources_of_different_nodes_are_serialized_once() -> None:
    cache = SnapshotCache()
    one = cache.set_snapshot("node-1", full_snapshot())
    two = cache.set_snapshot("node-2", full_snapshot())
    assert one.resource(resources.CLUSTER, "svc") is two.resource(resources.CLUSTER, "svc")
    assert one.version == two.version


def test_versions_are_equal_in_a_fresh_cache_and_change_with_content() -> None:
    first = SnapshotCache().set_snapshot("n", full_snapshot())
    restarted = SnapshotCache().set_snapshot("n", full_snapshot())
    moved = SnapshotCache().set_snapshot("n", full_snapshot(port=9090))
    assert first.versions(resources.ENDPOINT) == restarted.versions(resources.ENDPOINT)
    assert first.versions(resources.ENDPOINT) != moved.versions(resources.ENDPOINT)
    assert first.versions(resources.CLUSTER) == moved.versions(resources.CLUSTER)


def test_sotw_response_bytes_parse_with_resources_version_and_each_nonce() -> None:
    cache = SnapshotCache()
    view = cache.set_snapshot("n", full_snapshot())
    versions = view.versions(resources.CLUSTER)
    send = Send(resources.CLUSTER, "n1", "v1", versions, (), "v1")
    first = discovery_pb2.DiscoveryResponse.FromString(cache.encode(send, delta=False, view=view))
    again = Send(resources.CLUSTER, "n2", "v1", versions, (), "v1")
    second = discovery_pb2.DiscoveryResponse.FromString(
        cache.encode(again, delta=False, view=view))
    assert (first.nonce, second.nonce) == ("n1", "n2")
    assert first.version_info == "v1" and first.type_url == resources.CLUSTER
    cluster = cluster_pb2.Cluster()
    first.resources[0].Unpack(cluster)
    assert cluster.name == "svc"
    assert first.resources == second.resources


def test_delta_response_bytes_carry_names_versions_and_removals() -> None:
    cache = SnapshotCache()
    view = cache.set_snapshot("n", full_snapshot())
    versions = view.versions(resources.ENDPOINT)
    send = Send(resources.ENDPOINT, "d1", "tv", versions, ("old",), "c")
    response = discovery_pb2.DeltaDiscoveryResponse.FromString(
        cache.encode(send, delta=True, view=view))
    assert response.nonce == "d1" and list(response.removed_resources) == ["old"]
    assert [(r.name, r.version) for r in response.resources] == [("svc", versions["svc"])]
    loaded = endpoint_pb2.ClusterLoadAssignment()
    response.resources[0].resource.Unpack(loaded)
    assert loaded.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value == 8080


def test_resources_of_a_replaced_snapshot_stay_encodable_while_referenced() -> None:
    cache = SnapshotCache()
    old = cache.set_snapshot("n", full_snapshot(port=1))
    new = cache.set_snapshot("n", full_snapshot(port=2))
    old_versions = old.versions(resources.ENDPOINT)
    send = Send(resources.ENDPOINT, "x", "v", old_versions, (), "old-body")
    response = discovery_pb2.DiscoveryResponse.FromString(
        cache.encode(send, delta=False, view=new))
    loaded = endpoint_pb2.ClusterLoadAssignment()
    response.resources[0].Unpack(loaded)
    assert loaded.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value == 1


def test_dangling_references_are_refused_with_names() -> None:
    cache = SnapshotCache()
    broken = snapshot(http_listener("http", route_config="missing-routes"), eds_cluster("svc"))
    with pytest.raises(InconsistentSnapshotError) as caught:
        cache.set_snapshot("n", broken)
    message = str(caught.value)
    assert "CDS 'svc' needs EDS 'svc'" in message
    assert "LDS 'http' needs RDS 'missing-routes'" in message
    assert cache.get_snapshot("n") is None
    SnapshotCache(check_references=False).set_snapshot("n", broken)


def test_key_must_be_the_resource_name_and_type_must_match() -> None:
    cache = SnapshotCache()
    with pytest.raises(ValueError, match=r"snapshot\[CDS\]\['other'\].*named 'svc'"):
        cache.set_snapshot("n", {resources.CLUSTER: {"other": eds_cluster("svc")}})
    with pytest.raises(TypeError, match=r"snapshot\[EDS\]\['svc'\].*ClusterLoadAssignment"):
        cache.set_snapshot("n", {resources.ENDPOINT: {"svc": eds_cluster("svc")}})


def test_watchers_are_woken_for_their_node_until_cancelled() -> None:
    cache = SnapshotCache()
    woken: list[str] = []
    cancel = cache.watch("n", woken.append)
    cache.set_snapshot("other", full_snapshot())
    cache.set_snapshot("n", full_snapshot())
    cancel()
    cache.set_snapshot("n", full_snapshot(port=2))
    assert woken == ["n"]


def test_eds_dependency_of_clusters_is_known() -> None:
    view = SnapshotCache().set_snapshot("n", full_snapshot())
    assert view.eds_name("svc") == "svc"
    assert view.eds_name("nope") is None
