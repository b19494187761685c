"""A gateway on "another host": ``malla gateway --controlplane HOST:15012 --join-token-file F`` with an empty home.

The control plane runs in this process with its own home (``tests.mtls.harness``);
the gateway gets a different, empty ``MALLA_HOME``, so all it has is the
control plane's mTLS address and a token from ``malla token create -n
istio-system``. It listens on a loopback address outside the control plane's
pool, as a host of its own would, and must route a Gateway + VirtualService
to a STRICT mesh workload over Istio mTLS with the token's identity, its
Envoy's ADS going over mTLS to 15012.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from malla.agent.gateway import GatewayOptions
from malla.agent.remote_gateway import gateway_with_token
from malla.ca.tokens import JoinTokens
from tests.e2e.mesh import wait_for
from tests.mtls.conftest import mesh, namespace  # noqa: F401  (fixtures: a control plane per test)
from tests.mtls.harness import PYTHON, Mesh, clean_env

pytestmark = pytest.mark.envoy

GATEWAY_PORT = 8081
CONFIG = f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: edge}}
spec:
  selector: {{istio: edge}}
  servers:
  - port: {{number: {GATEWAY_PORT}, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews-edge}}
spec:
  hosts: ["*"]
  gateways: [edge]
  http: [{{route: [{{destination: {{host: reviews, port: {{number: 9080}}}}}}]}}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: strict}}
spec:
  mtls: {{mode: STRICT}}
"""


def free_loopback_address() -> str:
    """A loopback address of 127.201.0.0/16 (outside the control plane's pool) where the gateway's ports are free."""
    for _ in range(200):
        candidate = f"127.201.{random.randint(0, 255)}.{random.randint(1, 254)}"
        try:
            for port in (GATEWAY_PORT, 15020):
                with socket.socket() as probe:
                    probe.bind((candidate, port))
        except OSError:
            continue
        return candidate
    raise AssertionError("no free loopback address in 127.201.0.0/16")


def gateway_command(mesh: Mesh, *args: str, token_file: Path) -> list[str]:
    return [PYTHON, "-m", "malla", "gateway", "--name", "edge", "--controlplane", mesh.state.ca_address,
            "--join-token-file", str(token_file), *args]


def refused(mesh: Mesh, home: Path, *args: str, token: str) -> subprocess.CompletedProcess[str]:
    token_file = home.parent / "token"
    token_file.write_text(token)
    return subprocess.run(gateway_command(mesh, *args, token_file=token_file), cwd=mesh.workdir, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, env=clean_env(MALLA_HOME=str(home)))


