"""The gRPC server with a scripted Python client (fast; real Envoy is in test_envoy_*)."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from malla.xds import resources
from malla.xds.cache import SnapshotCache
from malla.xds.protocol import SyncState
from malla.xds.runner import XdsServerThread
from tests.xds.harness import assignment, eds_cluster, snapshot, wait_for

NODE = base_pb2.Node(id="sidecar~1", cluster="reviews")


class Client:
    """One ADS stream driven by hand."""

    def __init__(self, target: str, *, delta: bool = False) -> None:
        self.channel = grpc.insecure_channel(target)
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        self._requests: queue.Queue[object] = queue.Queue()
        method = stub.DeltaAggregatedResources if delta else stub.StreamAggregatedResources
        self.call = method(iter(self._requests.get, None), timeout=10)
        self._responses: queue.Queue[object] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        try:
            for response in self.call:
                self._responses.put(response)
        except grpc.RpcError as exc:
            self._responses.put(exc)
        self._responses.put(None)

    def send(self, request: object) -> None:
        self._requests.put(request)

    def recv(self, *, timeout: float = 5.0) -> object:
        return self._responses.get(timeout=timeout)

    def close(self) -> None:
        self._requests.put(None)
        self.channel.close()


@pytest.fixture
def serving() -> Iterator[tuple[SnapshotCache, XdsServerThread]]:
    cache = SnapshotCache()
    thread = XdsServerThread(cache, tcp=("127.0.0.1", 0))
    thread.start()
    yield cache, thread
    thread.stop()


def cluster_snapshot(port: int = 8080) -> dict[str, dict[str, object]]:
    return snapshot(eds_cluster("svc"), assignment("svc", port))


def test_sotw_stream_answers_acks_and_reports_synced(serving) -> None:
    cache, server = serving
    cache.set_snapshot(NODE.id, cluster_snapshot())
    client = Client(f"127.0.0.1:{server.port}")
    client.send(discovery_pb2.DiscoveryRequest(node=NODE, type_url=resources.CLUSTER))
    response = client.recv()
    assert response.type_url == resources.CLUSTER and len(response.resources) == 1
    client.send(discovery_pb2.DiscoveryRequest(
        type_url=resources.CLUSTER, version_info=response.version_info,
        response_nonce=response.nonce))
    status = wait_for(server.status, lambda s: s and s[0].types[0].state == SyncState.SYNCED,
                      what="CDS SYNCED")
    assert (status[0].node_id, status[0].cluster, status[0].mode) == (
        NODE.id, "reviews", "SotW")
    client.close()
    wait_for(server.status, lambda s: s == [], what="proxy gone from status")


def test_stream_without_node_id_is_refused(serving) -> None:
    _, server = serving
    client = Client(f"127.0.0.1:{server.port}")
    client.send(discovery_pb2.DiscoveryRequest(type_url=resources.CLUSTER))
    error = client.recv()
    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "node.id" in error.details()
    client.close()


def test_request_without_type_url_ends_the_stream_with_the_reason(serving) -> None:
    _, server = serving
    client = Client(f"127.0.0.1:{server.port}")
    client.send(discovery_pb2.DiscoveryRequest(node=NODE))
    error = client.recv()
    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "type_url" in error.details()
    client.close()


def test_on_connect_computes_the_snapshot_before_the_first_answer() -> None:
    cache = SnapshotCache()
    seen: list[str] = []
    gone: list[str] = []

    async def on_connect(node: base_pb2.Node) -> None:
        seen.append(node.id)
        cache.set_snapshot(node.id, cluster_snapshot())

    with XdsServerThread(cache, tcp=("127.0.0.1", 0), on_connect=on_connect,
                         on_disconnect=lambda node: gone.append(node.id)) as server:
        client = Client(f"127.0.0.1:{server.port}", delta=True)
        client.send(discovery_pb2.DeltaDiscoveryRequest(node=NODE, type_url=resources.CLUSTER))
        response = client.recv()
        assert [r.name for r in response.resources] == ["svc"]
        assert seen == [NODE.id]
        client.close()
        wait_for(lambda: gone, lambda g: g == [NODE.id], what="on_disconnect")


def test_many_changes_in_a_row_make_one_push(serving) -> None:
    cache, server = serving
    cache.set_snapshot(NODE.id, cluster_snapshot())
    client = Client(f"127.0.0.1:{server.port}")
    client.send(discovery_pb2.DiscoveryRequest(
        node=NODE, type_url=resources.ENDPOINT, resource_names=["svc"]))
    client.recv()

    def burst() -> None:  # runs on the server loop: nothing is pushed in between
        for port in range(9000, 9020):
            cache.set_snapshot(NODE.id, cluster_snapshot(port))

    server.call(burst)
    pushed = client.recv()
    loaded = endpoint_pb2.ClusterLoadAssignment()
    pushed.resources[0].Unpack(loaded)
    assert loaded.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value == 9019
    with pytest.raises(queue.Empty):
        client.recv(timeout=0.3)
    client.close()


def test_serves_on_a_unix_socket(tmp_path: Path) -> None:
    cache = SnapshotCache()
    cache.set_snapshot(NODE.id, cluster_snapshot())
    path = str(tmp_path / "xds.sock")
    with XdsServerThread(cache, tcp=None, unix_path=path):
        client = Client(f"unix:{path}")
        client.send(discovery_pb2.DiscoveryRequest(node=NODE, type_url=resources.CLUSTER))
        assert client.recv().type_url == resources.CLUSTER
        client.close()


def test_shutdown_with_open_streams_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    cache = SnapshotCache()
    cache.set_snapshot(NODE.id, cluster_snapshot())
    server = XdsServerThread(cache, tcp=("127.0.0.1", 0))
    server.start()
    client = Client(f"127.0.0.1:{server.port}")
    client.send(discovery_pb2.DiscoveryRequest(node=NODE, type_url=resources.CLUSTER))
    client.recv()
    with caplog.at_level(logging.WARNING):
        server.stop()
    assert client.recv() is None  # the stream ended with OK, not an error
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    client.close()


def test_on_disconnect_waits_for_the_nodes_last_stream() -> None:
    cache = SnapshotCache()
    cache.set_snapshot(NODE.id, cluster_snapshot())
    gone: list[str] = []
    with XdsServerThread(cache, tcp=("127.0.0.1", 0),
                         on_disconnect=lambda node: gone.append(node.id)) as server:
        old, new = Client(f"127.0.0.1:{server.port}"), Client(f"127.0.0.1:{server.port}")
        for client in (old, new):
            client.send(discovery_pb2.DiscoveryRequest(node=NODE, type_url=resources.CLUSTER))
            client.recv()
        old.close()
        wait_for(server.status, lambda s: len(s) == 1, what="one stream left")
        assert gone == []
        new.close()
        wait_for(lambda: gone, lambda g: g == [NODE.id], what="on_disconnect")
