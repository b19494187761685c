"""``malla up -d``, ``status``, ``down``: start, find and stop the control plane as a user does."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.controlplane.harness import PYTHON, Mesh, pid_running, processes_mentioning, wait_until


def test_up_detached_prints_real_addresses_and_writes_its_state(mesh: Mesh) -> None:
    done = mesh.up()
    assert done.returncode == 0, done.stderr
    state = mesh.state()
    assert state is not None, "controlplane.json was not written"
    # Port 0 was asked for: what is printed and recorded are the ports really bound.
    for address in (state["xds_address"], state["api_url"], state["monitoring_url"]):
        assert not address.endswith(":0")
        assert address.removeprefix("http://") in done.stdout
    assert httpx.get(state["api_url"] + "/healthz", trust_env=False).text == "ok"
    metrics = httpx.get(state["monitoring_url"] + "/metrics", trust_env=False).text
    assert "pilot_xds" in metrics
    host, _, port = state["xds_address"].rpartition(":")
    socket.create_connection((host, int(port)), timeout=5).close()


def test_status_finds_the_control_plane_from_any_directory(running: Mesh, tmp_path: Path) -> None:
    state = running.state()
    assert state is not None
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = running.cli("status", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert str(state["pid"]) in done.stdout
    for address in (state["xds_address"], state["api_url"], state["monitoring_url"]):
        assert address in done.stdout
    assert "no workloads" in done.stdout
    # --home works where MALLA_HOME is not set.
    env = running.env()
    del env["MALLA_HOME"]
    by_flag = running.cli("status", "--home", str(running.home), "-o", "json", cwd=elsewhere, env=env)
    assert by_flag.returncode == 0, by_flag.stderr
    data = json.loads(by_flag.stdout)
    assert data["pid"] == state["pid"] and data["addresses"]["api"] == state["api_url"]


def test_status_ignores_proxy_settings_in_the_environment(running: Mesh) -> None:
    # A user behind a corporate proxy, or a shell inside a workload, has *_PROXY set.
    dead = "http://127.0.0.1:9"
    done = running.cli("status", env=running.env(HTTP_PROXY=dead, http_proxy=dead, ALL_PROXY=dead, all_proxy=dead))
    assert done.returncode == 0, done.stderr


def test_status_without_a_control_plane_says_how_to_start_one(mesh: Mesh) -> None:
    done = mesh.cli("status")
    assert done.returncode != 0
    assert "malla up" in done.stderr
    assert str(mesh.home) in done.stderr


def test_a_second_up_on_the_same_home_is_refused(running: Mesh) -> None:
    state = running.state()
    assert state is not None
    again = running.up()
    assert again.returncode != 0
    assert "already running" in again.stderr and "malla down" in again.stderr
    assert running.state() == state, "the refused start changed controlplane.json"
    assert running.cli("status").returncode == 0


def test_two_ups_racing_on_one_home_start_one_control_plane(mesh: Mesh) -> None:
    command = [PYTHON, "-m", "malla", "up", "-d", "--xds-port", "0", "--api-port", "0", "--monitoring-port", "0",
               "--ca-port", "0", "--ca-join-port", "0"]
    racers = [subprocess.Popen(command, cwd=mesh.workdir, env=mesh.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) for _ in range(2)]
    results = [(r.wait(60), r.stderr.read() if r.stderr else "") for r in racers]
    state = mesh.state()
    assert state is not None
    mesh.adopt(state["pid"])
    assert sorted(code for code, _ in results) == [0, 1], results
    assert "already running" in next(err for code, err in results if code)
    assert len([p for p, cmd in processes_mentioning(str(mesh.home)).items() if " up " in cmd]) == 1
    assert mesh.cli("status").returncode == 0


def test_down_stops_it_and_leaves_no_process(running: Mesh) -> None:
    state = running.state()
    assert state is not None
    done = running.cli("down")
    assert done.returncode == 0, done.stderr
    assert "stopped" in done.stdout
    wait_until(lambda: not pid_running(state["pid"]), timeout=10, what="the control plane process to exit")
    assert processes_mentioning(str(running.home)) == {}
    assert running.state() is None, "controlplane.json outlived the control plane"
    after = running.cli("status")
    assert after.returncode != 0 and "malla up" in after.stderr
    # Stopping what is not running is not an error.
    assert running.cli("down").returncode == 0
    # The home can be used again.
    assert running.up().returncode == 0


@pytest.mark.parametrize("flag", ["--xds-port", "--api-port", "--monitoring-port", "--ca-port", "--ca-join-port"])
def test_a_port_in_use_names_the_port_and_the_flag(mesh: Mesh, flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"--xds-port": "0", "--api-port": "0", "--monitoring-port": "0", "--ca-port": "0", "--ca-join-port": "0",
                 flag: str(port)}
        done = mesh.cli("up", "-d", *(x for kv in ports.items() for x in kv))
    assert done.returncode != 0
    assert f"127.0.0.1:{port}" in done.stderr
    assert "in use" in done.stderr
    assert f"choose another port with {flag}" in done.stderr
    assert mesh.state() is None
    assert processes_mentioning(str(mesh.home)) == {}
