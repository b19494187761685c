"""The processes a benchmark starts: ``malla up``, ``malla run`` workloads and bare Envoys.

Each is a real process started the way a user would start it (``python -m
malla up --config DIR``, ``python -m malla run ...``) or, for bare Envoys,
from ``malla.envoy.bootstrap`` and ``malla.discovery.proxies.node_metadata``
as the agent renders them. Every wait is bounded; every process is stopped
by its own pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, wait_until
from malla.controlplane.home import ControlPlaneState
from malla.discovery.proxies import node_metadata
from malla.envoy.bootstrap import TcpAddress, build_bootstrap
from malla.envoy.process import EnvoyProcess
from malla.pilot.snapshot import Proxy, XdsMode

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "NO_PROXY": "*", "no_proxy": "*"}


def affinity(cpu: int | None) -> Any:
    if cpu is None or cpu >= (os.cpu_count() or 1):
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


class ControlPlaneProcess:
    """``malla up --config DIR`` in a process of its own, on free ports."""

    def __init__(self, home: Path, *, config_dirs: Sequence[Path] = (), cpu: int | None = None,
                 debounce_ms: int | None = None) -> None:
        self.home = home
        self.config_dirs = tuple(config_dirs)
        self.cpu = cpu
        self.debounce_ms = debounce_ms
        self.proc: subprocess.Popen[bytes] | None = None
        self.state: ControlPlaneState | None = None

    def start(self, *, timeout: float = 120.0) -> ControlPlaneState:
        self.home.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "malla", "up", "--home", str(self.home),
                "--xds-port", "0", "--api-port", "0", "--monitoring-port", "0", *_ca_ports()]
        for d in self.config_dirs:
            args += ["--config", str(d)]
        if self.debounce_ms is not None:
            args += ["--debounce-ms", str(self.debounce_ms)]
        log = (self.home / "bench-controlplane.log").open("wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     env={**ENV, "MALLA_LOG_LEVEL": "WARNING"}, cwd=self.home,
                                     preexec_fn=affinity(self.cpu))
        log.close()

        def ready() -> ControlPlaneState | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"malla up exited with {self.proc.returncode}: {self.log_tail()}")
            state = ControlPlaneState.read(self.home)
            if state is None or state.pid != self.proc.pid:  # type: ignore[union-attr]
                return None
            try:
                return state if httpx.get(state.api_url + "/healthz", timeout=2, trust_env=False).status_code == 200 else None
            except httpx.HTTPError:
                return None

        self.state = wait_until(ready, timeout=timeout, what="malla up to answer /healthz", interval=0.1)
        return self.state

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def xds(self) -> TcpAddress:
        assert self.state is not None
        host, _, port = self.state.xds_address.rpartition(":")
        return TcpAddress(host, int(port))

    def api(self, method: str, path: str, *, timeout: float = 30.0, **kwargs: Any) -> httpx.Response:
        assert self.state is not None
        return httpx.request(method, self.state.api_url + path, timeout=timeout, trust_env=False, **kwargs)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.home / "bench-controlplane.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        stop_process(self.proc, timeout=15)
        self.proc = None


def _ca_ports() -> list[str]:
    """Free ports for the CA too, when this version of ``malla up`` serves one."""
    from malla.cli import controlplane_cmds

    params = controlplane_cmds.up.__code__.co_varnames
    return ["--ca-port", "0", "--ca-join-port", "0"] if "ca_port" in params else []


def stop_process(proc: subprocess.Popen[Any] | None, *, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def start_workload(home: Path, *, name: str, command: Sequence[str], ports: Sequence[str] = (),
                   log: Path, namespace: str = "default") -> subprocess.Popen[bytes]:
    """``malla run --name NAME -n NAMESPACE [-p PORT] -- COMMAND`` against the control plane of ``home``."""
    args = [sys.executable, "-m", "malla", "run", "--home", str(home), "--name", name, "-n", namespace, "--quiet"]
    for p in ports:
        args += ["-p", p]
    args += ["--", *command]
    with log.open("wb") as out:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=ENV, cwd=home, start_new_session=True)


def bare_sidecar(*, index: int, xds: TcpAddress, workdir: Path, namespace: str = "default",
                 labels: dict[str, str] | None = None, outbound_port: int | None = None,
                 mode: XdsMode = XdsMode.SOTW) -> EnvoyProcess:
    """A sidecar Envoy with no app: the agent's bootstrap and node metadata, started directly.

    It is configured exactly as a ``malla run`` sidecar with no ports (no
    inbound listeners); it skips the agent's address lease and
    registration, which cost nothing once the workload runs.
    """
    name = f"bench{index:03d}"
    node_id = f"sidecar~127.0.0.1~{name}.{namespace}~{namespace}.svc.cluster.local"
    proxy = Proxy(id=node_id, namespace=namespace, labels=labels or {"app": name}, ip="127.0.0.1",
                  service_account=name, outbound_port=outbound_port, xds_mode=mode)
    bootstrap = build_bootstrap(node_id=node_id, node_cluster=f"{name}.{namespace}", xds_address=xds,
                                mode=mode.value, node_metadata=node_metadata(proxy, workload_name=name))
    return EnvoyProcess(bootstrap, workdir=workdir / name, die_with_parent=True)


def admin_json(admin: str, path: str, *, timeout: float = 10.0) -> Any:
    return httpx.get(f"http://{admin}{path}", timeout=timeout, trust_env=False).json()


def wait_configured(cp: ControlPlaneProcess, envoys: Sequence[EnvoyProcess], *, timeout: float) -> None:
    """Until every Envoy is LIVE (configured); fails at once when the control plane reports it cannot configure one."""
    deadline = time.monotonic() + timeout
    pending = list(envoys)
    while pending:
        pending = [e for e in pending if not _live(e)]
        if not pending:
            return
        problems = [p["problem"] for p in cp.api("GET", "/api/v1/proxies").json()["items"] if p.get("problem")]
        if problems:
            raise RuntimeError(f"the control plane could not configure {len(problems)} proxy(ies): {problems[0]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} of {len(envoys)} Envoys not configured after {timeout:.0f} s")
        time.sleep(0.1)


def _live(envoy: EnvoyProcess) -> bool:
    if not envoy.running():
        raise RuntimeError(f"an Envoy exited: {envoy.log_tail()}")
    try:
        status, text = envoy.admin_get("/ready", timeout=5)
    except (OSError, RuntimeError):
        return False
    return status == 200 and text.strip() == "LIVE"
