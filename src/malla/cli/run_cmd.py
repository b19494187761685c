"""``malla run``: start a command as a mesh workload with its own sidecar.

With ``--controlplane HOST`` the control plane is on another host: no home
state is read, the workload joins with its token and reaches the control
plane only over mTLS (``malla.agent.remote``; with ``--transparent`` too,
``malla.agent.remote_transparent``).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from malla.cli.client import require_control_plane
from malla.cli.output import err_console
from malla.controlplane.home import ControlPlaneState, home_dir

if TYPE_CHECKING:
    from malla.agent.remote import RemoteOptions
    from malla.agent.run import RunOptions


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
    join_token: Annotated[str | None, typer.Option("--join-token", "--token", envvar="MALLA_JOIN_TOKEN", help="Join token from 'malla token create' (default: minted from the control plane's home, same host only).")] = None,
    join_token_file: Annotated[Path | None, typer.Option("--join-token-file", "--token-file", help="Read the join token from this file.")] = None,
    controlplane: Annotated[str | None, typer.Option("--controlplane", envvar="MALLA_CONTROLPLANE", help="A control plane on another host, HOST[:PORT] of its mTLS port (default 15012); needs a join token, no local control plane.")] = None,
    ca_root: Annotated[Path | None, typer.Option("--ca-root", help="With --controlplane: the mesh's root-cert.pem (default: fetched and checked against the token's CA hash).")] = None,
    address: Annotated[str | None, typer.Option("--address", help="With --controlplane: the IP other hosts reach this workload at (default: this host's address towards the control plane).")] = None,
    home: Annotated[str | None, typer.Option("--home")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress messages.")] = False,
) -> None:
    """Run CMD as a mesh workload: its sidecar is ready before it starts, and it leaves the mesh when it exits."""
    from malla.agent.ports import parse_ports
    from malla.agent.run import RunOptions
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
    remote = _remote_options(controlplane, ca_root=ca_root, address=address)
    join_token = _join_token(join_token, join_token_file)
    if remote is None:
        home_path, state = require_control_plane(home, remote_flag=True)
    else:
        home_path, state = home_dir(home), None
    logging.basicConfig(level=os.environ.get("MALLA_LOG_LEVEL", "WARNING"))
    # httpx logs every URL at INFO; a remote agent's relay URL carries its secret path.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    options = RunOptions(
        name=name, command=tuple(command), home=home_path, namespace=namespace, version=version,
        labels=_parse_labels(labels), service_account=service_account, ports=ports, ready_path=ready_path,
        xds_mode=XdsMode.DELTA if delta else XdsMode.SOTW, drain_seconds=drain, transparent=transparent, netns=netns,
        cert_ttl=ttl, join_token=join_token,
    )
    raise typer.Exit(_run_agent(options, state=state, remote=remote, quiet=quiet))


def _run_agent(options: RunOptions, *, state: ControlPlaneState | None, remote: RemoteOptions | None,
               quiet: bool) -> int:
    """The workload's exit status; an agent's error is printed and exits with its code."""
    from malla.agent.remote import run_remote
    from malla.agent.run import AgentError
    from malla.agent.run import run as run_workload

    def progress(message: str) -> None:
        if not quiet:
            err_console.print(f"[dim]malla:[/dim] {escape(message)}")

    try:
        if remote is not None:
            return run_remote(options, remote, progress=progress)
        assert state is not None
        return run_workload(options, state, progress=progress)
    except AgentError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(exc.exit_code) from None


def _remote_options(controlplane: str | None, *, ca_root: Path | None, address: str | None) -> RemoteOptions | None:
    """The options of a workload whose control plane is on another host (None: on this one); exit 2 if wrong."""
    from malla.agent.remote import RemoteOptions

    problem = None
    if controlplane is None and (ca_root is not None or address is not None):
        problem = "--ca-root and --address are for a control plane on another host: add --controlplane HOST"
    elif address is not None:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            problem = f"--address {address!r}: give an IP address of this host"
    if problem:
        err_console.print(f"[red]error:[/red] {escape(problem)}")
        raise typer.Exit(2)
    return RemoteOptions(controlplane, ca_root=ca_root, address=address) if controlplane is not None else None


def _join_token(given: str | None, path: Path | None) -> str | None:
    """The token of --join-token or of --join-token-file (not both); exit 2 naming the flag when unusable."""
    if path is None:
        return given
    problem = None
    if given is not None:
        problem = "give the join token with --join-token or --join-token-file, not both"
    else:
        try:
            given = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            problem = f"--join-token-file {path}: {getattr(exc, 'strerror', None) or exc}"
        else:
            problem = None if given else f"--join-token-file {path}: the file is empty"
    if problem:
        err_console.print(f"[red]error:[/red] {escape(problem)}")
        raise typer.Exit(2)
    return given


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
