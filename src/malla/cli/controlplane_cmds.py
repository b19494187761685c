"""``malla up``, ``down``, ``status``, ``apply``, ``delete``, ``get``: the control plane's verbs."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from malla.agent.pidfile import agents_in
from malla.cli.ca_cmd import print_problem
from malla.cli.certificates import print_certificates
from malla.cli.client import NotRunning, call, find_control_plane, require_control_plane
from malla.cli.output import OutputFormat, console, emit_data, err_console, style_for
from malla.controlplane.home import ControlPlaneState, applied_dir, home_dir, pid_alive

HomeOpt = Annotated[str | None, typer.Option("--home", help="State directory (default $MALLA_HOME or ./.malla).")]
OutputOpt = Annotated[OutputFormat, typer.Option("--output", "-o", help="text, json or yaml.")]


def up(
    config: Annotated[list[Path] | None, typer.Option("--config", "-c", help="Directory of Istio YAML to watch (repeatable).")] = None,
    home: HomeOpt = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run in the background; logs in the home directory.")] = False,
    xds_port: Annotated[int, typer.Option(help="xDS (plaintext, loopback).")] = 15010,
    api_port: Annotated[int, typer.Option(help="HTTP API and console.")] = 20001,
    monitoring_port: Annotated[int, typer.Option(help="Control-plane metrics.")] = 15014,
    ca_port: Annotated[int, typer.Option(help="CA: certificate renewals over mTLS.")] = 15012,
    ca_join_port: Annotated[int, typer.Option(help="CA: first certificates, with a join token.")] = 15013,
    mtls_host: Annotated[str | None, typer.Option(
        help="Address the mTLS port (xDS + CA) and the join port listen on (default 127.0.0.1; 0.0.0.0: agents on other hosts).")] = None,
    debounce_ms: Annotated[int, typer.Option(help="Quiet period before a push.")] = 100,
    debounce_max_ms: Annotated[int, typer.Option(help="Longest a change may wait.")] = 10_000,
    zipkin_address: Annotated[str | None, typer.Option(
        help="host:port of an external Zipkin or Jaeger (Zipkin API) for traces; default: the built-in collector.")] = None,
    trace_sampling: Annotated[float, typer.Option(help="Percent of requests traced, 0-100 (Istio's default 1).")] = 1.0,
) -> None:
    """Start the control plane (xDS, API, config watch) in the foreground, or in the background with --detach."""
    home_path = home_dir(home)
    try:
        _, running = find_control_plane(str(home_path))
    except NotRunning:
        running = None
    if running is not None:
        err_console.print(f"[red]error:[/red] a control plane is already running for {home_path} (pid {running.pid}); 'malla down' stops it")
        raise typer.Exit(1)
    config_dirs = tuple(p.resolve() for p in (config or []))
    for d in config_dirs:
        if not d.is_dir():
            # A mistyped path would otherwise give an empty mesh and no hint why.
            problem = "is not a directory" if d.exists() else "does not exist"
            err_console.print(f"[red]error:[/red] --config {escape(str(d))} {problem}; give a directory of Istio YAML")
            raise typer.Exit(2)
    tracing = _tracing_options(zipkin_address, trace_sampling)
    args = ["--home", str(home_path), "--xds-port", str(xds_port), "--api-port", str(api_port),
            "--monitoring-port", str(monitoring_port), "--ca-port", str(ca_port), "--ca-join-port", str(ca_join_port),
            "--debounce-ms", str(debounce_ms),
            "--debounce-max-ms", str(debounce_max_ms), "--trace-sampling", str(trace_sampling)]
    args += ["--zipkin-address", zipkin_address] if zipkin_address else []
    args += ["--mtls-host", mtls_host] if mtls_host else []
    for d in config_dirs:
        args += ["--config", str(d)]
    if detach:
        _start_detached(home_path, args)
        return
    _run_foreground(home_path, config_dirs, xds_port, api_port, monitoring_port, debounce_ms, debounce_max_ms,
                    ca_ports=(ca_port, ca_join_port), tracing=tracing, mtls_host=mtls_host)


def _tracing_options(zipkin_address: str | None, trace_sampling: float) -> dict[str, Any]:
    """MeshConfig's tracing fields from ``up``'s options; exit 2 naming the option when one is wrong."""
    from malla.telemetry.proxy_config import split_host_port

    if not 0 <= trace_sampling <= 100:
        err_console.print(f"[red]error:[/red] --trace-sampling {trace_sampling}: give a percentage from 0 to 100")
        raise typer.Exit(2)
    if zipkin_address:
        try:
            split_host_port(zipkin_address)
        except ValueError as exc:
            err_console.print(f"[red]error:[/red] --zipkin-address {exc}")
            raise typer.Exit(2) from None
    return {"zipkin_address": zipkin_address or None, "trace_sampling": trace_sampling}


def _run_foreground(home: Path, config_dirs: tuple[Path, ...], xds_port: int, api_port: int,
                    monitoring_port: int, debounce_ms: int, debounce_max_ms: int, *,
                    ca_ports: tuple[int, int] = (15012, 15013), tracing: dict[str, Any] | None = None,
                    mtls_host: str | None = None) -> None:
    from malla.controlplane.server import ControlPlane, ControlPlaneOptions, StartupError
    from malla.discovery.debounce import DebounceSettings

    logging.basicConfig(level=os.environ.get("MALLA_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # watchfiles logs every batch of file events at INFO; the source logs what matters.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    options = ControlPlaneOptions(
        home=home, config_dirs=config_dirs, xds_port=xds_port, api_port=api_port, monitoring_port=monitoring_port,
        ca_port=ca_ports[0], ca_join_port=ca_ports[1], mtls_host=mtls_host,
        debounce=DebounceSettings(quiet=debounce_ms / 1000, max_delay=debounce_max_ms / 1000),
    )
    if tracing:
        options = dataclasses.replace(options, mesh=options.mesh.with_(**tracing))
    cp = ControlPlane(options)
    try:
        state = cp.start()
    except StartupError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"[green]✔[/green] malla control plane up (pid {state.pid}), home {escape(str(home))}")
    console.print(f"  xDS         {state.xds_address}\n  API         {state.api_url}\n  monitoring  {state.monitoring_url}")
    mesh = cp.discovery.mesh
    console.print(f"  traces      {mesh.zipkin_address} (Zipkin API, {mesh.trace_sampling:g}% of requests)")
    console.print(f"  CA          {state.ca_address} (xDS and renewals, mTLS), {state.ca_join_address} (join tokens); "
                  f"trust domain {state.trust_domain}, root {escape(state.ca_root_cert)}")
    if mtls_host:
        console.print(f"  mTLS ports  listening on {escape(mtls_host)}: agents on other hosts join with "
                      "'malla token create' and 'malla run --controlplane'")
    for d in config_dirs:
        console.print(f"  watching    {escape(str(d))}")
    for path, problems in cp.source.problems.items():
        for d in problems:
            err_console.print(f"[{style_for(d.level)}]{escape(d.format())}[/]")
    console.print("Ctrl-C stops it.")
    sys.stdout.flush()
    cp.serve_forever()
    console.print("control plane stopped")


def _start_detached(home: Path, args: list[str]) -> None:
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "controlplane.log"
    with log_path.open("ab") as log:
        # The log is kept across runs; a failure shows only what this run wrote.
        since = log.tell()
        proc = subprocess.Popen(
            [sys.executable, "-m", "malla", "up", *args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    deadline = time.monotonic() + 60
    with console.status("starting the control plane..."):
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err_console.print(escape(_tail(log_path, since)))
                err_console.print(f"[red]error:[/red] the control plane did not start (exit status {proc.returncode}); log {escape(str(log_path))}")
                raise typer.Exit(1)
            state = ControlPlaneState.read(home)
            if state is not None and state.pid == proc.pid and _healthy(state):
                console.print(f"[green]✔[/green] malla control plane up in the background (pid {state.pid})")
                console.print(f"  xDS {state.xds_address}  API {state.api_url}  monitoring {state.monitoring_url}")
                console.print(f"  log {escape(str(log_path))}; 'malla status' to check, 'malla down' to stop")
                return
            time.sleep(0.1)
    proc.terminate()
    err_console.print(f"[red]error:[/red] the control plane did not become healthy within 60 s; its log:\n{escape(_tail(log_path, since))}")
    raise typer.Exit(1)


def _healthy(state: ControlPlaneState) -> bool:
    try:
        return httpx.get(state.api_url + "/healthz", timeout=1.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _tail(path: Path, since: int, lines: int = 20) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(since)
            text = fh.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def down(
    home: HomeOpt = None,
    keep_workloads: Annotated[bool, typer.Option("--keep-workloads", help="Stop only the control plane.")] = False,
) -> None:
    """Stop a running control plane and the workloads (malla run) and gateways of its mesh on this host."""
    try:
        _, state = find_control_plane(home)
    except NotRunning as exc:
        console.print(f"{exc}; nothing to stop")
        return
    if not keep_workloads:
        _stop_workloads(state)
    try:
        httpx.post(state.api_url + "/api/v1/shutdown", timeout=5, trust_env=False)
    except httpx.HTTPError:
        os.kill(state.pid, 15)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and pid_alive(state.pid):
        time.sleep(0.1)
    if pid_alive(state.pid):
        os.kill(state.pid, 9)
    console.print(f"[green]✔[/green] control plane (pid {state.pid}) stopped")


def _stop_workloads(state: ControlPlaneState) -> None:
    """SIGTERM every registered agent here: each withdraws itself, stops its app and its sidecar."""
    try:
        items = httpx.get(state.api_url + "/api/v1/workloads", timeout=5, trust_env=False).json()["items"]
    except (httpx.HTTPError, ValueError, KeyError):
        return
    pids = {w["agentPid"]: w["name"] for w in items if isinstance(w.get("agentPid"), int) and pid_alive(w["agentPid"])}
    # Gateways register no workload: their agents leave a pid file in their working directory.
    pids |= {pid: f"gateway {name.split('.')[0]}" for pid, name in agents_in(Path(state.home) / "gateways")}
    for pid in pids:
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, 9)
    if pids:
        console.print(f"[green]✔[/green] stopped {len(pids)} workload(s): {', '.join(sorted(set(pids.values())))}")


def status(home: HomeOpt = None, output: OutputOpt = OutputFormat.text) -> None:
    """Control plane health, workloads and proxies; exit 3 when no control plane answers."""
    _, state = require_control_plane(home)
    data = call(state, "GET", "/api/v1/status").json()
    workloads = call(state, "GET", "/api/v1/workloads").json()["items"]
    metrics = {g["labels"]["__meta_malla_address"]: g["targets"][0]
               for g in call(state, "GET", "/api/v1/telemetry/targets").json()}
    for w in workloads:
        w["metrics"] = metrics.get(w["address"])  # its merged /stats/prometheus (Istio's 15020)
    data["workloadList"] = workloads
    data["certificates"] = call(state, "GET", "/api/v1/identities").json()["items"]
    if output is not OutputFormat.text:
        emit_data(data, output)
        return
    console.print(f"[green]●[/green] control plane healthy (pid {data['pid']}, up {data['uptimeSeconds']} s)")
    for key, value in data["addresses"].items():
        console.print(f"  {key:<11} {value}")
    console.print(f"  resources   {data['resources']}" + (f"  ([yellow]{data['configProblems']} config problem(s)[/yellow]: malla get --problems)" if data["configProblems"] else ""))
    table = _table("WORKLOAD", "NAMESPACE", "ADDRESS", "PORTS", "METRICS", "LABELS")
    for w in workloads:
        table.add_row(w["name"], w["namespace"], w["address"], ",".join(f"{k}:{v}" for k, v in w["ports"].items()),
                      w["metrics"] or "-", ",".join(f"{k}={v}" for k, v in w["labels"].items()))
    console.print(table if workloads else "  no workloads")
    _print_proxies(data["proxies"])
    print_certificates(data["certificates"])
    print_problem(data.get("caProblem"))


def _table(*headers: str) -> Table:
    # Fold rather than cut: node ids and file paths are what users copy from here.
    table = Table(box=None, pad_edge=False)
    for header in headers:
        table.add_column(header, overflow="fold")
    return table


def _print_proxies(proxies: list[dict[str, Any]]) -> None:
    if not proxies:
        console.print("  no proxies connected")
        return
    table = _table("PROXY", "MODE", "CDS", "LDS", "EDS", "RDS", "VERSION")
    for p in proxies:
        states = {t["type"]: t for t in p["types"]}
        cells = [_state_cell(states.get(k)) for k in ("Cluster", "Listener", "ClusterLoadAssignment", "RouteConfiguration")]
        table.add_row(_proxy_name(p["node"]), p["mode"], *cells, (p["snapshotVersion"] or "")[:12])
    console.print(table)
    for p in proxies:
        for t in p["types"]:
            if t["state"] == "REJECTED":
                err_console.print(f"[red]REJECTED[/red] {escape(p['node'])} {t['type']}: {escape(t['error'] or '')}")
        if p.get("problem"):
            err_console.print(f"[red]problem[/red] {escape(p['node'])}: {escape(p['problem'])}")


def _proxy_name(node_id: str) -> str:
    """``NAME.NAMESPACE`` from ``sidecar~IP~NAME.NAMESPACE~DOMAIN``, as istioctl proxy-status shows pods."""
    parts = node_id.split("~")
    return parts[2] if len(parts) == 4 and parts[2] else node_id


def _state_cell(t: dict[str, Any] | None) -> str:
    if t is None:
        return "NOT SENT"
    colour = {"SYNCED": "green", "STALE": "yellow", "REJECTED": "red"}.get(t["state"], "")
    return f"[{colour}]{t['state']}[/]" if colour else t["state"]


def proxy_status(home: HomeOpt = None, output: OutputOpt = OutputFormat.text) -> None:
    """One row per connected proxy and type: SYNCED, STALE, NOT SENT or REJECTED with Envoy's reason."""
    _, state = require_control_plane(home)
    items = call(state, "GET", "/api/v1/proxies").json()["items"]
    if output is not OutputFormat.text:
        emit_data(items, output)
        return
    _print_proxies(items)


