"""A control plane in this process with a small Bookinfo-like mesh of fake agents behind it.

The control plane is the real one (HTTP API, console, metrics poller) on
ports the kernel picks. Its workloads are fake agents (``fakes.FakeAgent``)
that register like real ones and serve Istio's metrics at steady rates, so
the console's figures can be checked exactly. Shared by the console's
modules (one xdist group), because a figure needs a few scrape rounds.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from malla.controlplane.server import ControlPlane, ControlPlaneOptions
from tests.console.fakes import FakeAgent, Flow


@dataclass
class ConsoleMesh:
    cp: ControlPlane
    api: str
    home: Path
    agents: list[FakeAgent]

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(self.api + path, params=params, timeout=30, trust_env=False, follow_redirects=True)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.api + path, timeout=30, trust_env=False, **kwargs)

    def json(self, path: str, **params: Any) -> Any:
        response = self.get(path, **params)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()


def bookinfo_agents() -> list[FakeAgent]:
    """Workloads as ``malla run --name NAME --version V`` makes them. productpage calls reviews (v1 fine, v2 with
    5 % 500s, plus 503s that never reach a sidecar) and details (30 % 404, plaintext); reviews v2 calls ratings."""
    return [
        FakeAgent("productpage", [
            Flow("productpage", "reviews", "reviews", reporter="source", rps=2),
            Flow("productpage", "reviews", "reviews", reporter="source", rps=2, destination_version="v2"),
            Flow("productpage", "reviews", "unknown", reporter="source", rps=0.5, codes={"503": 1.0}),
            Flow("productpage", "details", "details", reporter="source", rps=4),
        ]),
        FakeAgent("reviews", [Flow("productpage", "reviews", "reviews", rps=2, latency_bucket=25)]),
        FakeAgent("reviews", [
            Flow("productpage", "reviews", "reviews", rps=2, codes={"200": 0.95, "500": 0.05}, destination_version="v2"),
            Flow("reviews", "ratings", "ratings", reporter="source", rps=2, source_version="v2"),
        ], version="v2"),
        FakeAgent("ratings", [Flow("reviews", "ratings", "ratings", rps=2, latency_bucket=5, source_version="v2")]),
        FakeAgent("details", [
            Flow("productpage", "details", "details", rps=4, latency_bucket=10, mtls=False, codes={"200": 0.7, "404": 0.3}),
        ]),
    ]


def _free_ports() -> dict[str, int]:
    # Every listening port of the control plane on 0: modules and xdist workers run side by side.
    return {f.name: 0 for f in dataclasses.fields(ControlPlaneOptions) if f.name.endswith("_port")}


@pytest.fixture(scope="session")
def console_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleMesh]:
    home = tmp_path_factory.mktemp("console-home")
    cp = ControlPlane(ControlPlaneOptions(home=home, **_free_ports()))
    state = cp.start()
    agents = bookinfo_agents()
    mesh = ConsoleMesh(cp, state.api_url, home, agents)
    try:
        for agent in agents:
            registered = mesh.post("/api/v1/workloads", json=agent.registration())
            assert registered.status_code == 200, registered.text
        wait_for_rates(mesh)
        yield mesh
    finally:
        cp.stop()
        for agent in agents:
            agent.close()


def wait_for_rates(mesh: ConsoleMesh, *, timeout: float = 90.0) -> None:
    """Until every agent was scraped three times (two intervals of rates for all of them)."""
    deadline = time.monotonic() + timeout
    while True:
        mesh.get("/healthz")  # any request starts the poller
        if all(a.scrapes >= 3 for a in mesh.agents):
            return
        if time.monotonic() > deadline:
            scrapes = {a.name: a.scrapes for a in mesh.agents}
            status = mesh.json("/api/v1/graph")["scrape"]
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for scrapes: {scrapes}, poller: {status}")
        time.sleep(0.2)
