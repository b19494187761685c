"""``malla run --transparent`` with real Envoys and a real control plane (root).

The apps have no mesh settings: ``apps/frontend.py`` calls ``http://reviews:9080/``
with the standard library, and mesh DNS plus the capture rules do the rest.
Every address a test dials is loopback or inside a namespace a workload of
the test made.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import pytest

from malla.pilot.vips import VIP_NETWORK
from tests.controlplane.harness import APPS as AGENT_APPS
from tests.controlplane.harness import Mesh
from tests.transparent.conftest import new_netns_name, remove_netns
from tests.transparent.workloads import (
    APPS,
    assert_gone,
    counter,
    explicit_admin,
    get,
    host_interface_of,
    host_nat_rules,
    stopped,
    transparent_admin,
    wait_counter,
)

pytestmark = pytest.mark.envoy
PYTHON = sys.executable


class Transparent:
    """A started mesh, and the namespaces its transparent workloads get (deleted whatever happens)."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.names: list[str] = []

    def run(self, name: str, *args: str, command: list[str], env: dict[str, str] | None = None):
        netns_name = new_netns_name()
        self.names.append(netns_name)
        agent = self.mesh.run(name, "--transparent", "--netns", netns_name, *args, command=command, env=env)
        return agent, netns_name

    def serve(self, name: str, command: list[str], env: dict[str, str] | None = None):
        agent, netns_name = self.run(name, "-p", "9080/http", command=command, env=env)
        workload = self.mesh.wait_registered(name, agent, timeout=60)
        return agent, netns_name, workload["address"]


@pytest.fixture
def transparent(mesh: Mesh):
    mesh.start()
    t = Transparent(mesh)
    try:
        yield t
    finally:
        mesh.close()
        for name in t.names:
            remove_netns(name)


def test_app_without_settings_calls_a_service_by_name_through_both_sidecars(transparent: Transparent, tmp_path: Path):
    mesh = transparent.mesh
    host_nat = host_nat_rules()
    reviews = mesh.run_app("reviews", "--version", "v1", "-p", "9080/http", state=tmp_path / "reviews")
    mesh.wait_registered("reviews", reviews)
    frontend, netns_name, address = transparent.serve("frontend", [PYTHON, str(APPS / "frontend.py")])
    assert ipaddress.ip_address(address) in ipaddress.ip_network("10.89.0.0/16")
    host_interface = host_interface_of(netns_name)

    # Into the namespace from the root namespace: captured to 15006, then the app calls reviews by name.
    assert get(f"http://{address}:9080/") == "frontend -> reviews v1\n"
    admin = transparent_admin(netns_name)
    assert wait_counter(admin, "listener.0.0.0.0_15006.http.inbound_0.0.0.0_9080.downstream_rq_2xx") >= 1
    assert wait_counter(admin, "cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_rq_200") >= 1
    assert wait_counter(explicit_admin(mesh, "reviews"), "http.inbound_0.0.0.0_9080.downstream_rq_2xx") >= 1

    # The app had no proxy variables, and mesh DNS gave it one VIP for every form of the name.
    assert get(f"http://{address}:9080/env") == ""
    answers = {get(f"http://{address}:9080/resolve?name={n}") for n in (
        "reviews", "reviews.default", "reviews.default.svc.cluster.local",
    )}
    assert len(answers) == 1
    assert ipaddress.ip_address(answers.pop().strip()) in VIP_NETWORK

    # An explicit workload calls the transparent one by name (one-shot, its own sidecar).
    curl = mesh.run("curl", command=[PYTHON, "-c", "import urllib.request as u; print(u.urlopen('http://frontend:9080/').read().decode())"])
    assert curl.wait(60) == 0, curl.output()
    assert "frontend -> reviews v1" in curl.output()

    assert stopped(frontend) == 128 + 15, frontend.output()  # SIGTERM passed on to an app that does not catch it
    assert_gone(netns_name, host_interface)
    assert host_nat_rules() == host_nat


def test_a_direct_connection_is_still_captured_and_one_shot_clients_leave_nothing(transparent: Transparent, tmp_path: Path):
    mesh = transparent.mesh
    state = tmp_path / "ratings"
    state.mkdir()
    _ratings, ratings_ns, ratings_address = transparent.serve(
        "ratings", [PYTHON, str(AGENT_APPS / "http_app.py")], env={"APP_STATE": str(state)}
    )
    _frontend, frontend_ns, frontend_address = transparent.serve("frontend", [PYTHON, str(APPS / "frontend.py")])
    admin = transparent_admin(frontend_ns)

    # The app dials the other workload's address itself, not its name: its sidecar still carries it.
    before = counter(admin, "cluster.PassthroughCluster.upstream_cx_total")
    assert get(f"http://{frontend_address}:9080/call?url=http://{ratings_address}:9080/") == "200 ratings -\n"
    assert wait_counter(admin, "cluster.PassthroughCluster.upstream_cx_total", at_least=before + 1) > before
    assert wait_counter(
        transparent_admin(ratings_ns), "listener.0.0.0.0_15006.http.inbound_0.0.0.0_9080.downstream_rq_2xx"
    ) >= 1

    # A one-shot transparent client: no ports, no settings, exits with its command's status.
    client, client_ns = transparent.run(
        "client", command=[PYTHON, "-c", "import urllib.request as u; print(u.urlopen('http://ratings:9080/').read().decode())"]
    )
    assert client.wait(90) == 0, client.output()
    assert "ratings -" in client.output()
    assert_gone(client_ns)


def test_a_killed_agents_namespace_is_cleaned_by_the_next_one(transparent: Transparent):
    killed, killed_ns, _address = transparent.serve("frontend", [PYTHON, str(APPS / "frontend.py")])
    host_interface = host_interface_of(killed_ns)
    killed.proc.kill()  # SIGKILL: no cleanup of its own; its Envoy and app die with it
    killed.wait(30)
    # The next transparent agent to start (this one, or another test's running alongside) sweeps it.
    client, client_ns = transparent.run("client", command=[PYTHON, "-c", "print('done')"])
    assert client.wait(90) == 0, client.output()
    assert_gone(killed_ns, host_interface)
    assert_gone(client_ns)
