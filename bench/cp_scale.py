"""Benchmark 3, control-plane scale: 1,000 services x 4 endpoints, N simulated Envoys, SotW and Delta.

For each mode and N (quick: 100, 500; full: 100, 500, 1000, 2000) a fresh
``malla up`` pinned to core 0 meets a storm of N clients from core 1 (see
``bench.xds_load``): time until all ACKed their full config, control-plane
CPU per proxy, RSS per connected proxy, ``GET /api/v1/status`` latency
during the storm, streams dropped, then one endpoint change and the time
until it reached every client. Every step has a deadline; once an N misses
it, larger N of that mode are skipped (they cannot do better on one core),
and when none of the asked sizes holds, smaller ones (quick: 10; full: 50,
20, 10) are tried until one does.

"One core holds N" here means: all N synced within the deadline, no stream
dropped, and the endpoint change reached all N within 10 s.
"""

from __future__ import annotations

from pathlib import Path

from bench.common import Result
from bench.xds_load import LoadRun, ScaleControlPlane

HOLD_PUSH_S = 10.0


def holds(r: LoadRun) -> bool:
    return r.sync_s is not None and r.dropped == 0 and r.push_s is not None and r.push_s <= HOLD_PUSH_S


def run(*, quick: bool, workdir: Path) -> Result:
    result = Result("cp_scale", "Control-plane scale: 1,000 services x 4 endpoints, N simulated Envoys", quick)
    sizes = (100, 500) if quick else (100, 500, 1000, 2000)
    sync_deadline, push_deadline = (40.0, 20.0) if quick else (300.0, 120.0)
    rows: list[list[object]] = []
    largest: dict[str, int] = {}
    with ScaleControlPlane(workdir) as cp:
        result.figure("control plane start-up with 1,000 services (malla up until /healthz)", cp.startup_s, "s")
        for mode in ("sotw", "delta"):
            largest[mode] = 0
            for n in sizes:
                if rows and rows[-1][0] == mode and rows[-1][-1] != "yes":
                    rows.append([mode, n, "skipped: a smaller N already missed"] + [None] * 10 + ["no"])
                    continue
                r = cp.load_run(mode=mode, n=n, sync_deadline=sync_deadline, push_deadline=push_deadline)
                _row(result, rows, largest, r)
            # None of the asked sizes held: find a smaller N that does, so "largest N" says something.
            for n in (10,) if quick else (50, 20, 10):
                if largest[mode]:
                    break
                _row(result, rows, largest, cp.load_run(mode=mode, n=n, sync_deadline=sync_deadline,
                                                        push_deadline=push_deadline))
    _summary(result, rows, largest, sizes=sizes, deadlines=(sync_deadline, push_deadline))
    return result


def _row(result: Result, rows: list[list[object]], largest: dict[str, int], r: LoadRun) -> None:
    ok = holds(r)
    if ok:
        largest[r.mode] = r.n
    rows.append([r.mode, r.n, f"{r.synced}/{r.n}", r.sync_s, r.sync_cpu_ms_per_proxy, r.rss_per_proxy_kib,
                 r.api_p50_ms, r.api_max_ms, r.dropped, f"{r.push_reached}/{r.synced}", r.push_s,
                 None if not r.push_reached else (r.push_cpu_ms or 0) / r.push_reached,
                 r.push_bytes_per_proxy, "yes" if ok else "no"])
    _figures(result, r)


def _summary(result: Result, rows: list[list[object]], largest: dict[str, int], *, sizes: tuple[int, ...],
             deadlines: tuple[float, float]) -> None:
    result.table(
        "Per mode and N (deadlines: sync %.0f s, push %.0f s)" % deadlines,
        ["mode", "N", "synced", "sync s", "CPU ms/proxy (sync)", "RSS KiB/proxy", "API p50 ms", "API max ms",
         "dropped", "push reached", "push s", "CPU ms/proxy (push)", "push bytes/proxy", "holds"], rows)
    for mode, n in largest.items():
        result.figure(f"largest N one core holds ({mode})", n or "none of those tried")
    first = {row[0]: row for row in rows if row[1] == sizes[0] and isinstance(row[3], float)}
    if "sotw" in first and "delta" in first:
        result.ratio(f"sync time Delta / SotW at N={sizes[0]}", first["delta"][3] / first["sotw"][3],  # type: ignore[operator]
                     baseline="SotW, same run")
    result.notes += [
        "Control plane: malla up --config DIR (one ServiceEntry file per service), pinned with sched_setaffinity to core 0, "
        "one instance for every run; clients: bench.xds_clients (grpc.aio, one TCP connection each) pinned to core 1.",
        "One core 'holds' N when all N synced within the deadline, none dropped, and one endpoint change reached all within 10 s.",
        "Push: one endpoint of one service moved by rewriting its file; timed from the rename to the last client's EDS response.",
        "CPU and RSS per proxy are the control plane's growth over the run divided by the proxies synced.",
    ]


def _figures(result: Result, r: LoadRun) -> None:
    tag = f"{r.mode} N={r.n}"
    result.figure(f"{tag}: time until all ACKed full config", r.sync_s if r.sync_s is not None else f"not all: {r.synced}/{r.n}", "s")
    result.figure(f"{tag}: one endpoint change reached all", r.push_s if r.push_s is not None else f"{r.push_reached} reached", "s")
    result.figure(f"{tag}: control-plane CPU per proxy (sync)", r.sync_cpu_ms_per_proxy, "ms")
    result.figure(f"{tag}: RSS per connected proxy", r.rss_per_proxy_kib, "KiB")
    result.figure(f"{tag}: GET /api/v1/status during the storm, max", r.api_max_ms, "ms")
    result.figure(f"{tag}: streams dropped", r.dropped)
    if r.drop_reasons:
        result.figure(f"{tag}: why streams dropped", "; ".join(r.drop_reasons))
