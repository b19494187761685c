"""PeerAuthentication applied with ``malla apply``: what reaches a workload's inbound port, and how.

Mesh traffic (through the caller's sidecar) and a plaintext connection
straight to the workload's address and port, as something outside the mesh
on this host would make, under each mode.
"""

from __future__ import annotations

import pytest

from tests.e2e.mesh import wait_for
from tests.mtls.harness import Mesh, plaintext_get, xfcc

pytestmark = pytest.mark.envoy

URL = "http://reviews:9080/"


def peer_authentication(mode: str) -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: reviews-mtls
spec:
  selector:
    matchLabels:
      app: reviews
  mtls:
    mode: {mode}
"""


def test_strict_refuses_plaintext_while_mesh_traffic_flows(mesh: Mesh, namespace: str) -> None:
    server = mesh.server("reviews", namespace=namespace)
    client = mesh.client("productpage", namespace=namespace)
    assert plaintext_get(server.address, 9080) == 200, "PERMISSIVE (the default) accepts plaintext"

    mesh.apply(peer_authentication("STRICT"), namespace=namespace)

    refused = wait_for(lambda: plaintext_get(server.address, 9080), lambda r: r != 200, timeout=30,
                       what="plaintext to be refused under STRICT")
    assert str(refused).startswith("no answer"), refused
    reply = client.http().get(URL)
    assert reply.status == 200, reply.body
    assert f"URI=spiffe://cluster.local/ns/{namespace}/sa/productpage" in xfcc(reply)


def test_permissive_accepts_both_and_only_mesh_traffic_names_its_caller(mesh: Mesh, namespace: str) -> None:
    server = mesh.server("reviews", namespace=namespace)
    client = mesh.client("productpage", namespace=namespace)

    mesh.apply(peer_authentication("PERMISSIVE"), namespace=namespace)

    mesh_reply = client.http().get(URL)
    assert mesh_reply.status == 200
    assert f"URI=spiffe://cluster.local/ns/{namespace}/sa/productpage" in xfcc(mesh_reply)
    assert plaintext_get(server.address, 9080) == 200


def test_disable_makes_mesh_traffic_plaintext(mesh: Mesh, namespace: str) -> None:
    server = mesh.server("reviews", namespace=namespace)
    client = mesh.client("productpage", namespace=namespace)

    mesh.apply(peer_authentication("DISABLE"), namespace=namespace)

    # The caller's sidecar learns the endpoint takes no mTLS and sends plaintext: no client certificate.
    reply = wait_for(lambda: client.http().get(URL), lambda r: r.status == 200 and not xfcc(r), timeout=30,
                     what="mesh traffic to arrive without a client certificate")
    assert reply.json()["name"] == "reviews"
    assert plaintext_get(server.address, 9080) == 200


def test_a_namespace_wide_strict_policy_covers_every_workload_in_it(mesh: Mesh, namespace: str) -> None:
    server = mesh.server("reviews", namespace=namespace)
    client = mesh.client("productpage", namespace=namespace)

    mesh.apply(peer_authentication("STRICT").replace("  selector:\n    matchLabels:\n      app: reviews\n", ""),
               namespace=namespace)

    wait_for(lambda: plaintext_get(server.address, 9080), lambda r: r != 200, timeout=30,
             what="plaintext to be refused under a namespace-wide STRICT policy")
    assert client.http().get(URL).status == 200
