"""A real mesh for the gateway tests: the control plane in-process, workloads and gateways as processes.

Each mesh leases loopback addresses from a /24 of its own (127.A.B.0), so
test modules running in parallel never share an address or a port.
"""

from __future__ import annotations

import ipaddress
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from malla.controlplane.addresses import AddressPool
from malla.controlplane.server import ControlPlane, ControlPlaneOptions

APPS = Path(__file__).parent / "apps.py"
T = TypeVar("T")


def eventually(probe: Callable[[], T], *, timeout: float = 30.0, what: str = "the condition") -> T:
    """``probe()``'s first result that is truthy and raises nothing, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
            last = result
        except Exception as exc:  # the mesh is still converging: try again
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout} s; last: {last!r}")


class Process:
    """A ``malla`` subprocess whose output lines are collected as they come."""

    def __init__(self, args: list[str]) -> None:
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "no_proxy")}
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "malla", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, text=True, env=env,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=_collect, args=(stream, sink), daemon=True).start()

    def wait_line(self, text: str, *, timeout: float = 30.0) -> str:
        def found() -> str | None:
            if self.proc.poll() is not None and not any(text in line for line in self.stdout):
                raise AssertionError(f"malla {' '.join(self.args)} exited {self.proc.returncode}: {self.output()}")
            return next((line for line in self.stdout if text in line), None)

        return eventually(found, timeout=timeout, what=f"a line with {text!r} from malla {self.args[0]}")

    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    def stop(self, *, timeout: float = 15.0) -> int:
        """Ctrl-C, as a person would; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
            raise AssertionError(f"malla {' '.join(self.args)} ignored Ctrl-C for {timeout} s") from None


def _collect(stream: Any, sink: list[str]) -> None:
    for line in stream:
        sink.append(line)


class Mesh:
    def __init__(self, home: Path) -> None:
        self.home = home
        prefix = f"127.{random.randrange(100, 250)}.{random.randrange(0, 256)}"
        self.cp = ControlPlane(ControlPlaneOptions(
            home=home, xds_port=0, api_port=0, monitoring_port=0, ca_port=0, ca_join_port=0))
        # A range of its own (see the module docstring); the pool hands out .1 upwards.
        self.cp.addresses = AddressPool(
            first=ipaddress.IPv4Address(f"{prefix}.1"), last=ipaddress.IPv4Address(f"{prefix}.199")
        )
        self.cp.discovery.orphan_listeners[:] = [self.cp.addresses.release_owner]
        self.spare = [f"{prefix}.{n}" for n in range(200, 255)]  # never leased: for tests that pick one
        self.processes: list[Process] = []
        self.state = self.cp.start()

    def apply(self, text: str, *, namespace: str = "default") -> None:
        r = httpx.post(
            self.state.api_url + "/api/v1/config", content=text, params={"namespace": namespace}, trust_env=False
        )
        assert r.status_code == 200, r.text

    def malla(self, *args: str) -> Process:
        process = Process([*args[:1], "--home", str(self.home), *args[1:]])
        self.processes.append(process)
        return process

    def workload(self, name: str, port: str, *app: str) -> Process:
        return self.malla("run", "--name", name, "--port", port, "--", sys.executable, str(APPS), *app)

    def close(self) -> None:
        running = [p for p in self.processes if p.proc.poll() is None]
        for process in running:  # all at once: each workload drains for a second
            process.proc.send_signal(signal.SIGINT)
        for process in running:
            try:
                process.stop()
            except AssertionError:
                pass
        self.cp.stop()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = Mesh(tmp_path_factory.mktemp("home"))
    try:
        yield m
    finally:
        m.close()
