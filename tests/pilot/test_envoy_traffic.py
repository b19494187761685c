"""Real Envoys running generated config (static bootstraps): a request through two sidecars.

The client's app uses its sidecar as an HTTP proxy; the request is routed by
a VirtualService and reaches the server's app through the server's
``virtualInbound``, in plaintext and with Istio mTLS (certificates made here
and given to Envoy as static secrets, where the agent would serve them).
"""

import datetime
import http.client
import http.server
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from malla.pilot.generate import generate
from malla.pilot.protocol import Protocol
from malla.pilot.snapshot import MeshConfig
from malla.pilot.static_config import static_bootstrap_json

from tests.pilot.mesh import sidecar, snapshot, workload
from tests.pilot.test_envoy_validate import envoy_binary

pytestmark = pytest.mark.envoy

SERVER_PORT = 9080
CONFIG = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /teapot}}]
    directResponse: {status: 418, body: {string: short and stout}}
  - route: [{destination: {host: reviews}}]
    headers: {request: {set: {x-routed-by: malla}}}
"""


class App(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        seen = {
            "path": self.path,
            "routed": self.headers.get("x-routed-by"),
            "xfcc": self.headers.get("x-forwarded-client-cert"),
        }
        body = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def wait_for_port(host, port, deadline=10.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {host}:{port} after {deadline}s")


@pytest.fixture
def app():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def run_envoy(resources, tmp_path, name, secrets=None):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(static_bootstrap_json(resources, node_id=name, secrets=secrets)))
    log = open(tmp_path / f"{name}.log", "w")
    command = [envoy_binary(), "-c", str(path), "--concurrency", "1", "--use-dynamic-base-id", "--log-level", "warn"]
    command += ["--admin-address-path", str(tmp_path / f"{name}.admin")]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def test_request_through_client_and_server_sidecars(app, tmp_path):
    client_ip, server_ip = "127.0.0.121", "127.0.0.122"  # each test its own addresses: they may run in parallel
    mesh = MeshConfig(enable_auto_mtls=False, default_mtls_mode="DISABLE")
    snap = snapshot(CONFIG, workloads=[workload("reviews", server_ip, ports={"http": SERVER_PORT})], mesh=mesh)
    server = sidecar("reviews", ip=server_ip, inbound=[(SERVER_PORT, app, Protocol.HTTP)])
    client = sidecar("productpage", ip=client_ip)
    envoys = [
        run_envoy(generate(server, snap), tmp_path, "server"),
        run_envoy(generate(client, snap), tmp_path, "client"),
    ]
    try:
        wait_for_port(server_ip, SERVER_PORT)
        wait_for_port(client_ip, 15001)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": f"http://{client_ip}:15001"}))
        with opener.open("http://reviews:9080/reviews/1", timeout=10) as response:
            assert json.loads(response.read()) == {"path": "/reviews/1", "routed": "malla", "xfcc": None}
        with pytest.raises(urllib.error.HTTPError) as teapot:
            opener.open("http://reviews.default:9080/teapot", timeout=10)
        assert teapot.value.code == 418 and teapot.value.read() == b"short and stout"
    finally:
        for envoy in envoys:
            envoy.terminate()
            envoy.wait(timeout=10)


SPIFFE = "spiffe://cluster.local/ns/default/sa/default"


def mesh_secrets():
    """A CA and one workload certificate with only a SPIFFE URI SAN, as Istio issues them."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "malla test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(SPIFFE)]), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = leaf.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
    workload_cert = secret_pb2.Secret(name="default")
    workload_cert.tls_certificate.certificate_chain.inline_string = pem
    workload_cert.tls_certificate.private_key.inline_string = key_pem
    root = secret_pb2.Secret(name="ROOTCA")
    root.validation_context.trusted_ca.inline_string = ca_pem
    return {"default": workload_cert, "ROOTCA": root}


def test_istio_mtls_between_sidecars_and_strict_refuses_plaintext(app, tmp_path):
    client_ip, server_ip = "127.0.0.123", "127.0.0.124"
    mesh = MeshConfig(default_mtls_mode="STRICT")
    snap = snapshot(CONFIG, workloads=[workload("reviews", server_ip, ports={"http": SERVER_PORT})], mesh=mesh)
    server = sidecar("reviews", ip=server_ip, inbound=[(SERVER_PORT, app, Protocol.HTTP)])
    client = sidecar("productpage", ip=client_ip)
    secrets = mesh_secrets()
    envoys = [
        run_envoy(generate(server, snap), tmp_path, "server", secrets),
        run_envoy(generate(client, snap), tmp_path, "client", secrets),
    ]
    try:
        wait_for_port(server_ip, SERVER_PORT)
        wait_for_port(client_ip, 15001)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": f"http://{client_ip}:15001"}))
        with opener.open("http://reviews:9080/mtls", timeout=10) as response:
            seen = json.loads(response.read())
        assert seen["path"] == "/mtls"
        assert f"URI={SPIFFE}" in seen["xfcc"]  # the server's sidecar verified the client's identity
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.RemoteDisconnected)):
            direct.open(f"http://{server_ip}:{SERVER_PORT}/plaintext", timeout=10)
    finally:
        for envoy in envoys:
            envoy.terminate()
            envoy.wait(timeout=10)
