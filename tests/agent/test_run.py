"""``malla run``: workloads with real Envoy sidecars calling each other by service name, and one-shot commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.controlplane.harness import APPS, PYTHON, Mesh, wait_until

pytestmark = pytest.mark.envoy

FETCH = "import urllib.request; print(urllib.request.urlopen('http://reviews:9080/', timeout=10).read().decode().strip())"


def test_plain_http_by_service_name_from_curl_and_python(running: Mesh, tmp_path: Path) -> None:
    reviews = running.run_app("reviews", "--version", "v1", "-p", "9080", state=tmp_path / "reviews")
    workload = running.wait_registered("reviews", reviews)

    # The app was told its port and who it is.
    env = json.loads((tmp_path / "reviews" / "env.json").read_text())["env"]
    assert env["PORT"].isdigit() and env["PORT"] != "9080"
    assert env["MALLA_NAME"] == "reviews" and env["MALLA_VERSION"] == "v1" and env["MALLA_NAMESPACE"] == "default"
    assert env["MALLA_ADDRESS"] == workload["address"]
    assert env["HTTP_PROXY"] == env["http_proxy"] == env["MALLA_SIDECAR"]
    assert workload["labels"] == {"app": "reviews", "version": "v1"} and workload["ports"] == {"http": 9080}

    curl = shutil.which("curl")
    assert curl is not None, "the tests need curl"
    by_curl = running.cli("run", "--name", "curl", "--", curl, "-s", "http://reviews:9080/")
    assert by_curl.returncode == 0, by_curl.stderr
    assert by_curl.stdout == "reviews v1\n"
    # Plain urllib, and its first act at start-up: the sidecar was ready before the app started.
    by_python = running.cli("run", "--name", "productpage", "--", PYTHON, "-c", FETCH)
    assert by_python.returncode == 0, by_python.stderr
    assert by_python.stdout == "reviews v1\n"

    # One-shots leave nothing behind: only reviews' sidecar runs, only reviews is registered.
    wait_until(lambda: len(running.envoys()) == 1, timeout=10, what="the one-shot sidecars to stop")
    assert [w["name"] for w in running.workloads()] == ["reviews"]
    status = running.cli("status")
    assert status.returncode == 0
    assert "reviews" in status.stdout and workload["address"] in status.stdout
    assert "curl" not in status.stdout and "productpage" not in status.stdout


def test_one_shot_exits_with_the_commands_status(running: Mesh) -> None:
    commands = {
        7: ["sh", "-c", "exit 7"],
        128 + 15: ["sh", "-c", "kill -TERM $$"],  # killed by a signal N: 128+N, as a shell reports it
        128 + 9: [PYTHON, "-c", "import os; os.kill(os.getpid(), 9)"],
    }
    for expected, command in commands.items():
        done = running.cli("run", "--name", "job", "--", *command)
        assert done.returncode == expected, f"{command}: {done.stderr}"
        assert running.envoys() == {}
    assert running.workloads() == []
    # What a shell says when the command cannot run.
    missing = running.cli("run", "--name", "job", "--", "no-such-command-here")
    assert missing.returncode == 127 and "no-such-command-here" in missing.stderr
    assert running.envoys() == {}
    bad_port = running.cli("run", "--name", "job", "-p", "http", "--", "true")
    assert bad_port.returncode == 2 and "NUMBER[/PROTOCOL]" in bad_port.stderr


def test_tcp_service_is_reached_at_the_clients_own_address(running: Mesh) -> None:
    redis = running.run("redis", "-p", "6379/tcp", command=[PYTHON, str(APPS / "tcp_echo.py")])
    workload = running.wait_registered("redis", redis)
    assert workload["ports"] == {"tcp": 6379}
    client = (
        "import os, socket\n"
        "s = socket.create_connection((os.environ['MALLA_ADDRESS'], 6379), timeout=10)\n"
        "s.sendall(b'PING\\n')\n"
        "print(s.makefile().readline().strip())\n"
    )
    done = running.cli("run", "--name", "client", "--", PYTHON, "-c", client)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "redis: PING\n"
