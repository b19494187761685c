"""``malla gateway`` against real Envoy, a real control plane and real workloads under ``malla run``.

One mesh for the module: workloads productpage, web (HTTP), tcp-echo (TCP)
and secure (serving TLS itself); Istio's bookinfo-gateway.yaml unchanged, and
a Gateway ``edge`` with host-based HTTP, HTTPS from a credential and from
files, TLS passthrough and TCP servers.
"""

from __future__ import annotations

import importlib.resources
import os
import socket

import httpx
import pytest

from tests.gateway.certs import https_get, peer_common_name, self_signed, write_pair
from tests.gateway.conftest import Mesh, eventually

pytestmark = [pytest.mark.envoy, pytest.mark.xdist_group("gateway-ingress")]

BOOKINFO_GATEWAY = importlib.resources.files("malla.data") / "samples/bookinfo/networking/bookinfo-gateway.yaml"

EDGE = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8081, name: http-hosts, protocol: HTTP}
    hosts: [web.example.com, api.example.com]
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: [web.example.com]
    tls: {mode: SIMPLE, credentialName: web-cert}
  - port: {number: 8443, name: tls-secure, protocol: TLS}
    hosts: [secure.example.com]
    tls: {mode: PASSTHROUGH}
  - port: {number: 8444, name: https-files, protocol: HTTPS}
    hosts: [files.example.com]
    tls: {mode: SIMPLE, serverCertificate: CERT, privateKey: KEY}
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web.example.com, files.example.com]
  gateways: [istio-system/edge]
  http: [{route: [{destination: {host: web, port: {number: 9080}}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api.example.com]
  gateways: [istio-system/edge]
  http: [{route: [{destination: {host: productpage, port: {number: 9080}}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: secure}
spec:
  hosts: [secure.example.com]
  gateways: [istio-system/edge]
  tls:
  - match: [{sniHosts: [secure.example.com], port: 8443}]
    route: [{destination: {host: secure, port: {number: 8443}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo}
spec:
  hosts: ["*"]
  gateways: [istio-system/edge]
  tcp: [{match: [{port: 31400}], route: [{destination: {host: tcp-echo, port: {number: 9000}}}]}]
"""


@pytest.fixture(scope="module")
def ingress(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    files = tmp_path_factory.mktemp("mounted")
    write_pair(mesh.home / "credentials" / "web-cert", *self_signed("web-1", "web.example.com"))
    write_pair(files, *self_signed("files-1", "files.example.com"))
    write_pair(files / "secure", *self_signed("secure.example.com"))
    mesh.apply(BOOKINFO_GATEWAY.read_text())
    mesh.apply(EDGE.replace("CERT", str(files / "tls.crt")).replace("KEY", str(files / "tls.key")))
    mesh.workload("productpage", "9080", "http")
    mesh.workload("web", "9080", "http")
    mesh.workload("tcp-echo", "9000/tcp", "tcp")
    mesh.workload("secure", "8443/https", "tls", str(files / "secure" / "tls.crt"), str(files / "secure" / "tls.key"))
    gateway = mesh.malla("gateway", "--name", "ingressgateway", "--labels", "istio=ingressgateway",
                         "--port", "8080", "--address", "auto")
    line = gateway.wait_line(":8080/")
    address = line.split("://", 1)[1].rsplit(":", 1)[0]
    return {"gateway": gateway, "address": address, "files": files}


def get(url: str, **kwargs: object) -> httpx.Response:
    return httpx.get(url, trust_env=False, timeout=5, **kwargs)  # type: ignore[arg-type]


def test_bookinfo_gateway_routes_productpage_to_the_mesh_workload(ingress):
    address = ingress["address"]
    r = eventually(lambda: (x := get(f"http://{address}:8080/productpage")).status_code == 200 and x,
                   what="GET /productpage through the gateway")
    assert r.json()["name"] == "productpage"
    assert r.json()["path"] == "/productpage"
    # bookinfo's VirtualService matches only its paths: others get Envoy's 404.
    assert get(f"http://{address}:8080/admin").status_code == 404


def test_the_gateway_prints_the_urls_it_serves(ingress):
    gateway, address = ingress["gateway"], ingress["address"]
    for url in (f"http://{address}:8080/", f"http://{address}:8081/", f"https://{address}:8443/",
                f"tls://{address}:8443 (SNI secure.example.com)", f"tcp://{address}:31400"):
        gateway.wait_line(url)


def test_routing_by_host_and_404_for_unknown_hosts(ingress):
    address = ingress["address"]

    def name_for(host: str) -> str:
        return get(f"http://{address}:8081/x", headers={"host": host}).json()["name"]

    assert eventually(lambda: name_for("web.example.com") == "web", what="web.example.com routed to web")
    assert eventually(lambda: name_for("api.example.com") == "productpage", what="api.example.com routed")
    assert get(f"http://{address}:8081/x", headers={"host": "unknown.example.com"}).status_code == 404


def test_https_simple_serves_the_credential_and_picks_up_a_renewed_one(ingress, mesh):
    address = ingress["address"]
    status, body, cn = eventually(
        lambda: (x := https_get(address, 8443, sni="web.example.com", path="/a"))[0] == 200 and x,
        what="HTTPS through the gateway")
    assert cn == "web-1"
    assert '"name": "web"' in body
    # cert-manager renews: the files are overwritten in place, the gateway is not restarted.
    write_pair(mesh.home / "credentials" / "web-cert", *self_signed("web-2", "web.example.com"))
    eventually(lambda: peer_common_name(address, 8443, sni="web.example.com") == "web-2",
               what="the renewed certificate served")
    assert https_get(address, 8443, sni="web.example.com", path="/b")[0] == 200
    assert ingress["gateway"].proc.poll() is None  # no restart


def test_https_from_mounted_files_renewed_by_rename(ingress):
    address, files = ingress["address"], ingress["files"]
    assert eventually(lambda: https_get(address, 8444, sni="files.example.com", path="/")[2] == "files-1",
                      what="the file-mounted certificate served")
    # Kubernetes-style renewal: new files renamed over the old ones.
    cert, key = self_signed("files-2", "files.example.com")
    (files / "new.crt").write_bytes(cert)
    (files / "new.key").write_bytes(key)
    os.replace(files / "new.key", files / "tls.key")
    os.replace(files / "new.crt", files / "tls.crt")
    eventually(lambda: peer_common_name(address, 8444, sni="files.example.com") == "files-2",
               what="the renewed file-mounted certificate served")


def test_passthrough_routes_by_sni_to_a_workload_serving_tls_itself(ingress):
    address = ingress["address"]
    status, body, cn = eventually(
        lambda: (x := https_get(address, 8443, sni="secure.example.com", path="/p"))[0] == 200 and x,
        what="TLS passthrough to secure")
    # The client sees the workload's own certificate: the gateway did not terminate TLS.
    assert cn == "secure.example.com"
    assert '"name": "secure"' in body


def test_tcp_server_routes_by_virtual_service_tcp_routes(ingress):
    address = ingress["address"]

    def echo() -> str:
        with socket.create_connection((address, 31400), timeout=3) as s:
            s.sendall(b"hello\n")
            return s.makefile().readline()

    assert eventually(echo, what="TCP through the gateway") == "tcp-echo: hello\n"


def test_the_same_config_over_delta_xds(ingress, mesh):
    delta = mesh.malla("gateway", "--delta", "--address", "auto")
    line = delta.wait_line(":8080/")
    address = line.split("://", 1)[1].rsplit(":", 1)[0]
    assert address != ingress["address"]
    r = eventually(lambda: (x := get(f"http://{address}:8080/productpage")).status_code == 200 and x,
                   what="GET /productpage through the Delta gateway")
    assert r.json()["name"] == "productpage"
    status, _body, cn = https_get(address, 8443, sni="web.example.com", path="/")
    assert status == 200 and cn.startswith("web-")
    assert delta.stop() == 0


def test_a_credential_written_after_the_gateway_asked_for_it_is_served(ingress, mesh):
    address, gateway = ingress["address"], ingress["gateway"]
    mesh.apply("""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: late, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 9443, name: https-late, protocol: HTTPS}
    hosts: [web.example.com]
    tls: {mode: SIMPLE, credentialName: late-cert}
""")
    eventually(lambda: "cannot serve kubernetes://late-cert yet" in gateway.output(), what="the missing credential named")
    assert "put tls.crt and tls.key there" in gateway.output()
    write_pair(mesh.home / "credentials" / "late-cert", *self_signed("late-1", "web.example.com"))
    gateway.wait_line(f"https://{address}:9443/")
    assert eventually(lambda: https_get(address, 9443, sni="web.example.com", path="/")[2] == "late-1",
                      what="the late credential served")
