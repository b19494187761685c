"""Real Envoys with certificates from the agents' SDS servers: mTLS, rotation, root rotation."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from malla.envoy.process import EnvoyProcess
from tests.identity.mesh import (
    EchoApp,
    Identities,
    Traffic,
    client_bootstrap,
    server_bootstrap,
    spiffe,
    xfcc,
)
from tests.xds.harness import http_get, wait_for

pytestmark = pytest.mark.envoy


@dataclass
class Mesh:
    ids: Identities
    client: EnvoyProcess
    server: EnvoyProcess
    client_port: int
    server_port: int


def _mesh(start_envoy: Callable[..., EnvoyProcess], *, ttl: float) -> Iterator[Mesh]:
    ids = Identities(ttl=ttl)
    app = EchoApp()
    try:
        server_agent = ids.add_agent("server")
        client_agent = ids.add_agent("client")
        server = start_envoy(server_bootstrap(sds_socket=server_agent.socket, app_port=app.port),
                             name="server")
        server.wait_ready(timeout=15)
        server_port = server.listener_port("inbound")
        client = start_envoy(client_bootstrap(sds_socket=client_agent.socket,
                                              server_port=server_port,
                                              server_id=spiffe("server")), name="client")
        client.wait_ready(timeout=15)
        yield Mesh(ids, client, server, client.listener_port("outbound"), server_port)
    finally:
        app.close()
        ids.close()


@pytest.fixture
def mesh(start_envoy: Callable[..., EnvoyProcess]) -> Iterator[Mesh]:
    yield from _mesh(start_envoy, ttl=3600)


@pytest.fixture
def fast_mesh(start_envoy: Callable[..., EnvoyProcess]) -> Iterator[Mesh]:
    # Certificates live 3 s: a rotation every ~1.5 s.
    yield from _mesh(start_envoy, ttl=3)


def test_mtls_request_tells_the_app_who_called(mesh: Mesh):
    status, body = wait_for(lambda: http_get(mesh.client_port), lambda r: r[0] == 200,
                            timeout=10, what="a request through both Envoys")
    fields = xfcc(body)
    assert fields["URI"] == spiffe("client")
    assert fields["By"] == spiffe("server")
    assert len(fields["Hash"]) == 64
    stats = mesh.client.stats(filter_regex=r"^cluster\.server\.ssl\.")
    assert stats.get("cluster.server.ssl.versions.TLSv1.3", 0) >= 1
    assert stats.get("cluster.server.ssl.handshake", 0) >= 1


def test_plaintext_and_certificateless_clients_are_refused(mesh: Mesh):
    wait_for(lambda: http_get(mesh.client_port), lambda r: r[0] == 200, timeout=10,
             what="the mesh to work")
    status, detail = http_get(mesh.server_port, timeout=3)
    assert status == 0, f"plaintext got an HTTP answer: {status} {detail[:100]}"
    # TLS that trusts the mesh but shows no client certificate gets no answer either.
    context = ssl.create_default_context(cadata=mesh.ids.ca.trust_bundle_pem().decode())
    context.check_hostname = False
    with socket.create_connection(("127.0.0.1", mesh.server_port), timeout=3) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError, TimeoutError)):
            with context.wrap_socket(raw) as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if not tls.recv(1024):
                    raise ConnectionError("closed without an answer")
    refusals = mesh.server.stats(filter_regex=r"^listener\..*\.ssl\.fail_verify_no_cert$")
    assert sum(int(value) for value in refusals.values()) >= 1, refusals


def _rotations(mesh: Mesh) -> int:
    return min(agent.rotator.status().rotations for agent in mesh.ids.agents.values())


def test_ten_rotations_under_traffic_lose_no_request(fast_mesh: Mesh):
    mesh = fast_mesh
    wait_for(lambda: http_get(mesh.client_port), lambda r: r[0] == 200, timeout=10,
             what="the mesh to work")
    start = _rotations(mesh)
    traffic = Traffic(mesh.client_port)
    traffic.start()
    try:
        wait_for(lambda: _rotations(mesh), lambda n: n >= start + 10, timeout=60, interval=0.2,
                 what="ten rotations of both certificates")
    finally:
        traffic.stop()
    assert traffic.results and not traffic.failures(), traffic.failures()[:5]
    seen = [xfcc(body) for _, body in traffic.results]
    assert {fields["URI"] for fields in seen} == {spiffe("client")}
    # New handshakes used new client certificates: the app saw many of them.
    assert len({fields["Hash"] for fields in seen}) >= 10
    for agent in mesh.ids.agents.values():
        assert agent.rotator.status().failures == 0


def test_root_rotation_under_traffic_loses_no_request(fast_mesh: Mesh):
    mesh = fast_mesh
    ids = mesh.ids
    wait_for(lambda: http_get(mesh.client_port), lambda r: r[0] == 200, timeout=10,
             what="the mesh to work")
    old_root = ids.ca.material.ca_cert
    traffic = Traffic(mesh.client_port)
    traffic.start()
    try:
        new_root = ids.ca.begin_root_rotation()
        _wait_all(mesh, lambda a: a.roots() == [old_root, new_root], "the two-root bundle")
        ids.ca.activate_next_root()
        _wait_all(mesh, lambda a: a.leaf().issuer == new_root.subject, "leaves from the new root")
        ids.ca.retire_old_roots()
        _wait_all(mesh, lambda a: a.roots() == [new_root], "the old root to be retired")
        served = len(traffic.results)
        wait_for(lambda: len(traffic.results), lambda n: n >= served + 20, timeout=20,
                 what="traffic after the rotation")
    finally:
        traffic.stop()
    assert not traffic.failures(), traffic.failures()[:5]
    assert len(traffic.results) > 50


def _wait_all(mesh: Mesh, accept: Callable, what: str) -> None:
    agents = list(mesh.ids.agents.values())
    wait_for(lambda: [accept(agent) for agent in agents] + [mesh.ids.synced()], all,
             timeout=30, interval=0.1, what=f"every agent and Envoy to hold {what}")
