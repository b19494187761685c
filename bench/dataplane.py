"""Benchmark 1, data-plane overhead: client -> sidecar -> (m)TLS -> sidecar -> echo, against direct and the limit.

The setups share one echo server program (1 KB answers) and one load
generator (h2load, open loop, 4 connections): direct (no proxy), the limit
(``bench.static_pair``: two static Envoys, mTLS and plaintext) and malla
(``malla up`` + ``malla run`` for the echo server and for an idle client
whose sidecar h2load dials, as an app would through ``HTTP_PROXY``), once
as installed and once in a namespace whose Telemetry resource turns Istio's
metrics off (what the per-request access log to the agent costs). Every
Envoy runs ``--concurrency 1``. Setups are interleaved within each rate so
that drift in the machine's load hits them alike. Proxy CPU is the two
Envoys' user+system time from /proc over the measured window.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import static_pair
from bench.common import BENCH_DIR, Result, cpu_seconds, children_named, free_port, safe_div, wait_until
from bench.loadgen import LoadResult, run_load
from bench.processes import ControlPlaneProcess, admin_json, start_workload, stop_process
from malla.envoy.process import EnvoyProcess

ECHO = [sys.executable, str(BENCH_DIR / "echo_server.py")]
IDLE = [sys.executable, str(BENCH_DIR / "idle_app.py")]


QUIET = "quiet"  # the namespace whose Telemetry turns metrics off
METRICS_OFF = """\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: no-metrics, namespace: {namespace}}}
spec:
  metrics:
  - providers: [{{name: prometheus}}]
    overrides:
    - disabled: true
"""


@dataclass
class Setup:
    name: str
    url: str
    authority: str | None = None
    proxy_pids: list[int] = field(default_factory=list)
    agent_pids: list[int] = field(default_factory=list)  # malla run processes: they take the access logs
    tls: bool = False


def _probe(setup: Setup) -> bool:
    headers = {"host": setup.authority} if setup.authority else {}
    try:
        r = httpx.get(setup.url, headers=headers, timeout=5, trust_env=False)
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and len(r.content) == 1024


class Stack:
    """Every process of every setup, started once and stopped together."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.envoys: list[EnvoyProcess] = []
        self.cp: ControlPlaneProcess | None = None
        self.mesh_tls = False
        self.mesh_filters = ""

    def direct(self) -> tuple[Setup, int]:
        port = free_port()
        self.procs.append(subprocess.Popen([*ECHO, "--port", str(port)], stdin=subprocess.DEVNULL))
        setup = Setup("direct", f"http://127.0.0.1:{port}/")
        wait_until(lambda: _probe(setup), timeout=30, what="the echo server")
        return setup, port

    def static_pair(self, app_port: int, *, tls: bool) -> Setup:
        certs = static_pair.make_certificates() if tls else None
        server_port, client_port = free_port(), free_port()
        pair = [
            EnvoyProcess(static_pair.server_bootstrap(listen_port=server_port, app_port=app_port, certs=certs),
                         workdir=self.workdir / f"limit-{tls}-server", die_with_parent=True),
            EnvoyProcess(static_pair.client_bootstrap(listen_port=client_port, server_port=server_port, certs=certs),
                         workdir=self.workdir / f"limit-{tls}-client", die_with_parent=True),
        ]
        for envoy in pair:
            self.envoys.append(envoy.start())
            envoy.wait_ready(timeout=60)
        setup = Setup("limit (static pair, mTLS)" if tls else "limit (static pair, plaintext)",
                      f"http://127.0.0.1:{client_port}/", proxy_pids=[e.pid for e in pair if e.pid], tls=tls)
        wait_until(lambda: _probe(setup), timeout=30, what=f"the static Envoy pair (tls={tls})")
        return setup

    def malla(self, *, namespace: str = "default", name: str = "malla (malla up + 2 x malla run)") -> Setup:
        home = self.workdir / "malla-home"
        if self.cp is None:
            config = self.workdir / "mesh-config"
            config.mkdir(exist_ok=True)
            (config / "telemetry.yaml").write_text(METRICS_OFF.format(namespace=QUIET))
            self.cp = ControlPlaneProcess(home, config_dirs=[config])
            self.cp.start()
        echo = start_workload(home, name="echo", command=ECHO, ports=["9080/http"], namespace=namespace,
                              log=self.workdir / f"echo-{namespace}.log")
        client = start_workload(home, name="loadgen", command=IDLE, namespace=namespace,
                                log=self.workdir / f"loadgen-{namespace}.log")
        self.procs += [echo, client]
        cp = self.cp

        def client_node() -> str | None:
            for p in cp.api("GET", "/api/v1/proxies").json()["items"]:
                token = p["node"].split("~")[2]
                if token.startswith("loadgen-") and token.endswith(f".{namespace}"):
                    return str(p["node"])
            return None

        node = wait_until(client_node, timeout=120, what="the loadgen sidecar to connect", interval=0.2)
        address = node.split("~")[1]
        setup = Setup(name, f"http://{address}:15001/", authority=f"echo.{namespace}:9080")
        wait_until(lambda: _probe(setup), timeout=120, what="traffic through the malla sidecars", interval=0.2)
        setup.proxy_pids = children_named(echo.pid, "envoy") + children_named(client.pid, "envoy")
        setup.agent_pids = [echo.pid, client.pid]
        admin = (home / "workloads" / node.split("~")[2] / "admin-address").read_text().strip()
        self.mesh_tls = setup.tls = _uses_tls(admin)
        self.mesh_filters = _outbound_filters(admin)
        return setup

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc, timeout=20)
        for envoy in self.envoys:
            envoy.stop()
        if self.cp is not None:
            self.cp.stop()


