"""Benchmark 5, Delta vs SotW: bytes on the wire and control-plane CPU for one endpoint change at 1,000 clusters.

Ten simulated Envoys per mode (``bench.xds_load``) hold the 1,000-service
mesh; one endpoint of one service moves. Bytes are the gRPC messages each
client received because of the change (all types, counted for 1 s after
the last EDS answer); CPU is the control plane's over the same window
(snapshot rebuild, per-proxy translation and the xDS writes together).
A classic SotW server re-sends every assignment on any endpoint change;
that size (the EDS bytes of the initial sync) is shown as a reference.
"""

from __future__ import annotations

from pathlib import Path

from bench.common import Result, safe_div
from bench.xds_load import ScaleControlPlane

CLIENTS = 10


def run(*, quick: bool, workdir: Path) -> Result:
    result = Result("delta_sotw", "Delta vs SotW: one endpoint change at 1,000 clusters", quick)
    with ScaleControlPlane(workdir) as cp:
        runs = {mode: cp.load_run(mode=mode, n=CLIENTS, sync_deadline=120, push_deadline=60) for mode in ("sotw", "delta")}
    rows = []
    for mode, r in runs.items():
        cpu = safe_div(r.push_cpu_ms, r.push_reached)
        full_eds = safe_div(r.sync_bytes_by_type.get("ClusterLoadAssignment"), r.synced)
        rows.append([mode, f"{r.push_reached}/{r.n}", r.push_s, r.push_bytes_per_proxy,
                     ", ".join(f"{k}: {v // max(1, r.push_reached)}" for k, v in sorted(r.push_bytes_by_type.items())),
                     cpu, full_eds])
        result.figure(f"{mode}: bytes per proxy for one endpoint change", r.push_bytes_per_proxy, "B")
        result.figure(f"{mode}: control-plane CPU per proxy for the change", cpu, "ms")
        result.figure(f"{mode}: change reached all {CLIENTS} clients", r.push_s, "s")
    sotw, delta = runs["sotw"], runs["delta"]
    result.ratio("bytes Delta / SotW (malla's SotW)", safe_div(delta.push_bytes_per_proxy, sotw.push_bytes_per_proxy),
                 baseline="malla SotW, same run", goal=0.01,
                 note="malla's SotW already sends only the changed assignment (EDS may be partial in SotW)")
    full = safe_div(sotw.sync_bytes_by_type.get("ClusterLoadAssignment"), sotw.synced)
    result.ratio("bytes Delta / all 1,000 assignments (a full-state SotW EDS push)",
                 safe_div(delta.push_bytes_per_proxy, full), baseline="SotW EDS bytes of the initial sync, same run", goal=0.01)
    result.ratio("control-plane CPU Delta / SotW", safe_div(safe_div(delta.push_cpu_ms, delta.push_reached),
                                                          safe_div(sotw.push_cpu_ms, sotw.push_reached)),
                 baseline="malla SotW, same run")
    result.table("One endpoint change, per proxy", ["mode", "reached", "seconds", "bytes", "bytes by type", "CP CPU ms",
                                                    "full EDS bytes (sync)"], rows)
    result.notes.append(f"{CLIENTS} simulated Envoys per mode; control plane on core 0, clients on core 1.")
    return result
