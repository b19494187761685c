"""Drive malla as a user does: ``python -m malla ...`` in subprocesses, one home per test.

``Mesh`` is one control plane home: ``cli()`` runs a command against it,
``up()``/``down()`` start and stop it (ports 0, so tests run in parallel),
``run()`` starts ``malla run`` in the background. Everything it started is
stopped at teardown, whatever the test did. Waits poll with a deadline and
fail with what they waited for; nothing asserts how long something took.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

APPS = Path(__file__).resolve().parent.parent / "agent" / "apps"
PYTHON = sys.executable
T = TypeVar("T")


def wait_until(predicate: Callable[[], T], *, timeout: float = 20.0, what: str) -> T:
    """Poll until ``predicate()`` is truthy; return its value or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def pid_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def processes_mentioning(text: str) -> dict[int, str]:
    """Live processes whose command line contains ``text`` (pid -> command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and pid_running(int(entry.name)):
            found[int(entry.name)] = cmdline
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without proxy or malla settings that would leak into the commands."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and not k.startswith("MALLA_")}
    env.update(extra)
    return env


class Agent:
    """A background ``malla run``."""

    def __init__(self, proc: subprocess.Popen[str], *, name: str, log: Path, mesh_version: str) -> None:
        self.proc, self.name, self.log = proc, name, log
        self.mesh_version = mesh_version  # the control plane's snapshot version when it was started
        self._terminated = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"malla run --name {self.name} did not exit within {timeout:.0f} s:\n{self.output()}") from None

    def terminate(self) -> None:
        """SIGTERM, once."""
        if self.proc.poll() is None and not self._terminated:
            self._terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Mesh:
    """One control plane home and everything started against it."""

    def __init__(self, home: Path, workdir: Path) -> None:
        self.home = home
        self.workdir = workdir
        self.agents: list[Agent] = []
        self._pids: set[int] = set()

    # -- the CLI ----------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(MALLA_HOME=str(self.home), **extra)

    def cli(self, *args: str, timeout: float = 60.0, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "malla", *args], cwd=cwd or self.workdir, env=env or self.env(),
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )

    def cli_json(self, *args: str) -> Any:
        done = self.cli(*args, "-o", "json")
        assert done.returncode == 0, f"malla {' '.join(args)} -o json failed:\n{done.stdout}{done.stderr}"
        return json.loads(done.stdout)

    # -- the control plane --------------------------------------------------------

    def up(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.cli("up", "-d", "--xds-port", "0", "--api-port", "0", "--monitoring-port", "0",
                        "--ca-port", "0", "--ca-join-port", "0", *args)
        state = self.state()
        if state is not None:
            self._pids.add(int(state["pid"]))
        return done

    def start(self, *args: str) -> dict[str, Any]:
        done = self.up(*args)
        assert done.returncode == 0, f"malla up failed:\n{done.stdout}{done.stderr}"
        state = self.state()
        assert state is not None
        return state

    def adopt(self, pid: int) -> None:
        """Stop this control plane process at teardown too (one not started through ``up()``)."""
        self._pids.add(pid)

    def state(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads((self.home / "controlplane.json").read_text()))
        except (OSError, ValueError):
            return None

    def api(self, path: str) -> Any:
        state = self.state()
        assert state is not None, "no control plane is running"
        return httpx.get(state["api_url"] + path, timeout=5, trust_env=False).json()

    def workloads(self) -> list[dict[str, Any]]:
        return list(self.api("/api/v1/workloads")["items"])

    def workload(self, name: str) -> dict[str, Any] | None:
        return next((w for w in self.workloads() if w["name"] == name), None)

    # -- workloads -------------------------------------------------------------

    def run(self, name: str, *args: str, command: list[str], env: dict[str, str] | None = None) -> Agent:
        """Start ``malla run --name NAME ARGS -- COMMAND`` in the background."""
        log = self.workdir / f"agent-{name}-{len(self.agents)}.log"
        version = self.api("/api/v1/status")["meshVersion"]
        with log.open("w") as out:
            proc = subprocess.Popen(
                [PYTHON, "-m", "malla", "run", "--name", name, *args, "--", *command],
                cwd=self.workdir, env=self.env(**(env or {})), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, text=True,
            )
        agent = Agent(proc, name=name, log=log, mesh_version=version)
        self.agents.append(agent)
        return agent

    def run_app(self, name: str, *args: str, state: Path, **app_env: str) -> Agent:
        """A workload running ``apps/http_app.py`` that keeps its files in ``state``."""
        state.mkdir(parents=True, exist_ok=True)
        return self.run(name, *args, command=[PYTHON, str(APPS / "http_app.py")], env={"APP_STATE": str(state), **app_env})

    def wait_registered(self, name: str, agent: Agent, timeout: float = 30.0) -> dict[str, Any]:
        """The workload, once it is registered and pushed (the mesh snapshot changed since it started)."""

        def registered() -> dict[str, Any] | None:
            if agent.proc.poll() is not None:
                raise AssertionError(f"malla run --name {name} exited with {agent.proc.returncode}:\n{agent.output()}")
            workload = self.workload(name)
            pushed = workload is not None and self.api("/api/v1/status")["meshVersion"] != agent.mesh_version
            return workload if pushed else None

        return wait_until(registered, timeout=timeout, what=f"workload {name} to register")

    def envoys(self) -> dict[int, str]:
        """Envoy processes of this home's workloads (their command line names the home)."""
        return {pid: cmd for pid, cmd in processes_mentioning(str(self.home / "workloads")).items() if "envoy" in cmd}

    # -- teardown ----------------------------------------------------------------

    def close(self) -> None:
        for agent in self.agents:  # all at once: each drains for a second before its app stops
            agent.terminate()
        for agent in self.agents:
            agent.stop()
        state = self.state()
        if state is not None and pid_running(int(state["pid"])):
            self.cli("down", timeout=30)
        for pid in list(self._pids) + list(processes_mentioning(str(self.home))):
            if pid != os.getpid() and pid_running(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    """A home of its own in tmp_path; nothing is started yet."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    m = Mesh(tmp_path / "home", workdir)
    yield m
    m.close()


@pytest.fixture
def running(mesh: Mesh) -> Mesh:
    """A control plane started with ``malla up -d`` on ports 0."""
    mesh.start()
    return mesh
