"""Benchmark 2, convergence: a VirtualService weight flip, from the file change until every Envoy serves it.

``malla up --config DIR`` watches a directory holding one service (a
ServiceEntry, four endpoints in subsets v1/v2) and a VirtualService
splitting it 100/0. Each change rewrites that file to 0/100 (or back) with
an atomic rename; the clock starts just before the rename and stops, per
Envoy, when its admin ``/stats`` shows a new version of its outbound route
configuration (the ``http.*.rds.*.version`` gauge, a hash of the applied
config). The figure per change is when the LAST Envoy got there.

The Envoys are bare sidecars (``bench.processes.bare_sidecar``: the agent's
bootstrap and node metadata, no app, no ``malla run``), all
``--concurrency 1``: 50 full workloads would be 50 more Python agents on
two cores.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import meshgen
from bench.common import Result, cpu_seconds, free_port, percentile
from bench.processes import ControlPlaneProcess, bare_sidecar, wait_configured
from malla.envoy.process import EnvoyProcess

_ROUTE_VERSION = "filter=%5Ehttp%5C.outbound_.*%5C.rds%5C..*%5C.version%24&format=json"


class AdminConnection:
    """Keep-alive HTTP/1.1 to one Envoy's admin, reading the outbound route version gauge."""

    def __init__(self, address: str, client: httpx.AsyncClient) -> None:
        self.url = f"http://{address}/stats?{_ROUTE_VERSION}"
        self.client = client

    async def route_version(self) -> tuple[int, ...]:
        body = (await self.client.get(self.url)).json()
        return tuple(sorted(int(s.get("value", 0)) for s in body.get("stats", []) if "value" in s))


async def _wait_all_changed(conns: list[AdminConnection], before: list[tuple[int, ...]], *, started: float,
                            interval: float, timeout: float) -> list[float | None]:
    async def one(conn: AdminConnection, old: tuple[int, ...]) -> float | None:
        while time.time() - started < timeout:
            if await conn.route_version() != old:
                return time.time() - started
            await asyncio.sleep(interval)
        return None

    return list(await asyncio.gather(*(one(c, b) for c, b in zip(conns, before))))


@dataclass
class Changes:
    """Per change: seconds until each Envoy served it, the control plane's own push time and its CPU."""

    seen: list[list[float | None]] = field(default_factory=list)
    push_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)


async def _changes(config_dir: Path, admins: list[str], cp: ControlPlaneProcess, *, changes: int,
                   interval: float) -> Changes:
    out = Changes()
    limits = httpx.Limits(max_connections=len(admins) * 2, max_keepalive_connections=len(admins) * 2)
    async with httpx.AsyncClient(timeout=30, trust_env=False, limits=limits) as client:
        conns = [AdminConnection(a, client) for a in admins]
        for k in range(changes):
            before = list(await asyncio.gather(*(c.route_version() for c in conns)))
            text = meshgen.weighted_route(0, v1=0 if k % 2 == 0 else 100)
            cpu0, started = cpu_seconds(cp.pid), time.time()
            meshgen.write_atomic(config_dir / "split.yaml", text)
            out.seen.append(await _wait_all_changed(conns, before, started=started, interval=interval, timeout=30))
            out.cpu_ms.append((cpu_seconds(cp.pid) - cpu0) * 1e3)
            assert cp.state is not None
            last = (await client.get(cp.state.api_url + "/api/v1/status")).json().get("lastPush") or {}
            out.push_ms.append(float(last.get("ms") or 0))
            await asyncio.sleep(0.3)  # longer than the debounce: each change is pushed on its own
    return out


def _measure(workdir: Path, *, proxies: int, changes: int) -> dict[str, float | int | None]:
    config_dir = workdir / f"config-{proxies}"
    meshgen.write_services(config_dir, 1)
    meshgen.write_atomic(config_dir / "split.yaml", meshgen.weighted_route(0, v1=100))
    cp = ControlPlaneProcess(workdir / f"home-{proxies}", config_dirs=[config_dir])
    envoys: list[EnvoyProcess] = []
    try:
        cp.start()
        for i in range(proxies):
            envoys.append(bare_sidecar(index=i, xds=cp.xds, workdir=workdir / f"envoys-{proxies}",
                                       outbound_port=free_port()).start())
        wait_configured(cp, envoys, timeout=180)
        interval = 0.01 if proxies <= 10 else 0.025
        admins = [e.admin_address() for e in envoys]
        found = asyncio.run(_changes(config_dir, admins, cp, changes=changes, interval=interval))
    finally:
        with ThreadPoolExecutor(max_workers=16) as pool:  # 50 sequential SIGTERM-and-wait take long
            list(pool.map(lambda e: e.stop(), envoys))
        cp.stop()
    last = [max(t for t in ch if t is not None) if all(t is not None for t in ch) else None for ch in found.seen]
    done = [t for t in last if t is not None]
    every = [t for ch in found.seen for t in ch if t is not None]
    return {"proxies": proxies, "changes": changes, "converged": len(done),
            "median_s": percentile(done, 50), "p99_s": percentile(done, 99), "max_s": max(done) if done else None,
            "per_proxy_median_s": percentile(every, 50), "poll_s": interval,
            "push_ms": percentile(found.push_ms, 50), "cpu_ms": percentile(found.cpu_ms, 50)}


def run(*, quick: bool, workdir: Path) -> Result:
    result = Result("convergence", "Convergence: VirtualService weight flip until every Envoy serves it", quick)
    changes = 20 if quick else 30
    rows = []
    for n in (1, 10, 50):
        m = _measure(workdir, proxies=n, changes=changes)
        rows.append([n, m["changes"], m["converged"], m["median_s"], m["p99_s"], m["max_s"], m["per_proxy_median_s"],
                     m["push_ms"], m["cpu_ms"], m["poll_s"]])
        result.figure(f"{n} Envoy(s): median until all converged", m["median_s"], "s")
        result.figure(f"{n} Envoy(s): p99 until all converged", m["p99_s"], "s")
        if n == 50:
            result.ratio("p99 at 50 Envoys / 0.5 s goal", None if m["p99_s"] is None else m["p99_s"] / 0.5,
                         baseline="goal 0.5 s", goal=1.0)
        if n == 1:
            one = m
        elif one["median_s"]:
            result.ratio(f"median at {n} Envoys / median at 1", (m["median_s"] or 0) / one["median_s"],
                         baseline="1 Envoy, same run")
    result.table("Seconds from the file rename until the last Envoy shows the new route",
                 ["Envoys", "changes", "converged", "median", "p99", "max", "per-Envoy median",
                  "CP push ms (median)", "CP CPU ms per change (median)", "poll interval"], rows)
    result.notes += [
        "Default debounce (100 ms quiet, 10 s cap) and the directory watch's own 50 ms batching are inside every figure.",
        "Envoys are bare sidecars from malla.envoy.bootstrap + malla.discovery.proxies.node_metadata (no malla run agents).",
        "CP push ms: the control plane's own figure for the push (snapshot, translation, publish for all proxies; "
        "from /api/v1/status lastPush); CP CPU: its user+system time from the rename until the last Envoy converged.",
        "Detection polls each Envoy's admin /stats for its outbound RDS version gauge; the poll interval bounds the resolution.",
    ]
    return result
