"""``malla gateway`` has a workload identity too: Istio mTLS from the gateway to the sidecars behind it.

Its one SDS socket serves the mesh pair (``default``, ``ROOTCA``) beside
the Gateways' credentials; with STRICT on the workload, only mTLS gets in,
and the app sees the gateway's SPIFFE ID.
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.mesh import wait_for
from tests.mtls.harness import PYTHON, Mesh, clean_env

pytestmark = pytest.mark.envoy

CONFIG = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  selector: {istio: edge}
  servers:
  - port: {number: 8081, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-edge}
spec:
  hosts: ["*"]
  gateways: [edge]
  http: [{route: [{destination: {host: reviews, port: {number: 9080}}}]}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict}
spec:
  mtls: {mode: STRICT}
"""


def test_the_gateway_reaches_a_strict_workload_over_mtls_as_itself(mesh: Mesh, namespace: str, tmp_path: Path) -> None:
    mesh.server("reviews", namespace=namespace)
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        gateway = subprocess.Popen(
            [PYTHON, "-m", "malla", "gateway", "--name", "edge", "-n", namespace, "--address", "auto", "-p", "8081"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=clean_env(MALLA_HOME=str(mesh.home)))
    try:
        mesh.apply(CONFIG, namespace=namespace)
        url = wait_for(lambda: _served_url(log, gateway), bool, timeout=60, what="the gateway to serve port 8081")
        reply = wait_for(lambda: httpx.get(url, timeout=10, trust_env=False), lambda r: r.status_code == 200,
                         timeout=30, what="the gateway to route to reviews")
        header = reply.json()["headers"]["x-forwarded-client-cert"]
        identity = f"spiffe://cluster.local/ns/{namespace}/sa/edge-service-account"
        assert f"URI={identity}" in header, header
        reports = {i["spiffeId"]: i for i in mesh.identities()}
        assert reports[identity]["kind"] == "router" and reports[identity]["state"] == "VALID"
    finally:
        gateway.send_signal(signal.SIGINT)
        try:
            gateway.wait(20)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait()
    assert gateway.returncode == 0, log.read_text()
    assert all(i["kind"] != "router" for i in mesh.identities()), "the gateway withdrew its certificate report"


def _served_url(log: Path, gateway: subprocess.Popen[bytes]) -> str | None:
    text = log.read_text(errors="replace")
    if gateway.poll() is not None:
        raise AssertionError(f"malla gateway exited {gateway.returncode}:\n{text}")
    found = re.search(r"serving (http://[0-9.]+:8081/)", text)
    return found.group(1) if found else None
