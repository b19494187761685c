"""A captured workload on "another host": ``malla run --transparent --controlplane HOST:15012`` (root).

The control plane runs in this process (``tests.mtls.harness``); the agent
gets an empty ``MALLA_HOME`` and a join token, as on a host of its own, and
a loopback address outside the control plane's pool as that host's address
(``--address``). Its app runs in a network namespace with capture rules and
no mesh settings: it listens on ``$PORT`` and calls other services by name.
Every address dialled is loopback or inside the test's namespaces.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mesh import wait_for
from tests.identity.test_remote_agent import free_loopback_address, make_token, proxy_rows
from tests.mtls.conftest import mesh, namespace  # noqa: F401  (fixtures: a control plane per test)
from tests.mtls.harness import PYTHON, Mesh, Workload, clean_env, xfcc
from tests.transparent.conftest import new_netns_name, remove_netns
from tests.transparent.workloads import assert_gone, host_interface_of, netns_names

pytestmark = pytest.mark.envoy

# An app with no mesh settings: GET /call?url=U answers U's status and body (JSON), anything else
# answers who it is and the headers it received.
APP = """
import json, os, urllib.error, urllib.parse, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/call":
            target = dict(urllib.parse.parse_qsl(url.query))["url"]
            try:
                with urllib.request.urlopen(target, timeout=20) as r:
                    out = {"status": r.status, "body": r.read().decode()}
            except urllib.error.HTTPError as exc:
                out = {"status": exc.code, "body": exc.read().decode()}
            except OSError as exc:
                out = {"status": 599, "body": str(exc)}
        else:
            out = {"name": os.environ["MALLA_NAME"], "headers": {k.lower(): v for k, v in self.headers.items()}}
        body = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


@pytest.fixture
def netns_name() -> Iterator[str]:
    name = new_netns_name()
    try:
        yield name
    finally:
        remove_netns(name)


def run_remote_transparent(mesh: Mesh, home: Path, name: str, *, token: str, namespace: str, netns: str,
                           address: str) -> Workload:
    """``malla run --transparent --controlplane ... --address ADDRESS`` with MALLA_HOME set to `home`."""
    stem = mesh.workdir / f"remote-{name}"
    token_file, app, log = stem.with_suffix(".token"), stem.with_suffix(".py"), stem.with_suffix(".log")
    token_file.write_text(token + "\n")
    app.write_text(APP)
    command = [PYTHON, "-m", "malla", "run", "--name", name, "-n", namespace, "-p", "9080/http",
               "--transparent", "--netns", netns, "--controlplane", mesh.state.ca_address,
               "--join-token-file", str(token_file), "--address", address, "--", PYTHON, str(app)]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=mesh.workdir, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=clean_env(MALLA_HOME=str(home)))
    workload = Workload(name, proc, log, stem.with_suffix(".json"), info={"address": address})
    mesh.workloads.append(workload)
    return workload


def registered_addresses(mesh: Mesh, workload: Workload) -> set[str]:
    if workload.proc.poll() is not None:
        raise AssertionError(f"malla run exited {workload.proc.returncode}:\n{workload.output()}")
    return {w["address"] for w in mesh._get("/api/v1/workloads")["items"]}


def refused(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_a_captured_workload_on_another_host_serves_and_calls_the_mesh_by_name_over_mtls(
        mesh: Mesh, namespace: str, netns_name: str, tmp_path: Path) -> None:
    remote_home = tmp_path / "other-host"
    remote_home.mkdir()
    address = free_loopback_address()
    details = mesh.server("details", namespace=namespace)
    productpage = mesh.client("productpage", namespace=namespace)
    frontend = run_remote_transparent(mesh, remote_home, "frontend", token=make_token(mesh, namespace, "frontend"),
                                      namespace=namespace, netns=netns_name, address=address)

    # Registered at this host's address (--address), not at the namespace's, and in sync over mTLS.
    wait_for(lambda: registered_addresses(mesh, frontend), lambda seen: address in seen, timeout=90,
             what="the remote transparent workload to register")
    mesh.settle()
    assert not any(a.startswith("10.89.") for a in registered_addresses(mesh, frontend))
    rows = proxy_rows(mesh, address)
    assert len(rows) == 1 and all(t["state"] == "SYNCED" for t in rows[0]["types"]), rows
    assert not (remote_home / "controlplane.json").exists()
    host_interface = host_interface_of(netns_name)

    # A mesh client elsewhere calls it by name: host address -> namespace -> its sidecar, mTLS end to end.
    reply = productpage.http().get("http://frontend:9080/")
    assert reply.status == 200 and reply.json()["name"] == "frontend", reply.body[:300]
    assert f"URI=spiffe://cluster.local/ns/{namespace}/sa/productpage" in xfcc(reply), reply.body[:500]

    # The captured app calls another service by name: mesh DNS over 15012, capture, its sidecar, mTLS.
    reply = productpage.http().get("http://frontend:9080/call?url=http://details:9080/")
    assert reply.status == 200, reply.body[:300]
    called = reply.json()
    assert called["status"] == 200, called
    seen_by_details = json.loads(called["body"])
    assert seen_by_details["name"] == "details", called
    assert (f"URI=spiffe://cluster.local/ns/{namespace}/sa/frontend"
            in seen_by_details["headers"].get("x-forwarded-client-cert", "")), called
    assert details.proc.poll() is None

    # Leaving: withdrawn, and namespace, veth, run directory and the forward are gone.
    frontend.proc.terminate()
    assert frontend.proc.wait(60) == 128 + 15, frontend.output()  # the app's status: ended by SIGTERM
    assert "error:" not in frontend.output()
    assert address not in {w["address"] for w in mesh._get("/api/v1/workloads")["items"]}
    assert_gone(netns_name, host_interface)
    assert refused(address, 9080)


def test_an_address_that_is_not_this_hosts_is_named_and_nothing_is_left(
        mesh: Mesh, namespace: str, netns_name: str, tmp_path: Path) -> None:
    remote_home = tmp_path / "other-host"
    remote_home.mkdir()
    frontend = run_remote_transparent(mesh, remote_home, "frontend", token=make_token(mesh, namespace, "frontend"),
                                      namespace=namespace, netns=netns_name, address="192.0.2.10")
    assert frontend.proc.wait(90) == 1
    said = " ".join(frontend.output().split())
    assert "--address 192.0.2.10" in said and "not an address of this host" in said, said
    assert netns_name not in netns_names()
    assert_gone(netns_name)
    assert mesh._get("/api/v1/workloads")["items"] == []