def make_token(mesh: Mesh, *args: str) -> str:
    """What a user does on the control plane's host; the token alone on stdout."""
    done = mesh.cli("token", "create", "--ttl", "10m", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def proxy_rows(mesh: Mesh, address: str) -> list[dict[str, Any]]:
    return [p for p in mesh.cli_json("proxy-status") if p["node"].split("~")[1] == address]


def envoy_stats(home: Path, regex: str) -> dict[str, int]:
    found = list(home.glob("gateways/*/admin-address"))
    assert len(found) == 1, f"expected one gateway Envoy under {home}: {found}"
    body = httpx.get(f"http://{found[0].read_text().strip()}/stats", params={"format": "json", "filter": regex},
                     timeout=5, trust_env=False).json()
    return {s["name"]: int(s["value"]) for s in body.get("stats", []) if isinstance(s.get("value"), int)}


def served_url(log: Path, gateway: subprocess.Popen[bytes]) -> str | None:
    text = log.read_text(errors="replace")
    if gateway.poll() is not None:
        raise AssertionError(f"malla gateway exited {gateway.returncode}:\n{text}")
    found = re.search(rf"serving (http://[0-9.]+:{GATEWAY_PORT}/)", text)
    return found.group(1) if found else None


def test_a_remote_gateway_with_an_empty_home_routes_to_the_mesh_as_the_tokens_identity(
        mesh: Mesh, namespace: str, tmp_path: Path) -> None:
    remote_home = tmp_path / "other-host"
    token_file = tmp_path / "gateway.token"
    token_file.write_text(make_token(mesh, "-n", "istio-system") + "\n")
    mesh.server("reviews", namespace=namespace)
    mesh.apply(CONFIG, namespace=namespace)
    address, log = free_loopback_address(), tmp_path / "gateway.log"
    with log.open("wb") as out:
        gateway = subprocess.Popen(
            gateway_command(mesh, "--address", address, "-p", str(GATEWAY_PORT), token_file=token_file),
            cwd=mesh.workdir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=clean_env(MALLA_HOME=str(remote_home)))
    identity = "spiffe://cluster.local/ns/istio-system/sa/edge-service-account"
    try:
        url = wait_for(lambda: served_url(log, gateway), bool, timeout=60, what="the gateway to serve its port")
        assert url == f"http://{address}:{GATEWAY_PORT}/"
        reply = wait_for(lambda: httpx.get(url, timeout=10, trust_env=False), lambda r: r.status_code == 200,
                         timeout=30, what="the gateway to route to reviews")
        # STRICT lets only mTLS in: the app sees the gateway's certificate, of the token's namespace.
        seen = reply.json()
        assert seen["name"] == "reviews" and f"URI={identity}" in seen["headers"]["x-forwarded-client-cert"], seen

        assert not (remote_home / "controlplane.json").exists()
        mesh.settle()
        rows = proxy_rows(mesh, address)
        assert len(rows) == 1 and rows[0]["node"].startswith("router~") and rows[0]["types"], rows
        status = mesh.cli("proxy-status").stdout
        assert [line.split().count("SYNCED") for line in status.splitlines() if line.startswith("edge-")] == [4], status
        reports = [i for i in mesh.identities() if i["nodeId"] == rows[0]["node"]]
        assert [(r["spiffeId"], r["kind"], r["state"]) for r in reports] == [(identity, "router", "VALID")], reports
        tls = envoy_stats(remote_home, r"^cluster\.xds-grpc\.ssl\.")
        assert tls.get("cluster.xds-grpc.ssl.handshake", 0) >= 1, tls
    finally:
        gateway.send_signal(signal.SIGINT)
        try:
            gateway.wait(30)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait()
    assert gateway.returncode == 0, log.read_text()
    wait_for(lambda: proxy_rows(mesh, address), lambda rows: rows == [], timeout=20,
             what="the remote gateway to disconnect")
    assert identity not in {i["spiffeId"] for i in mesh.identities()}, "the gateway withdrew its certificate report"


def test_forged_foreign_and_other_namespace_tokens_are_refused_before_the_gateway_serves(
        mesh: Mesh, tmp_path: Path) -> None:
    remote_home = tmp_path / "other-host"
    token = make_token(mesh, "-n", "istio-system")
    body, mac = token.rsplit(".", 1)
    # Another control plane's token, naming another CA: the gateway must not trust this one with it.
    foreign = JoinTokens(os.urandom(32)).create_token(
        "istio-system", ttl=600, ca_hashes=["sha256:" + "ab" * 32],
        join_port=int(mesh.state.ca_join_address.rpartition(":")[2]))
    cases = ((f"{body}.{mac[::-1]}", 1, "forged"), (foreign, 1, "none of the roots"),
             (make_token(mesh, "-n", "default"), 2, "malla token create -n istio-system"),
             ("not-a-token", 2, "--join-token"))
    for bad, code, why in cases:
        done = refused(mesh, remote_home, "--address", free_loopback_address(), token=bad)
        assert (done.returncode, why in done.stderr) == (code, True), done.stderr
    assert mesh._get("/api/v1/proxies")["items"] == []
    assert mesh.identities() == []


def test_address_auto_a_missing_token_and_an_unreachable_control_plane_are_refused_naming_the_flag(
        mesh: Mesh, tmp_path: Path) -> None:
    remote_home = tmp_path / "other-host"
    token = make_token(mesh, "-n", "istio-system")
    done = refused(mesh, remote_home, "--address", "auto", token=token)
    assert done.returncode == 2 and "--address auto" in done.stderr and "--controlplane" in done.stderr, done.stderr

    def gateway(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PYTHON, "-m", "malla", "gateway", *args], cwd=mesh.workdir, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL, env=clean_env(MALLA_HOME=str(remote_home)))

    done = gateway("--controlplane", mesh.state.ca_address)
    assert done.returncode == 2 and "needs a join token" in done.stderr and "--join-token" in done.stderr, done.stderr
    with socket.socket() as closed:  # bound, never listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        done = gateway("--controlplane", f"127.0.0.1:{closed.getsockname()[1]}", "--join-token", token)
    assert done.returncode == 1 and "--controlplane" in done.stderr and "cannot reach" in done.stderr, done.stderr
    assert not remote_home.exists() or list(remote_home.iterdir()) == []


def test_the_gateway_takes_the_tokens_service_account_or_its_own_name_when_the_token_allows_any(
        tmp_path: Path) -> None:
    tokens = JoinTokens(os.urandom(32))
    options = GatewayOptions(home=tmp_path, name="edge")
    named = gateway_with_token(options, tokens.create_token("istio-system", "edge-sa", ttl=600))
    assert named.account() == "edge-sa" and named.join_token
    assert gateway_with_token(options, tokens.create_token("istio-system", ttl=600)).account() == "edge-service-account"
