"""A workload's life in the mesh: it joins when it answers, leaves when it exits, and stops without losing requests."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.controlplane.harness import APPS, PYTHON, Mesh, pid_running, wait_until

pytestmark = pytest.mark.envoy


def call_reviews(mesh: Mesh) -> str:
    done = mesh.cli("run", "-q", "--name", "probe", "--", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                    "http://reviews:9080/")
    return done.stdout


@pytest.mark.parametrize("ready_path", [None, "/ready"], ids=["port-answers", "ready-path"])
def test_registers_only_when_ready_and_leaves_when_it_exits(running: Mesh, tmp_path: Path, ready_path: str | None) -> None:
    state, gate, leave = tmp_path / "state", tmp_path / "go", tmp_path / "leave"
    if ready_path is None:
        # The app takes its time to listen on $PORT.
        knobs = {"APP_LISTEN_AFTER": str(gate)}
        args = ["-p", "9080"]
    else:
        # The app listens at once but its /ready says 503 until it is ready.
        knobs = {"APP_READY_AFTER": str(gate)}
        args = ["-p", "9080", "--ready-path", ready_path]
    agent = running.run_app("reviews", *args, state=state, APP_EXIT_AFTER=str(leave), **knobs)
    wait_until(lambda: (state / "env.json").exists(), timeout=20, what="the app to start")
    assert running.workload("reviews") is None
    assert call_reviews(running) != "200"
    assert running.workload("reviews") is None, "registered before it was ready"

    gate.touch()
    running.wait_registered("reviews", agent)
    assert call_reviews(running) == "200"

    leave.touch()  # the app exits by itself, with status 3
    assert agent.wait() == 3
    assert running.workload("reviews") is None
    assert running.envoys() == {}
    assert call_reviews(running) != "200"


def test_rolling_a_new_version_in_and_the_old_out_loses_no_request(running: Mesh, tmp_path: Path) -> None:
    old = running.run_app("reviews", "--version", "v1", "-p", "9080", state=tmp_path / "v1")
    running.wait_registered("reviews", old)
    log, stop = tmp_path / "load.log", tmp_path / "stop-load"
    load = running.run("load", "-q", command=[PYTHON, str(APPS / "load.py")],
                       env={"LOAD_URL": "http://reviews:9080/", "LOAD_LOG": str(log), "LOAD_STOP": str(stop)})

    def answers() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    wait_until(lambda: answers().count("200 reviews v1") >= 20, what="steady traffic to v1")
    new = running.run_app("reviews", "--version", "v2", "-p", "9080", state=tmp_path / "v2")
    wait_until(lambda: answers().count("200 reviews v2") >= 20, what="v2 to take a share of the traffic")

    os.kill(old.pid, signal.SIGTERM)
    assert old.wait() == 0, old.output()  # the app handled SIGTERM and exited 0; the agent passes that on
    assert (tmp_path / "v1" / "signals.log").read_text() == "SIGTERM\n"
    served = len(answers())
    wait_until(lambda: len(answers()) >= served + 50, what="more traffic after v1 left")
    stop.touch()
    assert load.wait() == 0

    lines = answers()
    failures = [line for line in lines if not line.startswith("200 ")]
    assert failures == [], f"{len(failures)} of {len(lines)} requests failed during the roll: {failures[:5]}"
    # No request reached v1 after it was told to stop: its endpoint was withdrawn first.
    assert "200 reviews v1 terminating" not in lines
    assert lines[-1] == "200 reviews v2"
    assert [w["labels"]["version"] for w in running.workloads() if w["name"] == "reviews"] == ["v2"]
    assert new.proc.poll() is None


def test_sigkill_of_the_agent_leaves_no_sidecar_and_the_workload_is_withdrawn(running: Mesh, tmp_path: Path) -> None:
    agent = running.run_app("reviews", "-p", "9080", state=tmp_path / "reviews")
    running.wait_registered("reviews", agent)
    envoys = running.envoys()
    assert len(envoys) == 1
    app_pid = json.loads((tmp_path / "reviews" / "env.json").read_text())["pid"]

    os.kill(agent.pid, signal.SIGKILL)
    agent.wait()
    wait_until(lambda: not any(pid_running(p) for p in envoys), timeout=10, what="the orphaned Envoy to die")
    wait_until(lambda: not pid_running(app_pid), timeout=10, what="the orphaned app to stop")
    # The control plane notices the sidecar's stream ended and withdraws the workload after its grace period.
    wait_until(lambda: running.workload("reviews") is None, timeout=30, what="the workload to be withdrawn")
    assert "reviews" not in running.cli("status").stdout
