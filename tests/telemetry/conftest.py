"""Fixtures of the telemetry suite: a real control plane tracing every request, and a real Prometheus.

The control plane is the e2e suite's (``tests.e2e``): the real
``ControlPlane`` in this process on ports the kernel picks, with workloads
run by the real agent; here it samples 100% of requests for tracing. The
Prometheus is Debian's ``prometheus`` binary, installed by
``.ci/install-test-deps``; a test that needs it fails, naming that script,
when it is missing.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from malla.controlplane.server import ControlPlane, ControlPlaneOptions
from malla.pilot.snapshot import XdsMode
from tests.e2e.mesh import Mesh, namespace_for

INSTALL_HINT = "run .ci/install-test-deps (as root) to install Debian's prometheus package"


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    home = tmp_path_factory.mktemp("malla-home")
    options = ControlPlaneOptions(home=home, xds_port=0, api_port=0, monitoring_port=0, ca_port=0, ca_join_port=0)
    options = dataclasses.replace(options, mesh=options.mesh.with_(trace_sampling=100.0))
    cp = ControlPlane(options)
    cp.start()
    yield cp
    cp.stop()


@pytest.fixture
def mesh(control_plane: ControlPlane, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mesh]:
    m = Mesh(control_plane, namespace=namespace_for(request.node.name), mode=XdsMode.SOTW, workdir=tmp_path)
    try:
        yield m
    finally:
        m.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    """A real Prometheus server on loopback, reading ``config_file``; ``query`` runs PromQL."""

    def __init__(self, config_file: Path, workdir: Path) -> None:
        binary = shutil.which("prometheus")
        assert binary is not None, f"the prometheus binary is not installed: {INSTALL_HINT}"
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = workdir / "prometheus.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={config_file}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                 f"--web.listen-address={self.url.removeprefix('http://')}"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"prometheus exited ({self.proc.returncode}):\n{self.log_tail()}"
            try:
                if httpx.get(self.url + "/-/ready", timeout=2, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus was not ready within {timeout} s:\n{self.log_tail()}")

    def query(self, promql: str) -> list[dict[str, Any]]:
        body = httpx.get(self.url + "/api/v1/query", params={"query": promql}, timeout=10, trust_env=False).json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def targets(self) -> list[dict[str, Any]]:
        body = httpx.get(self.url + "/api/v1/targets", timeout=10, trust_env=False).json()
        return list(body["data"]["activeTargets"])

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
