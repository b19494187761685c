"""Helpers for tests that run ``malla run --transparent``: namespaces, sidecar stats, cleanup checks."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
from pathlib import Path

import httpx

from malla.agent import netns
from tests.controlplane.harness import Agent, Mesh, wait_until

APPS = Path(__file__).resolve().parent / "apps"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self._path)


def envoy_stats(admin: str) -> dict[str, int]:
    """Counters and gauges of an Envoy, by its admin address (host:port or a socket path)."""
    if admin.startswith("/"):
        conn: http.client.HTTPConnection = _UnixConnection(admin)
    else:
        host, _, port = admin.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/stats?format=json")
        data = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    return {s["name"]: int(s["value"]) for s in data["stats"] if "value" in s and not isinstance(s["value"], str)}


def transparent_admin(netns_name: str) -> str:
    return str(netns.RUN_DIR / netns_name / "admin.sock")


def explicit_admin(mesh: Mesh, name: str) -> str:
    (path,) = (mesh.home / "workloads").glob(f"{name}-*/admin-address")
    return path.read_text().strip()


def get(url: str) -> str:
    """GET from the root namespace (the test's), with no proxy."""
    response = httpx.get(url, timeout=30, trust_env=False)
    assert response.status_code == 200, f"GET {url}: {response.status_code} {response.text}"
    return response.text


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def host_nat_rules() -> str:
    out = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith("#"))


def host_interface_of(netns_name: str, name: str | None = None) -> tuple[str, str]:
    """The root-namespace end of a workload's veth pair: its name and ifindex.

    The name is reused by the next workload that gets the same /30 (another test's, in
    parallel runs); the ifindex tells the two interfaces apart.
    """
    if name is None:
        name = str(json.loads((netns.RUN_DIR / netns_name / "owner.json").read_text())["hostInterface"])
    return name, Path(f"/sys/class/net/{name}/ifindex").read_text().strip()


def assert_gone(netns_name: str, host_interface: tuple[str, str] | None = None) -> None:
    """Nothing of a transparent workload is left: namespace, veth, resolver files, run directory."""
    assert netns_name not in netns_names()
    if host_interface is not None:
        name, ifindex = host_interface
        try:
            now = Path(f"/sys/class/net/{name}/ifindex").read_text().strip()
        except OSError:
            now = None
        assert now != ifindex, f"{name} (ifindex {ifindex}) is still there"
    assert not (Path("/etc/netns") / netns_name).exists()
    assert not (netns.RUN_DIR / netns_name).exists()


def stopped(agent: Agent) -> int:
    agent.terminate()
    return agent.wait(60)


def counter(admin: str, name: str) -> int:
    return envoy_stats(admin).get(name, 0)


def wait_counter(admin: str, name: str, *, at_least: int = 1) -> int:
    """Envoy's stats flush on their own schedule: wait for a counter to reach a value."""
    return wait_until(lambda: counter(admin, name) >= at_least and counter(admin, name), what=f"{name} >= {at_least}")
