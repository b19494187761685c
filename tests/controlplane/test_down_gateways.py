"""``malla down`` stops the gateways of its mesh too, not only the workloads that registered."""

from __future__ import annotations

import subprocess
import sys

import pytest

from malla.agent.pidfile import PID_FILE, agents_in
from malla.agent.ports import free_port
from tests.controlplane.harness import Mesh, processes_mentioning, wait_until

pytestmark = [pytest.mark.envoy]


def gateway_yaml(port: int) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: down, namespace: istio-system}}
spec:
  selector: {{istio: down-gw}}
  servers: [{{port: {{number: {port}, name: http, protocol: HTTP}}, hosts: ["*"]}}]
"""


def test_malla_down_stops_a_running_gateway_and_its_envoy(running: Mesh) -> None:
    port = free_port()
    config = running.workdir / "gateway.yaml"
    config.write_text(gateway_yaml(port))
    assert running.cli("apply", "-f", str(config)).returncode == 0
    gateway = subprocess.Popen(
        [sys.executable, "-m", "malla", "gateway", "--name", "down-gw", "--port", str(port)],
        env=running.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
    )
    try:
        assert gateway.stdout is not None
        seen = []
        for line in gateway.stdout:  # progress lines, then the URL it serves
            seen.append(line)
            if f":{port}/" in line:
                break
        assert any(f":{port}/" in line for line in seen), seen
        assert [pid for pid, _ in agents_in(running.home / "gateways")] == [gateway.pid]

        done = running.cli("down")

        assert done.returncode == 0, done.stderr
        assert "gateway down-gw" in done.stdout, done.stdout
        assert gateway.wait(timeout=30) == 0
        assert not list((running.home / "gateways").glob(f"*/{PID_FILE}"))  # it cleaned up after itself
        wait_until(lambda: not processes_mentioning(str(running.home)), timeout=20,
                   what="no process of this mesh (the gateway's Envoy included) left")
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait()


def test_a_stale_pid_file_of_another_program_is_ignored(tmp_path) -> None:
    workdir = tmp_path / "gateways" / "old-gw.istio-system"
    workdir.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (workdir / PID_FILE).write_text(f"{sleeper.pid}\n")  # a reused pid: not a malla process
        assert list(agents_in(tmp_path / "gateways")) == []
    finally:
        sleeper.kill()
        sleeper.wait()
