"""AuthorizationPolicy enforced by real Envoy sidecars under mutual TLS, applied while traffic runs.

Workloads are ``malla run`` processes (tests/mtls harness): the caller's
identity is the SPIFFE ID in its sidecar's certificate, which the serving
sidecar's RBAC filter checks. Every change is applied to running proxies and
waited for with a bounded poll: nothing restarts.
"""

from __future__ import annotations

import dataclasses
import http.client
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from malla.config.parse import parse_text
from malla.pilot.consistency import assert_consistent
from malla.pilot.generate import generate
from malla.pilot.snapshot import MeshSnapshot
from malla.pilot.static_config import static_bootstrap_json
from tests.e2e.mesh import OUTBOUND_PORT, namespace_for, wait_for
from tests.mtls.harness import Mesh, Workload
from tests.pilot.test_envoy_validate import validate
from tests.policy.test_authz import CORPUS, REVIEWS, WORKLOADS

pytestmark = pytest.mark.envoy

URL = "http://reviews:9080"


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    workdir = tmp_path / "work"
    workdir.mkdir()
    m = Mesh(tmp_path / "home", workdir)
    try:
        yield m
    finally:
        m.close()


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    return namespace_for(request.node.name)


def send(caller: Workload, method: str, path: str = "/") -> tuple[int, str]:
    """One request through the caller's sidecar (its HTTP proxy): status and body."""
    conn = http.client.HTTPConnection(caller.address, OUTBOUND_PORT, timeout=15)
    try:
        conn.request(method, URL + path, headers={"host": "reviews:9080", "content-length": "0"})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def apply_policy(mesh: Mesh, spec: str, *, namespace: str, name: str = "reviews") -> None:
    body = "\n".join("  " + line for line in spec.strip().splitlines())
    mesh.apply(f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\nspec:\n{body}\n",
               namespace=namespace)


def test_allow_admits_only_the_named_caller_s_gets(mesh: Mesh, namespace: str) -> None:
    mesh.server("reviews", namespace=namespace)
    client = mesh.client("client", namespace=namespace)
    other = mesh.client("other", namespace=namespace)
    assert send(other, "GET")[0] == 200, "no policy yet: everyone is let in"

    apply_policy(mesh, f"""
selector: {{matchLabels: {{app: reviews}}}}
rules:
- from: [{{source: {{principals: [cluster.local/ns/{namespace}/sa/client]}}}}]
  to: [{{operation: {{methods: [GET]}}}}]
""", namespace=namespace)

    denied = wait_for(lambda: send(other, "GET"), lambda r: r[0] != 200, timeout=30,
                      what="the running sidecar to deny a caller the policy does not name")
    assert denied == (403, "RBAC: access denied")
    assert send(client, "GET")[0] == 200
    assert send(client, "POST") == (403, "RBAC: access denied")


def test_deny_on_admin_paths_leaves_the_rest_open(mesh: Mesh, namespace: str) -> None:
    mesh.server("reviews", namespace=namespace)
    client = mesh.client("client", namespace=namespace)
    assert send(client, "GET", "/admin/users")[0] == 200

    apply_policy(mesh, "action: DENY\nrules: [{to: [{operation: {paths: [/admin*]}}]}]", namespace=namespace)

    denied = wait_for(lambda: send(client, "GET", "/admin/users"), lambda r: r[0] != 200, timeout=30,
                      what="/admin to be denied")
    assert denied == (403, "RBAC: access denied")
    assert send(client, "GET", "/")[0] == 200
    assert send(client, "GET", "/admin?x=1")[0] == 403, "the query string does not hide the path"


def tcp_exchange(caller: Workload) -> str:
    """Speak first on an opaque TCP port (HTTP/1.0 as raw bytes): the reply's first line, or how it ended.

    Client-first on purpose: Envoy's network RBAC filter decides on the first
    bytes the caller sends, so a server-first app could greet a denied
    caller before the connection closes (envoyproxy/envoy#9023).
    """
    try:
        with socket.create_connection((caller.address, 9000), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\nhost: tcpecho\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
    except OSError as exc:
        return f"failed: {type(exc).__name__}"
    return data.split(b"\r\n", 1)[0].decode(errors="replace") if data else "closed without data"


def test_tcp_deny_by_principal_closes_the_connection(mesh: Mesh, namespace: str) -> None:
    mesh.joined(mesh.run("tcpecho", "-p", "9000/tcp", namespace=namespace))
    client = mesh.client("client", namespace=namespace)
    other = mesh.client("other", namespace=namespace)
    assert tcp_exchange(client).endswith("200 OK")

    apply_policy(mesh, f"action: DENY\nrules: [{{from: [{{source: {{principals: [cluster.local/ns/{namespace}/sa/client]}}}}]}}]",
                 namespace=namespace, name="no-client")

    refused = wait_for(lambda: tcp_exchange(client), lambda r: not r.endswith("200 OK"), timeout=30,
                       what="the client's TCP connections to be closed")
    assert refused == "closed without data" or refused.startswith("failed"), refused
    assert tcp_exchange(other).endswith("200 OK"), "another caller still gets through"


def test_envoy_accepts_every_istio_authorization_policy(tmp_path: Path) -> None:
    configs = []
    for path in CORPUS:
        for config in parse_text(path.read_text(), path=str(path)).configs:
            if config.kind == "AuthorizationPolicy":
                spec = config.spec.model_copy(update={"selector": None, "target_ref": None, "target_refs": []})
                configs.append(dataclasses.replace(config, namespace="istio-system", name=f"{path.stem}-{config.name}",
                                                   spec=spec))
    snap = MeshSnapshot.build(configs=configs, workloads=WORKLOADS)
    resources = generate(REVIEWS, snap)
    assert_consistent(resources)
    result = validate(static_bootstrap_json(resources, node_id=REVIEWS.id), tmp_path)
    assert result.returncode == 0, f"Envoy rejected the config:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"


def test_a_deleted_deny_stops_denying_on_connections_already_open(mesh: Mesh, namespace: str) -> None:
    """The client sidecar pools its connections to the server's: a policy change must reach those too.

    Envoy keeps an open connection on the filter chain it started with until the chain drains; the
    agent starts Envoy with Istio's immediate drain, so the next answer on an old connection closes it.
    """
    mesh.server("reviews", namespace=namespace)
    client = mesh.client("client", namespace=namespace)
    apply_policy(mesh, "action: DENY\nrules: [{to: [{operation: {paths: [/admin*]}}]}]", namespace=namespace)
    wait_for(lambda: send(client, "GET", "/admin"), lambda r: r[0] == 403, timeout=30, what="/admin to be denied")
    for _ in range(5):  # several requests, so the pooled connections are the ones that saw the deny
        assert send(client, "GET", "/admin")[0] == 403

    path = mesh.workdir / "delete.yaml"
    path.write_text(f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: reviews\n"
                    f"  namespace: {namespace}\nspec: {{}}\n")
    done = mesh.cli("delete", "-f", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    mesh.settle()
    statuses = [send(client, "GET", "/admin")[0] for _ in range(4)]
    assert statuses[-2:] == [200, 200], f"the deleted policy still denies on open connections: {statuses}"
