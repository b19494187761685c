"""The CA goes away: workloads keep serving on the certificates they hold, and nobody is left guessing.

Certificates live 30 s here (``--cert-ttl``), so renewal falls due while
the CA is down: ``malla status`` shows the rotation failing, then the
approaching expiry, loudly; the agents log it; traffic keeps flowing. When
the CA is back (same ports), rotation recovers by itself.
"""

from __future__ import annotations

import pytest

from malla.ca.runner import CAServerThread
from tests.e2e.mesh import wait_for
from tests.mtls.harness import Mesh, Workload, xfcc

pytestmark = pytest.mark.envoy

URL = "http://reviews:9080/"
ONE_REQUEST_PER_CONNECTION = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      http:
        maxRequestsPerConnection: 1
"""


def served(client: Workload, namespace: str) -> bool:
    """A request on a new mTLS connection (one request per connection) reaches the app."""
    reply = client.http().get(URL)
    return reply.status == 200 and f"URI=spiffe://cluster.local/ns/{namespace}/sa/productpage" in xfcc(reply)


def test_with_the_ca_down_workloads_keep_serving_and_status_shows_the_coming_expiry(
        mesh: Mesh, namespace: str) -> None:
    server = mesh.server("reviews", "--cert-ttl", "30s", namespace=namespace)
    client = mesh.client("productpage", "--cert-ttl", "30s", namespace=namespace)
    mesh.apply(ONE_REQUEST_PER_CONNECTION, namespace=namespace)
    citadel = mesh.cp.citadel
    assert citadel is not None and served(client, namespace)
    held = mesh.identity(server)["serial"]

    citadel.stop()

    failing = wait_for(lambda: mesh.identity(server), lambda r: r["state"] == "ROTATION FAILING", timeout=60,
                       what="the server's rotation to fail")
    assert failing["serial"] == held and failing["failures"] >= 1 and failing["secondsLeft"] > 0
    assert "UNAVAILABLE" in failing["lastError"], failing["lastError"]
    assert served(client, namespace), "the certificates still valid serve new connections"
    status = mesh.cli("status")
    assert "certificate rotation of" in status.stderr and "is failing" in status.stderr, status.stderr

    expiring = wait_for(lambda: mesh.identity(server), lambda r: r["state"] == "EXPIRING", timeout=60,
                        what="the server's certificate to be reported as expiring")
    assert served(client, namespace), "expiring is not expired: traffic still flows"
    status = mesh.cli("status")
    assert "CERTIFICATE EXPIRING" in status.stderr and failing["spiffeId"] in status.stderr, status.stderr
    assert 0 < expiring["secondsLeft"] < 30 / 4 + 1
    as_json = {c["name"]: c for c in mesh.cli_json("status")["certificates"]}
    assert as_json["reviews"]["state"] in ("EXPIRING", "EXPIRED") and as_json["reviews"]["serial"] == held
    assert "rotation keeps failing" in server.output(), server.output()[-2000:]

    # Back on the same ports: the agents' next attempts succeed.
    port, join_port = (int(a.rpartition(":")[2]) for a in (mesh.state.ca_address, mesh.state.ca_join_address))
    citadel.server = CAServerThread(citadel.authority, tokens=citadel.tokens, port=port, join_port=join_port)
    citadel.server.start()
    for workload in (server, client):
        wait_for(lambda w=workload: mesh.identity(w), lambda r: r["state"] == "VALID" and r["failures"] == 0,
                 timeout=60, what=f"{workload.name} to rotate again once the CA is back")
    assert mesh.identity(server)["serial"] != held
    assert wait_for(lambda: served(client, namespace), bool, timeout=30, what="traffic on the new certificates")
