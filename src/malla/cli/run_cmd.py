"""``malla run``: start a command as a mesh workload with its own sidecar."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer
from rich.markup import escape

from malla.cli.client import require_control_plane
from malla.cli.output import err_console


def run(
    command: Annotated[list[str], typer.Argument(help="The command, after '--'.")],
    name: Annotated[str, typer.Option("--name", help="Workload and service name (label app=NAME).")],
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    version: Annotated[str | None, typer.Option("--version", help="Label version=V (DestinationRule subsets).")] = None,
    labels: Annotated[str, typer.Option("--labels", help="More labels: k=v,k2=v2.")] = "",
    service_account: Annotated[str | None, typer.Option("--service-account", help="Identity (default: NAME).")] = None,
    port: Annotated[list[str] | None, typer.Option("--port", "-p", help="A port the workload serves: 9080[/http|tcp|grpc|...] (repeatable).")] = None,
    ready_path: Annotated[str | None, typer.Option("--ready-path", help="HTTP path that answers when the app is ready (default: a TCP check).")] = None,
    delta: Annotated[bool, typer.Option("--delta", help="Use Delta xDS instead of state-of-the-world.")] = False,
    drain: Annotated[float, typer.Option("--drain", help="Seconds between withdrawing the endpoint and signalling the app.")] = 1.0,
    transparent: Annotated[bool, typer.Option("--transparent", help="Run in its own network namespace with traffic capture (root).")] = False,
    netns: Annotated[str | None, typer.Option("--netns", help="With --transparent: the namespace's name (default malla-NAME-<6 random hex>).")] = None,
    cert_ttl: Annotated[str | None, typer.Option("--cert-ttl", help="Workload certificate lifetime: 90s, 1h (default: the CA's, 24h); renewed at half-life.")] = None,
    join_token: Annotated[str | None, typer.Option("--join-token", envvar="MALLA_JOIN_TOKEN", help="Join token from 'malla token create' (default: minted from the control plane's home, same host only).")] = None,
    home: Annotated[str | None, typer.Option("--home")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress messages.")] = False,
) -> None:
    """Run CMD as a mesh workload: its sidecar is ready before it starts, and it leaves the mesh when it exits."""
    from malla.agent.ports import parse_ports
    from malla.agent.run import AgentError, RunOptions
    from malla.agent.run import run as run_workload
    from malla.cli.pilot_cmds import _parse_labels
    from malla.cli.token_cmd import parse_ttl
    from malla.pilot.snapshot import XdsMode

    if transparent or netns:
        _check_transparent(transparent, netns)
    if not command:
        err_console.print("[red]error:[/red] give the command after '--', e.g. malla run --name web -p 8080 -- python app.py")
        raise typer.Exit(2)
    try:
        ports = parse_ports(port or [])
        ttl = parse_ttl("--cert-ttl", cert_ttl) if cert_ttl else None
    except ValueError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    home_path, state = require_control_plane(home)
    logging.basicConfig(level=os.environ.get("MALLA_LOG_LEVEL", "WARNING"))
    options = RunOptions(
        name=name, command=tuple(command), home=home_path, namespace=namespace, version=version,
        labels=_parse_labels(labels), service_account=service_account, ports=ports, ready_path=ready_path,
        xds_mode=XdsMode.DELTA if delta else XdsMode.SOTW, drain_seconds=drain, transparent=transparent, netns=netns,
        cert_ttl=ttl, join_token=join_token,
    )

    def progress(message: str) -> None:
        if not quiet:
            err_console.print(f"[dim]malla:[/dim] {escape(message)}")

    try:
        code = run_workload(options, state, progress=progress)
    except AgentError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(exc.exit_code) from None
    raise typer.Exit(code)


def _check_transparent(transparent: bool, netns: str | None) -> None:
    """Before anything starts: --netns needs --transparent, and the host must allow it (root, tools)."""
    from malla.agent.netns import NetnsError, check_requirements
    from malla.agent.transparent import check_netns_name

    try:
        if not transparent:
            raise ValueError("--netns names the namespace of a --transparent workload; add --transparent")
        if netns is not None:
            check_netns_name(netns)
        check_requirements()
    except (ValueError, NetnsError) as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
