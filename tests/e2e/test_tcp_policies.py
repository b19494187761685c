"""DestinationRule policies that act on TCP connections, through real sidecars.

``consistentHash.useSourceIp``: connections from one source address keep
reaching one endpoint. ``tunnel``: the client's sidecar carries the
connection inside an HTTP CONNECT (or POST) request through a tunnel proxy,
a small one written here, to the target it names.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.e2e.mesh import App, Mesh, wait_for

pytestmark = pytest.mark.envoy

TCP = ("9000/tcp",)
# Source addresses the test dials from: loopback, never leased to workloads (those come from the pool).
SOURCES = [f"127.0.0.{n}" for n in range(200, 212)]

SOURCE_IP_HASH = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tcpecho}
spec:
  host: tcpecho
  trafficPolicy:
    loadBalancer: {consistentHash: {useSourceIp: true}}
"""


def instance_from(source: str, address: str, port: int) -> str:
    """Connect from ``source`` to the client's sidecar; the echo names the instance that answered."""
    with socket.create_connection((address, port), timeout=5, source_address=(source, 0)) as sock:
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(256)
            if not chunk:
                break
            data += chunk
    return data.decode().split()[2]


def test_source_ip_hash_keeps_each_client_address_on_one_endpoint(mesh: Mesh) -> None:
    *_, client = mesh.start(*[App("tcpecho", "v1", ports=TCP)] * 3, clients=1)
    spread = {instance_from(SOURCES[0], client.address, 9000) for _ in range(30)}
    assert len(spread) > 1, "without a hash policy one source should reach several endpoints"
    mesh.apply(SOURCE_IP_HASH)
    chosen = {}
    for source in SOURCES:
        seen = {instance_from(source, client.address, 9000) for _ in range(6)}
        assert len(seen) == 1, f"{source} reached {seen}: a source address must stick to one endpoint"
        chosen[source] = seen.pop()
    assert len(set(chosen.values())) > 1, f"every source hashed to one endpoint: {chosen}"


@dataclass
class TunnelProxy:
    """An HTTP/1.1 tunnel proxy on loopback: CONNECT, or POST with chunked bodies both ways."""

    sock: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))
    requests: list[str] = field(default_factory=list)  # request lines
    hosts: list[str] = field(default_factory=list)  # the targets they named (Host)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(conn,), daemon=True).start()

    def _tunnel(self, conn: socket.socket) -> None:
        with conn:
            head, rest = _read_head(conn)
            request_line = head.split(b"\r\n", 1)[0].decode()
            self.requests.append(request_line)
            method = request_line.split()[0]
            self.hosts.append(_header(head, b"host"))
            host, _, port = self.hosts[-1].rpartition(":")
            with socket.create_connection((host, int(port)), timeout=5) as target:
                if method == "CONNECT":
                    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    _pipe(conn, target, rest)
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    _pipe_chunked(conn, target, rest)


def _read_head(conn: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("the tunnel request ended early")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _header(head: bytes, name: bytes) -> str:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip().decode()
    raise ValueError(f"no {name!r} header in {head!r}")


def _pipe(client: socket.socket, target: socket.socket, first: bytes) -> None:
    if first:
        target.sendall(first)
    threading.Thread(target=_copy, args=(client, target), daemon=True).start()
    _copy(target, client)


def _copy(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(4096):
            dst.sendall(chunk)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _pipe_chunked(client: socket.socket, target: socket.socket, buffered: bytes) -> None:
    """POST: the target's bytes go back as a chunked response body.

    The target only greets, so the request body is not forwarded; the response
    ends once the request body has (the client closes first), because Envoy 1.40
    crashes when a POST tunnel's response ends while its downstream is still open.
    """
    try:
        while chunk := target.recv(4096):
            client.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        while b"0\r\n\r\n" not in buffered and (chunk := client.recv(4096)):
            buffered += chunk
        client.sendall(b"0\r\n\r\n")
    except OSError:
        pass


@pytest.fixture
def tunnel_proxy() -> Iterator[TunnelProxy]:
    proxy = TunnelProxy()
    threading.Thread(target=proxy.serve, daemon=True).start()
    yield proxy
    _stop(proxy.sock)


@pytest.fixture
def target() -> Iterator[int]:
    """The tunnel's target: a TCP server that greets and closes."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"hello from the target\n")

    threading.Thread(target=serve, daemon=True).start()
    yield int(server.getsockname()[1])
    _stop(server)


def _stop(server: socket.socket) -> None:
    """Close a listening socket for good: shutdown wakes the thread blocked in accept()."""
    try:
        server.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    server.close()


TUNNEL = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: database}
spec:
  hosts: [HOST]
  exportTo: ["."]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 5432, name: tcp-pg, protocol: TCP}]
  endpoints: [{address: 127.0.0.1, ports: {tcp-pg: PROXY_PORT}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: database}
spec:
  host: HOST
  exportTo: ["."]
  trafficPolicy:
    tunnel: {protocol: METHOD, targetHost: 127.0.0.1, targetPort: TARGET_PORT}
"""


@pytest.mark.parametrize("method", ["CONNECT", "POST"])
def test_tunnel_carries_tcp_through_an_http_proxy(
    mesh: Mesh, tunnel_proxy: TunnelProxy, target: int, method: str
) -> None:
    (client,) = mesh.start(clients=1)
    config = TUNNEL.replace("HOST", f"db.{mesh.namespace}.example").replace("METHOD", method)
    mesh.apply(config.replace("PROXY_PORT", str(tunnel_proxy.port)).replace("TARGET_PORT", str(target)))
    line = wait_for(lambda: _greeting(client.address, 5432), lambda text: text != "", timeout=15,
                    what="the target's greeting through the tunnel")
    assert line == "hello from the target"
    expected = f"CONNECT 127.0.0.1:{target} HTTP/1.1" if method == "CONNECT" else "POST / HTTP/1.1"
    assert tunnel_proxy.requests[-1] == expected
    assert tunnel_proxy.hosts[-1] == f"127.0.0.1:{target}"


def _greeting(address: str, port: int) -> str:
    try:
        with socket.create_connection((address, port), timeout=5) as sock:
            return sock.makefile().readline().strip()
    except OSError:
        return ""
