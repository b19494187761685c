"""A crashed sidecar is restarted; one that keeps crashing stops its workload with a clear message."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.controlplane.harness import Mesh, wait_until

pytestmark = pytest.mark.envoy


def call_reviews(mesh: Mesh) -> str:
    done = mesh.cli("run", "-q", "--name", "probe", "--", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                    "http://reviews:9080/")
    return done.stdout


def sidecar_of(mesh: Mesh, name: str) -> int:
    pids = [pid for pid, cmd in mesh.envoys().items() if f"/workloads/{name}-" in cmd]
    assert len(pids) == 1, pids
    return pids[0]


def test_a_crashed_sidecar_is_restarted_and_traffic_comes_back(running: Mesh, tmp_path: Path) -> None:
    agent = running.run_app("reviews", "-p", "9080", state=tmp_path / "state")
    running.wait_registered("reviews", agent)
    assert call_reviews(running) == "200"
    first = sidecar_of(running, "reviews")
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: call_reviews(running) == "200" and sidecar_of(running, "reviews") != first,
               timeout=30, what="a new sidecar serving reviews again")
    assert agent.proc.poll() is None
    assert "restarting it" in agent.output()


def test_a_sidecar_that_keeps_crashing_stops_the_workload(running: Mesh, tmp_path: Path) -> None:
    agent = running.run_app("reviews", "-p", "9080", state=tmp_path / "state")
    running.wait_registered("reviews", agent)
    killed: set[int] = set()

    def crash_again() -> bool:
        if agent.proc.poll() is not None:
            return True
        pids = [p for p in running.envoys() if p not in killed]
        for pid in pids:
            killed.add(pid)
            os.kill(pid, signal.SIGKILL)
        return False

    wait_until(crash_again, timeout=60, what="malla run to give up on its sidecar")
    assert agent.proc.returncode != 0
    assert "the sidecar crashed" in agent.output() and "stopping the workload" in agent.output()
    wait_until(lambda: running.workload("reviews") is None, timeout=10, what="the workload to be withdrawn")
