"""Each benchmark's smallest configuration runs and produces figures (never a check on time).

The benchmarks themselves are not tests (``make bench``); this proves their
machinery works: the load generator, the static Envoy pair, ``malla up`` and
``malla run``, bare sidecars, the simulated xDS clients and the CA service.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import ca_signing, convergence, dataplane, sidecar_memory
from bench.common import Result, write_result
from bench.report import render
from bench.xds_load import ScaleControlPlane

pytestmark = pytest.mark.envoy


def test_dataplane_setups_answer_under_load(tmp_path: Path):
    stack = dataplane.Stack(tmp_path)
    try:
        direct, port = stack.direct()
        for setup in (direct, stack.static_pair(port, tls=True), stack.malla()):
            m = dataplane._measure(setup, rate=40, seconds=1)
            assert m.load.ok > 0 and m.load.failed == 0, setup.name
            assert m.load.p90_ms is not None
            assert (m.proxy_cpu is None) == (setup is direct)
    finally:
        stack.stop()


def test_convergence_sees_every_change(tmp_path: Path):
    m = convergence._measure(tmp_path, proxies=2, changes=2)
    assert m["converged"] == 2
    assert m["median_s"] is not None


def test_simulated_envoys_sync_and_get_an_endpoint_change(tmp_path: Path):
    with ScaleControlPlane(tmp_path, services=5) as cp:
        for mode in ("sotw", "delta"):
            r = cp.load_run(mode=mode, n=2, sync_deadline=120, push_deadline=60)
            assert (r.synced, r.dropped) == (2, 0), mode
            assert r.sync_s is not None and r.sync_cpu_ms_per_proxy is not None
            assert r.push_reached == 2 and r.push_bytes_per_proxy, mode


def test_sidecar_memory_is_read_from_a_configured_envoy(tmp_path: Path):
    m = sidecar_memory._measure(tmp_path, name="smoke", services=6, scoped=True)
    assert m["rss_mib"] > 0 and m["scoped_rss_mib"] > 0
    # Scoping to 3 of the 6 services leaves 3 clusters out.
    assert m["clusters"] - m["scoped_clusters"] == 3


def test_ca_signs_in_process_and_over_grpc(tmp_path: Path):
    csrs = ca_signing.make_csrs(2)
    assert ca_signing.in_process(tmp_path / "ca", csrs, seconds=0.2) > 0
    result = ca_signing.run(quick=True, workdir=tmp_path, seconds=0.3)
    assert [f.value for f in result.figures if not f.value] == []


def test_report_shows_figures_and_judges_goals(tmp_path: Path):
    result = Result("dataplane", "Data-plane overhead", quick=True)
    result.figure("malla p90 at 500 req/s", 1.25, "ms")
    result.ratio("p90 malla / limit at 500 req/s", 1.3, baseline="limit", goal=1.10)
    result.ratio("proxy CPU malla / limit at 500 req/s", 1.05, baseline="limit", goal=1.10)
    write_result(result, results_dir=tmp_path)
    text = render(tmp_path)
    assert "| Data-plane overhead | p90 malla / limit at 500 req/s | 1.300 | <= 1.1 | MISSED |" in text
    assert "| Data-plane overhead | proxy CPU malla / limit at 500 req/s | 1.050 | <= 1.1 | met |" in text
    assert "| malla p90 at 500 req/s | 1.250 | ms |" in text