def _uses_tls(admin: str) -> bool:
    """Whether the client sidecar's cluster for the echo service has a TLS transport socket."""
    dump = admin_json(admin, "/config_dump?resource=dynamic_active_clusters")
    for entry in dump.get("configs", []):
        cluster = entry.get("cluster", {})
        if "echo" in cluster.get("name", "") and "envoy.transport_sockets.tls" in json.dumps(cluster):
            return True
    return False


@dataclass(frozen=True)
class Measured:
    load: LoadResult
    proxy_cpu: float | None  # ms of CPU per 1,000 requests, both Envoys
    agent_cpu: float | None  # the same for both malla run agents


def _outbound_filters(admin: str) -> str:
    """What the client sidecar's HTTP proxy listener does per request: HTTP filters, access logs, tracing."""
    dump = admin_json(admin, "/config_dump?resource=dynamic_listeners")
    for entry in dump.get("configs", []):
        listener = entry.get("active_state", {}).get("listener", {})
        for chain in listener.get("filter_chains", []):
            for f in chain.get("filters", []):
                manager = f.get("typed_config", {})
                if "http_filters" not in manager:
                    continue
                parts = [h["name"].rsplit(".", 1)[-1] for h in manager["http_filters"]]
                parts += [f"access log {a['name'].rsplit('.', 1)[-1]}" for a in manager.get("access_log", [])]
                if "tracing" in manager:
                    parts.append("tracing")
                return ", ".join(parts)
    return "unknown"


def _measure(setup: Setup, *, rate: int, seconds: float) -> Measured:
    run_load(setup.url, rate=rate, seconds=1, authority=setup.authority)  # warm connections and pools
    pids = setup.proxy_pids + setup.agent_pids
    before = [cpu_seconds(p) for p in pids]
    load = run_load(setup.url, rate=rate, seconds=seconds, authority=setup.authority)
    spent = [(cpu_seconds(p) - b) * 1e3 for p, b in zip(pids, before)]
    proxies, agents = sum(spent[: len(setup.proxy_pids)]), sum(spent[len(setup.proxy_pids) :])
    return Measured(load, safe_div(proxies * 1000, load.requests) if setup.proxy_pids else None,
                    safe_div(agents * 1000, load.requests) if setup.agent_pids else None)


def run(*, quick: bool, workdir: Path) -> Result:
    result = Result("dataplane", "Data-plane overhead: sidecar -> (m)TLS -> sidecar", quick)
    seconds, rounds = (5.0, 1) if quick else (30.0, 3)
    stack = Stack(workdir)
    try:
        direct, app_port = stack.direct()
        setups = [direct, stack.static_pair(app_port, tls=True), stack.static_pair(app_port, tls=False), stack.malla(),
                  stack.malla(namespace=QUIET, name="malla, metrics off (Telemetry)")]
        rows, by = [], {}
        for rate in (500, 2000):
            for name, m in _rounds(setups, rate=rate, seconds=seconds, rounds=rounds):
                by[(name, rate)] = m
                rows.append([name, rate, round(m.load.achieved_rps), m.load.p50_ms, m.load.p90_ms, m.load.p99_ms,
                             m.load.failed, m.proxy_cpu, m.agent_cpu])
        result.table("Latency (ms) and CPU (ms per 1,000 requests; proxy: both Envoys; agent: both malla run processes)",
                     ["setup", "rate", "achieved rps", "p50", "p90", "p99", "failed", "proxy CPU", "agent CPU"], rows)
        _ratios(result, setups, by)
    finally:
        stack.stop()
    result.notes += [
        f"{seconds:g} s per measurement after a 1 s warm-up, {rounds} round(s) per rate (median of rounds), setups interleaved.",
        "h2load --h1 -c 4 --rps (open loop, per-request latency from --log-file; timed from the send).",
        "malla mesh transport between the sidecars: " + ("mTLS" if stack.mesh_tls else
            "PLAINTEXT (mTLS not enabled in the control plane yet); the ratio is taken against the plaintext limit"),
        f"malla client sidecar, per request on its HTTP listener: {stack.mesh_filters}; the limit has only the router.",
    ]
    return result


