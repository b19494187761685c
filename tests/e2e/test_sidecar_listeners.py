"""A Sidecar resource's own listeners, through real sidecars: ingress ports and egress ports.

Ingress: the Sidecar's ``ingress`` replaces the ports a workload registered,
each forwarding to its ``defaultEndpoint`` (and terminating TLS when asked).
Egress: a listener on a port (and ``bind``) of its own, exposing only its
hosts; the sidecar's HTTP proxy answers that port as the listener would.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from pathlib import Path

import pytest

from malla.agent.ports import free_port
from tests.e2e.mesh import App, Mesh, tcp_line, wait_for
from tests.gateway.certs import self_signed, write_pair

pytestmark = pytest.mark.envoy

INGRESS = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: web}
spec:
  workloadSelector: {labels: {app: web}}
  ingress:
  - port: {number: 9443, protocol: HTTP, name: http-alt}
    defaultEndpoint: 127.0.0.1:APP_PORT
"""


def get(address: str, port: int, path: str = "/", *, host: str = "web") -> tuple[int, dict]:
    conn = http.client.HTTPConnection(address, port, timeout=10)
    try:
        conn.request("GET", path, headers={"host": host})
        response = conn.getresponse()
        body = response.read()
        return response.status, (json.loads(body) if response.status == 200 else {})
    finally:
        conn.close()


def refused(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_ingress_port_replaces_the_registered_one_and_reaches_the_default_endpoint(mesh: Mesh) -> None:
    (web,) = mesh.start(App("web", ports=("9080/http",)))
    assert get(web.address, 9080)[0] == 200
    assert refused(web.address, 9443)
    mesh.apply(INGRESS.replace("APP_PORT", str(web.app_port())))
    status, body = wait_for(lambda: _try_get(web.address, 9443), lambda r: r[0] == 200, timeout=15,
                            what="the app behind the Sidecar's ingress port 9443")
    assert (body["name"], body["path"]) == ("web", "/")
    assert wait_for(lambda: refused(web.address, 9080), bool, timeout=15, what="port 9080 to close")


def _try_get(address: str, port: int) -> tuple[int, dict]:
    try:
        return get(address, port)
    except OSError:
        return 0, {}


INGRESS_TLS = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: web}
spec:
  workloadSelector: {labels: {app: web}}
  ingress:
  - port: {number: 9443, protocol: HTTPS, name: https}
    defaultEndpoint: 127.0.0.1:APP_PORT
    tls: {mode: SIMPLE, serverCertificate: CERT, privateKey: KEY}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  mtls: {mode: STRICT}
  portLevelMtls: {9443: {mode: DISABLE}}
"""


def test_ingress_tls_is_terminated_by_the_sidecar(mesh: Mesh, tmp_path: Path) -> None:
    (web,) = mesh.start(App("web", ports=("9080/http",)))
    cert, key = self_signed("web.example.com")
    write_pair(tmp_path / "certs", cert, key)
    config = INGRESS_TLS.replace("APP_PORT", str(web.app_port()))
    mesh.apply(config.replace("CERT", str(tmp_path / "certs/tls.crt")).replace("KEY", str(tmp_path / "certs/tls.key")))
    context = ssl.create_default_context(cadata=cert.decode())
    context.check_hostname = False  # dialled by address; the chain is still verified against the test's cert
    status, body = wait_for(lambda: _https_get(web.address, 9443, context), lambda r: r[0] == 200, timeout=15,
                            what="HTTPS through the sidecar's ingress TLS")
    assert body["name"] == "web"
    assert "x-forwarded-proto" in body["headers"] and body["headers"]["x-forwarded-proto"] == "https"


def _https_get(address: str, port: int, context: ssl.SSLContext) -> tuple[int, dict]:
    conn = http.client.HTTPSConnection(address, port, timeout=10, context=context)
    try:
        conn.request("GET", "/", headers={"host": "web.example.com"})
        response = conn.getresponse()
        body = response.read()
        return response.status, (json.loads(body) if response.status == 200 else {})
    except OSError as exc:
        return 0, {"error": repr(exc)}
    finally:
        conn.close()


EGRESS = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client}
spec:
  workloadSelector: {labels: {app: client}}
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: [./web.NAMESPACE.svc.cluster.local]
  - port: {number: TCP_PORT, protocol: TCP, name: tcp}
    bind: 127.0.0.1
    hosts: [./tcpecho.NAMESPACE.svc.cluster.local]
  - hosts: ["./*"]
"""


def test_egress_listener_on_its_own_port_exposes_only_its_hosts(mesh: Mesh) -> None:
    *_, client = mesh.start(
        App("web", ports=("9080/http",)), App("api", ports=("9080/http",)), App("tcpecho", "v1", ports=("9000/tcp",)),
        clients=1,
    )
    http_proxy = client.http()
    assert http_proxy.get("http://api:9080/").json()["name"] == "api"
    tcp_port = free_port()
    mesh.apply(EGRESS.replace("NAMESPACE", mesh.namespace).replace("TCP_PORT", str(tcp_port)))
    # The egress listener on the client's address, port 9080: web only.
    assert get(client.address, 9080, host="web:9080")[1]["name"] == "web"
    assert get(client.address, 9080, host="api:9080")[0] != 200
    # The HTTP proxy answers port 9080 as that listener does.
    assert http_proxy.get("http://web:9080/").json()["name"] == "web"
    assert http_proxy.get("http://api:9080/").status != 200
    # A TCP listener bound where the Sidecar says, on a port tcpecho does not have (its only one is 9000).
    assert tcp_line("127.0.0.1", tcp_port).split()[0] == "tcpecho"