def _read_files(files: list[str]) -> list[tuple[str, str]]:
    from malla.config.files import expand, read_text

    out = []
    for shown, path, error in expand(files):
        if error:
            err_console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(1)
        out.append((shown, sys.stdin.read() if path is None else read_text(path)))
    return out


FilesOpt = Annotated[list[str], typer.Option("--filename", "-f", help="File, directory or '-' (repeatable).")]


def apply(filename: FilesOpt, home: HomeOpt = None, output: OutputOpt = OutputFormat.text,
          namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default") -> None:
    """Validate and apply Istio config to the running control plane; invalid input changes nothing."""
    _send("POST", filename, home, output, namespace)


def delete(filename: FilesOpt, home: HomeOpt = None, output: OutputOpt = OutputFormat.text,
           namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default") -> None:
    """Delete the resources named in the files from the running control plane."""
    _send("DELETE", filename, home, output, namespace)


def _send(method: str, files: list[str], home: str | None, output: OutputFormat, namespace: str) -> None:
    _, state = require_control_plane(home)
    failed = False
    results: list[dict[str, Any]] = []
    for shown, text in _read_files(files):
        resp = call(state, method, "/api/v1/config", content=text.encode(), params={"namespace": namespace},
                    headers={"content-type": "application/yaml", "x-malla-source": shown})
        body = resp.json()
        results.append({"file": shown, **body})
        failed |= not body.get("ok", False)
        if output is OutputFormat.text:
            for d in body.get("diagnostics", []):
                level = d["level"]
                where = f"{d.get('file', shown)}:{d['line']}" if d.get("line") else d.get("file", shown)
                field = f" {d['field']}:" if d.get("field") else ""
                res = f" {d['resource']}:" if d.get("resource") else ""
                err_console.print(f"[{style_for(level)}]{escape(where)}: {level}:{escape(res)}{escape(field)} {escape(d['message'])}[/]")
            for r in body.get("results", []):
                console.print(f"{escape(r['resource'])} {r['action']}")
    if output is not OutputFormat.text:
        emit_data(results, output)
    if failed and output is OutputFormat.text:
        err_console.print("[red]✘ nothing was applied from the file(s) with errors[/red]" if method == "POST" else "[red]✘ errors[/red]")
    raise typer.Exit(1 if failed else 0)


def get(
    kind: Annotated[str | None, typer.Argument(help="Kind (VirtualService, vs, destinationrules, ...); all kinds when left out.")] = None,
    name: Annotated[str | None, typer.Argument()] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n")] = None,
    home: HomeOpt = None,
    output: OutputOpt = OutputFormat.text,
) -> None:
    """List the Istio resources the running control plane holds."""
    _, state = require_control_plane(home)
    params = {k: v for k, v in {"kind": kind, "namespace": namespace, "name": name}.items() if v}
    resp = call(state, "GET", "/api/v1/config", params=params)
    if resp.status_code == 404:
        err_console.print(f"[red]error:[/red] {resp.json()['error']}")
        raise typer.Exit(1)
    body = resp.json()
    items = body["items"]
    if output is not OutputFormat.text:
        emit_data(items if name is None else (items[0] if items else None), output)
        raise typer.Exit(0 if items or name is None else 1)
    if name and not items:
        err_console.print(f"[red]error:[/red] {kind} {name!r} not found")
        raise typer.Exit(1)
    table = _table("KIND", "NAMESPACE", "NAME", "FROM")
    applied = str(applied_dir(Path(state.home))) + os.sep
    for it in items:
        origin = it.get("origin") or ""
        table.add_row(it["kind"], it["metadata"]["namespace"], it["metadata"]["name"],
                      "malla apply" if origin.startswith(applied) else escape(origin))
    console.print(table if items else "no resources")
    for path, problems in body.get("problems", {}).items():
        for d in problems:
            err_console.print(f"[{style_for(d['level'])}]{escape(path)}: {d['level']}: {escape(d['message'])}[/]")
