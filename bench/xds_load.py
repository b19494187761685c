"""One control-plane load run: ``malla up`` on 1,000 services, N simulated Envoys, one endpoint change.

Shared by the scale benchmark (``bench.cp_scale``) and the Delta/SotW
comparison (``bench.delta_sotw``). The control plane runs in its own
process pinned to core 0, the simulated clients (``bench.xds_clients``) in
another pinned to core 1; this process reads /proc and calls the control
API (``GET /api/v1/status``) every 0.5 s while the clients connect.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import meshgen
from bench.common import cpu_seconds, percentile, rss_bytes
from bench.processes import ENV, ControlPlaneProcess, affinity, stop_process

SERVICES = 1000
IDLE_CPU_S = 0.05  # a control plane using less than 5% of a core is idle


@dataclass
class LoadRun:
    mode: str
    n: int
    synced: int = 0
    sync_s: float | None = None
    sync_cpu_ms_per_proxy: float | None = None
    rss_per_proxy_kib: float | None = None
    rss_idle_mib: float | None = None
    rss_after_mib: float | None = None
    api_p50_ms: float | None = None
    api_max_ms: float | None = None
    api_calls: int = 0
    dropped: int = 0
    drop_reasons: list[str] = field(default_factory=list)
    sync_bytes_per_proxy: float | None = None
    sync_bytes_by_type: dict[str, int] = field(default_factory=dict)
    push_reached: int = 0
    push_s: float | None = None
    push_cpu_ms: float | None = None
    push_bytes_per_proxy: float | None = None
    push_bytes_by_type: dict[str, int] = field(default_factory=dict)


class ClientsProcess:
    """``python -m bench.xds_clients`` with its events read on a thread."""

    def __init__(self, xds: str, *, n: int, mode: str, deadline: float, cpu: int | None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.xds_clients", "--xds", xds, "--n", str(n), "--mode", mode, "--deadline", str(deadline)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ENV, text=True, preexec_fn=affinity(cpu))
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.events.put(json.loads(line))
        self.events.put({"event": "exit"})

    def expect(self, name: str, *, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            if event["event"] == name:
                return event
            if event["event"] == "exit":
                raise RuntimeError(f"the simulated clients exited ({self.proc.poll()}) before {name!r}")

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        try:
            self.send("quit")
            self.expect("closed", timeout=30)
        except (OSError, queue.Empty, RuntimeError):
            pass
        stop_process(self.proc, timeout=10)


class ApiProbe:
    """Calls ``GET /api/v1/status`` back to back (0.5 s apart) and keeps the latencies."""

    def __init__(self, url: str) -> None:
        self.url = url + "/api/v1/status"
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        with httpx.Client(timeout=60, trust_env=False) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    client.get(self.url)
                except httpx.HTTPError:
                    pass
                self.latencies.append((time.perf_counter() - started) * 1e3)
                self._stop.wait(0.5)

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join(70)
        return self.latencies


def prepare_services(workdir: Path, services: int) -> Path:
    config_dir = workdir / f"services-{services}"
    if not config_dir.exists():
        meshgen.write_services(config_dir, services)
    return config_dir


class ScaleControlPlane:
    """One ``malla up`` on core 0 over S services, reused by successive load runs.

    Starting it is the slow part (1,000 ServiceEntry files take tens of
    seconds to parse), so each run's figures are deltas against readings
    taken just before its clients connect.
    """

    def __init__(self, workdir: Path, *, services: int = SERVICES) -> None:
        self.workdir = workdir
        self.config_dir = prepare_services(workdir, services)
        self.cp = ControlPlaneProcess(workdir / "home", config_dirs=[self.config_dir], cpu=0)
        self.epoch = 0
        self.startup_s: float | None = None

    def __enter__(self) -> ScaleControlPlane:
        started = time.monotonic()
        self.cp.start(timeout=600)
        self.startup_s = time.monotonic() - started
        return self

    def __exit__(self, *exc: object) -> None:
        self.cp.stop()

    def _wait_quiet(self) -> None:
        """Until no proxy is connected and the control plane is idle.

        A push started for proxies that have since left still translates for
        each of them; its CPU and garbage must not count against the next run.
        """
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and self.cp.api("GET", "/api/v1/proxies", timeout=60).json()["items"]:
            time.sleep(0.5)
        while time.monotonic() < deadline:
            before = cpu_seconds(self.cp.pid)
            time.sleep(1.0)
            if cpu_seconds(self.cp.pid) - before < IDLE_CPU_S:
                return

    def load_run(self, *, mode: str, n: int, sync_deadline: float, push_deadline: float) -> LoadRun:
        """Connect N clients from core 1, sync, then change one endpoint."""
        self._wait_quiet()
        cp, out = self.cp, LoadRun(mode=mode, n=n)
        rss0, cpu0 = rss_bytes(cp.pid), cpu_seconds(cp.pid)
        out.rss_idle_mib = rss0 / 2**20
        probe = ApiProbe(cp.state.api_url)  # type: ignore[union-attr]
        clients = ClientsProcess(cp.state.xds_address, n=n, mode=mode, deadline=sync_deadline, cpu=1)  # type: ignore[union-attr]
        try:
            synced = clients.expect("synced", timeout=sync_deadline + 120)
            api = probe.stop()
            _read_sync(out, synced, api, cpu_ms=(cpu_seconds(cp.pid) - cpu0) * 1e3, rss=(rss0, rss_bytes(cp.pid)))
            if out.synced:
                self.epoch += 1
                _push(out, cp, clients, self.config_dir, deadline=push_deadline, epoch=self.epoch)
        finally:
            probe.stop()
            clients.close()
        return out


def _read_sync(out: LoadRun, synced: dict[str, Any], api: list[float], *, cpu_ms: float, rss: tuple[int, int]) -> None:
    out.synced = int(synced["synced"])
    out.dropped = int(synced["dropped"])
    out.drop_reasons = list(synced["drop_reasons"])
    if synced["last"] is not None and out.synced == out.n:
        out.sync_s = synced["last"] - synced["started"]
    if out.synced:
        out.sync_cpu_ms_per_proxy = cpu_ms / out.synced
        out.rss_per_proxy_kib = (rss[1] - rss[0]) / 1024 / out.synced
        out.sync_bytes_per_proxy = synced["bytes"] / out.synced
        out.sync_bytes_by_type = dict(synced["bytes_by_type"])
    out.rss_after_mib = rss[1] / 2**20
    out.api_calls = len(api)
    out.api_p50_ms, out.api_max_ms = percentile(api, 50), max(api) if api else None


def _push(out: LoadRun, cp: ControlPlaneProcess, clients: ClientsProcess, config_dir: Path, *, deadline: float,
          epoch: int) -> None:
    time.sleep(1.0)  # quiet, so that nothing else is in flight
    clients.send(f"mark {deadline}")
    clients.expect("marked", timeout=30)
    cpu0 = cpu_seconds(cp.pid)
    started = time.time()
    meshgen.change_endpoint(config_dir, index=0, epoch=epoch)
    reached = clients.expect("reached", timeout=deadline + 60)
    out.push_cpu_ms = (cpu_seconds(cp.pid) - cpu0) * 1e3
    out.push_reached = int(reached["reached"])
    if reached["last"] is not None and out.push_reached == reached["n"]:
        out.push_s = reached["last"] - started
    if reached["n"]:
        out.push_bytes_per_proxy = reached["bytes"] / reached["n"]
    out.push_bytes_by_type = dict(reached["bytes_by_type"])
    out.dropped = max(out.dropped, int(reached["dropped"]))
