"""RequestAuthentication through real sidecars: tokens checked by Envoy's jwt_authn on the receiving side.

A client workload sends through its sidecar to ``reviews``, whose sidecar
checks the token (the harness of ``tests/e2e``: a real control plane, real
agents, real Envoys, all on loopback). Keys and tokens are made in the test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from malla.controlplane.server import ControlPlane, ControlPlaneOptions
from malla.pilot.snapshot import XdsMode
from tests.e2e.mesh import App, HttpClient, Mesh, Reply, namespace_for, wait_for
from tests.policy.tokens import Issuer

pytestmark = pytest.mark.envoy

URL = "http://reviews:9080/"


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    home = tmp_path_factory.mktemp("malla-home")
    cp = ControlPlane(ControlPlaneOptions(home=home, xds_port=0, api_port=0, monitoring_port=0,
                                          ca_port=0, ca_join_port=0))
    cp.start()
    yield cp
    cp.stop()


@pytest.fixture
def mesh(control_plane: ControlPlane, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mesh]:
    m = Mesh(control_plane, namespace=namespace_for(request.node.name), mode=XdsMode.SOTW, workdir=tmp_path)
    try:
        yield m
    finally:
        m.close()


def request_authentication(rule: str) -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  jwtRules:
  - {rule}
    outputClaimToHeaders: [{{header: x-jwt-sub, claim: sub}}]
"""


def get(http: HttpClient, token: str | None = None) -> Reply:
    return http.get(URL, headers={"authorization": f"Bearer {token}"} if token else None)


def seen_headers(reply: Reply) -> dict[str, str]:
    """The request headers the reviews app received."""
    assert reply.status == 200, (reply.status, reply.body)
    return reply.json()["headers"]


def test_inline_jwks_checks_tokens_and_lets_tokenless_requests_through(mesh: Mesh) -> None:
    issuer, impostor = Issuer("https://issuer.example.com"), Issuer("https://issuer.example.com")
    # Applied before the workloads start, so every connection meets the policy.
    mesh.apply(request_authentication(f"issuer: {issuer.iss}\n    jwks: '{issuer.jwks()}'"))
    _, client = mesh.start(App("reviews", "v1"), clients=1)
    http, now = client.http(), int(time.time())

    anonymous = seen_headers(get(http))
    assert "x-jwt-sub" not in anonymous

    verified = seen_headers(get(http, issuer.token(now=now, sub="alice")))
    assert verified["x-jwt-sub"] == "alice"
    assert "authorization" not in verified  # the token is stripped unless forwardOriginalToken

    forged = get(http, impostor.token(now=now, sub="alice"))
    assert (forged.status, forged.body) == (401, b"Jwt verification fails")

    expired = get(http, issuer.token(now=now - 7200, lifetime=600))  # expired an hour and 50 minutes ago
    assert (expired.status, expired.body) == (401, b"Jwt is expired")


class _JwksServer:
    """A JWKS endpoint on 127.0.0.1 counting its fetches."""

    def __init__(self, jwks: str) -> None:
        outer = self
        self.fetches = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                outer.fetches += 1
                body = jwks.encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_jwks_uri_is_fetched_by_the_sidecar(mesh: Mesh) -> None:
    issuer, impostor = Issuer("https://keys.example.com"), Issuer("https://keys.example.com")
    with _JwksServer(issuer.jwks()) as jwks:
        uri = f"http://127.0.0.1:{jwks.port}/.well-known/jwks.json"
        mesh.apply(request_authentication(f"issuer: {issuer.iss}\n    jwksUri: {uri}"))
        _, client = mesh.start(App("reviews", "v1"), clients=1)
        http, now = client.http(), int(time.time())
        token = issuer.token(now=now, sub="bob")
        # The fetch runs in the background (the listener does not wait for it): poll until the keys are in.
        reply = wait_for(lambda: get(http, token), lambda r: r.status == 200, timeout=30,
                         what="a valid token to pass once the sidecar fetched the JWKS")
        assert seen_headers(reply)["x-jwt-sub"] == "bob"
        assert jwks.fetches >= 1
        assert get(http, impostor.token(now=now)).status == 401
        assert get(http).status == 200


def test_resources_merge_and_each_token_meets_its_own_issuer(mesh: Mesh) -> None:
    partner, staff, stranger = Issuer("partner"), Issuer("staff"), Issuer("stranger")
    mesh.apply(f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: partners}}
spec:
  jwtRules:
  - issuer: partner
    jwks: '{partner.jwks()}'
    audiences: [web]
    fromHeaders: [{{name: x-partner-token}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: staff}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  jwtRules:
  - issuer: staff
    jwks: '{staff.jwks()}'
    outputClaimToHeaders: [{{header: x-jwt-sub, claim: sub}}]
""")
    _, client = mesh.start(App("reviews", "v1"), clients=1)
    http, now = client.http(), int(time.time())

    assert http.get(URL, headers={"x-partner-token": partner.token(now=now, aud="web")}).status == 200
    assert seen_headers(get(http, staff.token(now=now, sub="carol")))["x-jwt-sub"] == "carol"
    assert get(http).status == 200

    # Envoy answers a token for another audience with 403, an unknown issuer's with 401.
    wrong_audience = http.get(URL, headers={"x-partner-token": partner.token(now=now, aud="api")})
    assert (wrong_audience.status, wrong_audience.body) == (403, b"Audiences in Jwt are not allowed")
    unknown = get(http, stranger.token(now=now))
    assert (unknown.status, unknown.body) == (401, b"Jwt issuer is not configured")