def _rounds(setups: list[Setup], *, rate: int, seconds: float, rounds: int) -> list[tuple[str, Measured]]:
    samples: dict[str, list[Measured]] = {s.name: [] for s in setups}
    for _ in range(rounds):
        for setup in setups:
            samples[setup.name].append(_measure(setup, rate=rate, seconds=seconds))
    out = []
    for name, runs in samples.items():
        # The round with the median p90 stands for the rate.
        runs.sort(key=lambda r: r.load.p90_ms if r.load.p90_ms is not None else float("inf"))
        out.append((name, runs[len(runs) // 2]))
    return out


def _ratios(result: Result, setups: list[Setup], by: dict[tuple[str, int], Measured]) -> None:
    direct, limit_tls, limit_plain, mesh, quiet = setups
    limit = limit_tls if mesh.tls else limit_plain
    for rate in (500, 2000):
        q, lim, m = by[(quiet.name, rate)], by[(limit.name, rate)], by[(mesh.name, rate)]
        result.ratio(f"p90 malla metrics off / limit at {rate} req/s", safe_div(q.load.p90_ms, lim.load.p90_ms),
                     baseline=limit.name, note="a Telemetry resource disables Istio's metrics: no access log to the agent")
        result.ratio(f"proxy CPU malla metrics off / limit at {rate} req/s", safe_div(q.proxy_cpu, lim.proxy_cpu),
                     baseline=limit.name)
        result.ratio(f"proxy CPU malla / malla metrics off at {rate} req/s", safe_div(m.proxy_cpu, q.proxy_cpu),
                     baseline=quiet.name, note="what Istio's metrics cost the proxies")
        m, lim, d = by[(mesh.name, rate)], by[(limit.name, rate)], by[(direct.name, rate)]
        result.figure(f"malla p90 at {rate} req/s", m.load.p90_ms, "ms")
        result.figure(f"malla achieved rate at {rate} req/s", m.load.achieved_rps, "req/s")
        result.figure(f"malla proxy CPU at {rate} req/s", m.proxy_cpu, "ms / 1,000 req")
        result.figure(f"malla agent CPU at {rate} req/s", m.agent_cpu, "ms / 1,000 req")
        result.ratio(f"p90 malla / limit at {rate} req/s", safe_div(m.load.p90_ms, lim.load.p90_ms),
                     baseline=limit.name, goal=1.10)
        result.ratio(f"proxy CPU malla / limit at {rate} req/s", safe_div(m.proxy_cpu, lim.proxy_cpu),
                     baseline=limit.name, goal=1.10)
        total = None if m.proxy_cpu is None else m.proxy_cpu + (m.agent_cpu or 0)
        result.ratio(f"proxy + agent CPU malla / limit at {rate} req/s", safe_div(total, lim.proxy_cpu),
                     baseline=limit.name, note="the agents take every request's access log (gRPC ALS)")
        result.ratio(f"p90 malla / direct at {rate} req/s", safe_div(m.load.p90_ms, d.load.p90_ms), baseline=direct.name)
        lt, lp = by[(limit_tls.name, rate)], by[(limit_plain.name, rate)]
        result.ratio(f"p90 limit mTLS / limit plaintext at {rate} req/s", safe_div(lt.load.p90_ms, lp.load.p90_ms),
                     baseline=limit_plain.name, note="what mTLS itself costs")
        result.ratio(f"proxy CPU limit mTLS / plaintext at {rate} req/s", safe_div(lt.proxy_cpu, lp.proxy_cpu),
                     baseline=limit_plain.name)
