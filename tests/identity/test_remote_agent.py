"""An agent on "another host": ``malla run --controlplane HOST:15012 --join-token ...`` with an empty home.

The control plane runs in this process with its own home (``tests.mtls.harness``);
the remote agent gets a different, empty ``MALLA_HOME``, so it cannot read
``controlplane.json`` or the token secret: all it has is the control plane's
mTLS address and a token from ``malla token create``. Its workload lives on
a loopback address outside the control plane's pool, as a host of its own
would. Its Envoy must reach ADS (Delta or SotW) over mTLS on 15012, its
workload must be served over mTLS to and from local ones, and a rotated
certificate must keep working for a new ADS connection.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from malla.ca.discovery import join_address, root_hash
from malla.ca.tokens import JoinTokens, read_hints
from tests.e2e.mesh import UPSTREAM, wait_for
from tests.mtls.conftest import mesh, namespace  # noqa: F401  (fixtures: a control plane per test)
from tests.mtls.harness import PYTHON, Mesh, Workload, clean_env, xfcc

pytestmark = pytest.mark.envoy


def free_loopback_address() -> str:
    """A loopback address of 127.200.0.0/16 (outside the control plane's pool) whose sidecar ports are free."""
    for _ in range(200):
        candidate = f"127.200.{random.randint(0, 255)}.{random.randint(1, 254)}"
        try:
            for port in (15001, 9080, 15020):
                with socket.socket() as probe:
                    probe.bind((candidate, port))
        except OSError:
            continue
        return candidate
    raise AssertionError("no free loopback address in 127.200.0.0/16")


def make_token(mesh: Mesh, namespace: str, service_account: str) -> str:
    """What a user does on the control plane's host: ``malla token create``, the token alone on stdout."""
    done = mesh.cli("token", "create", "-n", namespace, "--service-account", service_account, "--ttl", "10m")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def remote_command(mesh: Mesh, name: str, *args: str, token_file: Path, namespace: str) -> list[str]:
    return [PYTHON, "-m", "malla", "run", "--name", name, "-n", namespace,
            "--controlplane", mesh.state.ca_address, "--join-token-file", str(token_file), *args]


def run_remote(mesh: Mesh, home: Path, name: str, *args: str, token: str, namespace: str,
               app: tuple[str, ...] = ()) -> Workload:
    """``malla run --controlplane ...`` with MALLA_HOME set to `home` (not the control plane's)."""
    stem = mesh.workdir / f"remote-{name}-{len(mesh.workloads)}"
    token_file, info, log = stem.with_suffix(".token"), stem.with_suffix(".json"), stem.with_suffix(".log")
    token_file.write_text(token + "\n")
    command = [*remote_command(mesh, name, *args, token_file=token_file, namespace=namespace),
               "--address", free_loopback_address(), "--", PYTHON, str(UPSTREAM), "--info", str(info), *app]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=mesh.workdir, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=clean_env(MALLA_HOME=str(home)))
    workload = Workload(name, proc, log, info)
    mesh.workloads.append(workload)
    return mesh.joined(workload)


def envoy_admin(home: Path) -> str:
    found = list(home.glob("workloads/*/admin-address"))
    assert len(found) == 1, f"expected one sidecar under {home}: {found}"
    return found[0].read_text().strip()


def envoy_stats(admin: str, regex: str) -> dict[str, int]:
    body = httpx.get(f"http://{admin}/stats", params={"format": "json", "filter": regex}, timeout=5,
                     trust_env=False).json()
    return {s["name"]: int(s["value"]) for s in body.get("stats", []) if isinstance(s.get("value"), int)}


def proxy_rows(mesh: Mesh, address: str) -> list[dict[str, Any]]:
    return [p for p in mesh.cli_json("proxy-status") if p["node"].split("~")[1] == address]


def test_a_remote_agent_with_an_address_and_a_token_joins_over_mtls_and_serves_the_mesh(
        mesh: Mesh, namespace: str, tmp_path: Path) -> None:
    remote_home = tmp_path / "other-host"
    remote_home.mkdir()
    token = make_token(mesh, namespace, "reviews")
    reviews = run_remote(mesh, remote_home, "reviews", "-p", "9080/http", "--delta", token=token,
                         namespace=namespace)
    details = mesh.server("details", namespace=namespace)
    productpage = mesh.client("productpage", namespace=namespace)

    # It never had the control plane's state, and proxy-status shows it in sync.
    assert not (remote_home / "controlplane.json").exists()
    rows = proxy_rows(mesh, reviews.address)
    assert len(rows) == 1 and rows[0]["mode"] == "Delta" and rows[0]["types"], rows
    assert all(t["state"] == "SYNCED" for t in rows[0]["types"]), rows
    status = mesh.cli("proxy-status")
    row = [line for line in status.stdout.splitlines() if line.startswith("reviews-")]
    assert len(row) == 1 and row[0].split().count("SYNCED") == 4, status.stdout

    # Its ADS connection is TLS, to the control plane's mTLS port.
    admin = envoy_admin(remote_home)
    tls = envoy_stats(admin, r"^cluster\.xds-grpc\.ssl\.")
    assert tls.get("cluster.xds-grpc.ssl.handshake", 0) >= 1, tls
    assert tls.get("cluster.xds-grpc.ssl.versions.TLSv1.3", 0) >= 1, tls
    config = httpx.get(f"http://{admin}/config_dump", timeout=5, trust_env=False).text
    assert f'"port_value": {mesh.state.ca_address.rpartition(":")[2]}' in config
    assert f'"port_value": {mesh.state.xds_address.rpartition(":")[2]}' not in config

    # Local -> remote and remote -> local, over mTLS both ways (the callee sees the caller's SPIFFE ID).
    reply = productpage.http().get("http://reviews:9080/")
    assert reply.status == 200 and reply.json()["name"] == "reviews", reply.body[:300]
    assert f"URI=spiffe://cluster.local/ns/{namespace}/sa/productpage" in xfcc(reply)
    reply = reviews.http().get("http://details:9080/")
    assert reply.status == 200 and reply.json()["name"] == "details", reply.body[:300]
    assert f"URI=spiffe://cluster.local/ns/{namespace}/sa/reviews" in xfcc(reply)

    # Its certificate report reached the control plane through the mTLS port too.
    assert mesh.identity(reviews)["state"] == "VALID"
    assert mesh.identity(reviews)["spiffeId"] == f"spiffe://cluster.local/ns/{namespace}/sa/reviews"

    # Leaving: withdrawn from the control plane, nothing left connected.
    reviews.proc.terminate()
    reviews.proc.wait(30)
    wait_for(lambda: [w["address"] for w in mesh._get("/api/v1/workloads")["items"]],
             lambda seen: reviews.address not in seen, timeout=20, what="the remote workload to leave")
    wait_for(lambda: proxy_rows(mesh, reviews.address), lambda rows: rows == [], timeout=20,
             what="the remote proxy to disconnect")
    assert reviews.address not in {i["nodeId"].split("~")[1] for i in mesh.identities()}


