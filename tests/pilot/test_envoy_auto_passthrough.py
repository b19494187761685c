"""Real Envoys (static bootstraps): mesh mTLS through an AUTO_PASSTHROUGH gateway to a sidecar.

The test plays a sidecar of another network: it opens Istio mTLS with the
workload certificate, Istio's SNI for ``reviews`` port 9080 and Istio's
ALPN, to the gateway. The gateway forwards the encrypted bytes by SNI; the
server's sidecar terminates the mTLS (STRICT), so the app learns the
caller's SPIFFE identity. The gateway's SNI-named clusters come with its
CDS (``build_sni_dnat_clusters`` in ``build_clusters``).
"""

import json
import socket
import ssl
import tempfile
from pathlib import Path

import pytest

from malla.pilot import names
from malla.pilot.generate import generate
from malla.pilot.protocol import Protocol
from malla.pilot.resources import CLUSTER
from malla.pilot.snapshot import MeshConfig, Proxy, ProxyKind

from tests.pilot.mesh import sidecar, snapshot, workload
from tests.pilot.test_envoy_traffic import SPIFFE, app, mesh_secrets, run_envoy, wait_for_port  # noqa: F401

pytestmark = pytest.mark.envoy

SERVER_IP, GATEWAY_IP, PORT = "127.0.0.125", "127.0.0.126", 15443
GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: cross-network, namespace: istio-system}
spec:
  selector: {istio: eastwestgateway}
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    tls: {mode: AUTO_PASSTHROUGH}
    hosts: ["*.local"]
"""
REVIEWS_SNI = names.format_sni(names.Direction.OUTBOUND, port=9080, host="reviews.default.svc.cluster.local")


def gateway_resources(snap):
    proxy = Proxy(
        id="router~eastwest", namespace="istio-system", kind=ProxyKind.ROUTER,
        labels={"istio": "eastwestgateway"}, ip=GATEWAY_IP,
    )
    resources = generate(proxy, snap)
    assert REVIEWS_SNI in resources[CLUSTER]  # the SNI-named cluster the passthrough chain sends to
    return resources


def mesh_client(secrets, *, alpn):
    """An SSL context holding the workload certificate, trusting the mesh CA, offering ``alpn``."""
    folder = Path(tempfile.mkdtemp())
    (folder / "cert.pem").write_text(secrets["default"].tls_certificate.certificate_chain.inline_string)
    (folder / "key.pem").write_text(secrets["default"].tls_certificate.private_key.inline_string)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # Istio certificates carry a SPIFFE URI, no DNS name
    context.load_verify_locations(cadata=secrets["ROOTCA"].validation_context.trusted_ca.inline_string)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    context.set_alpn_protocols(alpn)
    return context


def get_through(context, sni, path):
    with socket.create_connection((GATEWAY_IP, PORT), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=sni) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(4096):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body


def test_mesh_mtls_passes_through_the_gateway_by_sni(app, tmp_path):  # noqa: F811
    snap = snapshot(
        GATEWAY,
        workloads=[workload("reviews", SERVER_IP, ports={"http": 9080})],
        mesh=MeshConfig(default_mtls_mode="STRICT"),
    )
    server = sidecar("reviews", ip=SERVER_IP, inbound=[(9080, app, Protocol.HTTP)])
    secrets = mesh_secrets()
    envoys = [
        run_envoy(generate(server, snap), tmp_path, "server", secrets),
        run_envoy(gateway_resources(snap), tmp_path, "gateway", secrets),
    ]
    try:
        wait_for_port(SERVER_IP, 9080)
        wait_for_port(GATEWAY_IP, PORT)
        status, body = get_through(mesh_client(secrets, alpn=["istio"]), REVIEWS_SNI, "/east-west")
        assert status == "HTTP/1.1 200 OK"
        seen = json.loads(body)
        assert seen["path"] == "/east-west"
        assert f"URI={SPIFFE}" in seen["xfcc"]  # the server's sidecar, not the gateway, terminated the mTLS
        for sni, alpn in (("reviews.default.svc.cluster.local", ["istio"]), (REVIEWS_SNI, ["http/1.1"])):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                get_through(mesh_client(secrets, alpn=alpn), sni, "/refused")
    finally:
        for envoy in envoys:
            envoy.terminate()
            envoy.wait(timeout=10)
