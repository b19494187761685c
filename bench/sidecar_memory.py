"""Benchmark 4, sidecar memory under scoping: one Envoy's RSS in a 1,000-service mesh, scoped and not.

Three meshes, each its own ``malla up --config DIR``: 1,000 services; the
same plus a namespace-wide Sidecar whose egress lists the 3 services the
workload calls; and 10 services. One bare sidecar (the agent's bootstrap
and node metadata, ``--concurrency 1``) joins each; once it is ready (its
bootstrap makes "ready" mean "configured") and its cluster count is
steady, its RSS is read from /proc and its heap from admin ``/memory``.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench import meshgen
from bench.common import Result, rss_bytes, safe_div, wait_until
from bench.processes import ControlPlaneProcess, admin_json, bare_sidecar, wait_configured

CALLED = (1, 2, 3)


def _measure(workdir: Path, *, name: str, services: int, scoped: bool) -> dict[str, float | int]:
    """One mesh, one sidecar: unscoped first, then (``scoped``) again after adding the Sidecar resource."""
    config_dir = workdir / f"mesh-{name}"
    meshgen.write_services(config_dir, services)
    cp = ControlPlaneProcess(workdir / f"home-{name}", config_dirs=[config_dir])
    out: dict[str, float | int] = {}
    try:
        cp.start(timeout=600)
        out |= _sidecar(cp, workdir / f"envoy-{name}", prefix="")
        if scoped:
            meshgen.write_atomic(config_dir / "sidecar.yaml", meshgen.sidecar_egress([meshgen.host(i) for i in CALLED]))
            wait_until(lambda: cp.api("GET", "/api/v1/config", params={"kind": "Sidecar"}).json()["items"],
                       timeout=60, what="the control plane to read the Sidecar resource", interval=0.2)
            time.sleep(0.5)  # past the debounce: the new sidecar connects to the scoped snapshot
            out |= _sidecar(cp, workdir / f"envoy-{name}-scoped", prefix="scoped_")
    finally:
        cp.stop()
    return out


def _sidecar(cp: ControlPlaneProcess, workdir: Path, *, prefix: str) -> dict[str, float | int]:
    envoy = bare_sidecar(index=0, xds=cp.xds, workdir=workdir).start()
    try:
        wait_configured(cp, [envoy], timeout=300)

        def steady() -> int | None:
            first = envoy.stat("cluster_manager.active_clusters")
            time.sleep(1.0)
            second = envoy.stat("cluster_manager.active_clusters")
            return int(second) if first == second and second else None

        clusters = wait_until(steady, timeout=120, what="a steady cluster count", interval=0)
        memory = admin_json(envoy.admin_address(), "/memory")
        assert envoy.pid is not None
        return {f"{prefix}clusters": clusters, f"{prefix}rss_mib": rss_bytes(envoy.pid) / 2**20,
                f"{prefix}allocated_mib": int(memory.get("allocated", 0)) / 2**20,
                f"{prefix}heap_mib": int(memory.get("heap_size", 0)) / 2**20}
    finally:
        envoy.stop()


def run(*, quick: bool, workdir: Path) -> Result:
    result = Result("sidecar_memory", "Sidecar memory: 1,000-service mesh, scoped by a Sidecar resource or not", quick)
    both = _measure(workdir, name="1000", services=1000, scoped=True)
    big = {k: v for k, v in both.items() if not k.startswith("scoped_")}
    scoped = {k.removeprefix("scoped_"): v for k, v in both.items() if k.startswith("scoped_")}
    small = _measure(workdir, name="10", services=10, scoped=False)
    rows = []
    for label, m in (("1,000 services, no scoping", big), ("1,000 services, Sidecar egress: 3 hosts", scoped),
                     ("10 services", small)):
        rows.append([label, m["clusters"], m["rss_mib"], m["allocated_mib"], m["heap_mib"]])
        result.figure(f"Envoy RSS, {label}", m["rss_mib"], "MiB")
    result.table("One sidecar Envoy", ["mesh", "clusters", "RSS MiB", "allocated MiB", "heap MiB"], rows)
    result.ratio("RSS scoped (1,000 services) / 10-service mesh", safe_div(scoped["rss_mib"], small["rss_mib"]),
                 baseline="10-service mesh, same run", goal=1.2)
    result.ratio("RSS unscoped (1,000 services) / 10-service mesh", safe_div(big["rss_mib"], small["rss_mib"]),
                 baseline="10-service mesh, same run")
    result.ratio("allocated heap scoped / 10-service mesh", safe_div(scoped["allocated_mib"], small["allocated_mib"]),
                 baseline="10-service mesh, same run")
    result.notes.append("RSS includes the Envoy binary's pages (about 60 MiB, shared between Envoys); "
                        "'allocated' is what Envoy's allocator holds (admin /memory).")
    return result