def test_forged_and_foreign_tokens_are_refused_before_anything_runs(
        mesh: Mesh, namespace: str, tmp_path: Path) -> None:
    remote_home = tmp_path / "other-host"
    token = make_token(mesh, namespace, "reviews")
    body, mac = token.rsplit(".", 1)
    forged = f"{body}.{mac[::-1]}"
    # Another control plane's token, naming another CA: the agent must not trust this one with it.
    other_root = "sha256:" + "ab" * 32
    foreign = JoinTokens(os.urandom(32)).create_token(namespace, "reviews", ttl=600, ca_hashes=[other_root],
                                                      join_port=int(mesh.state.ca_join_address.rpartition(":")[2]))
    for bad, why in ((forged, "forged"), (foreign, "none of the roots")):
        token_file = tmp_path / "token"
        token_file.write_text(bad)
        started = time.monotonic()
        done = subprocess.run(
            [*remote_command(mesh, "reviews", "-p", "9080/http", token_file=token_file, namespace=namespace),
             "--address", free_loopback_address(), "--", PYTHON, str(UPSTREAM)],
            cwd=mesh.workdir, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
            env=clean_env(MALLA_HOME=str(remote_home)))
        assert done.returncode != 0 and why in done.stderr, done.stderr
        assert time.monotonic() - started < 30, "a refusal is final: no waiting for the start-up timeout"
    assert mesh._get("/api/v1/workloads")["items"] == []
    assert mesh._get("/api/v1/proxies")["items"] == []
    assert list(remote_home.glob("workloads/*/admin-address")) == []


def test_a_rotated_certificate_serves_a_new_ads_connection(mesh: Mesh, namespace: str, tmp_path: Path) -> None:
    remote_home = tmp_path / "other-host"
    token = make_token(mesh, namespace, "ratings")
    ratings = run_remote(mesh, remote_home, "ratings", "-p", "9080/http", "--cert-ttl", "6s",
                         token=token, namespace=namespace)
    first = mesh.identity(ratings)
    before = proxy_rows(mesh, ratings.address)[0]["connection"]

    # Wait until the first certificate has expired: only a rotated one can open a new connection now.
    wait_for(lambda: mesh.identity(ratings), lambda r: r["serial"] != first["serial"] and time.time() > first["notAfter"],
             timeout=60, what="the first certificate to expire, and a new one to be in use")
    citadel = mesh.cp.citadel
    assert citadel is not None and citadel.mesh is not None
    port = citadel.mesh.port
    citadel.mesh.stop(grace=0)
    citadel.mesh.start(host="127.0.0.1", port=port)

    rows = wait_for(lambda: proxy_rows(mesh, ratings.address),
                    lambda rows: len(rows) == 1 and rows[0]["connection"] != before
                    and all(t["state"] == "SYNCED" for t in rows[0]["types"]),
                    timeout=60, what="the remote sidecar to reconnect over mTLS with its new certificate")
    assert rows[0]["types"] and rows[0]["mode"] == "SotW"
    stats = envoy_stats(envoy_admin(remote_home), r"^cluster\.xds-grpc\.")
    assert stats.get("cluster.xds-grpc.client_ssl_socket_factory.ssl_context_update_by_sds", 0) >= 2, stats
    assert stats.get("cluster.xds-grpc.ssl.connection_error", 0) == 0, stats


def test_token_create_tells_what_the_other_host_needs(mesh: Mesh, namespace: str) -> None:
    data = mesh.cli_json("token", "create", "-n", namespace)
    root = x509.load_pem_x509_certificate(data["rootCert"].encode())
    assert data["caCertHashes"] == [root_hash(root)] and data["caAddress"] == mesh.state.ca_address
    hints = read_hints(data["token"])
    assert hints.ca_hashes == (root_hash(root),) and hints.namespace == namespace
    assert join_address("127.0.0.1", hints.join_port or 0) == mesh.state.ca_join_address
    text = mesh.cli("token", "create", "-n", namespace)
    assert text.stdout.strip().startswith("malla1.") and "--controlplane" in text.stderr, text.stderr
