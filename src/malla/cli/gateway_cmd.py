"""``malla gateway``: run an ingress gateway (Envoy as a router proxy) configured by Gateway resources.

With ``--controlplane HOST`` the control plane is on another host: no home
state is read, the gateway joins with its token and reaches the control
plane only over mTLS (``malla.agent.remote_gateway``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from malla.cli.client import require_control_plane
from malla.cli.output import console, err_console
from malla.cli.run_cmd import _join_token
from malla.controlplane.home import home_dir


def gateway(
    name: Annotated[str, typer.Option("--name", help="Gateway name; its labels default to istio=NAME, app=NAME.")] = "ingressgateway",
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="The gateway's namespace (Istio's: istio-system).")] = "istio-system",
    labels: Annotated[str, typer.Option("--labels", help="More labels, k=v,k2=v2: what Gateway selectors match.")] = "",
    port: Annotated[list[int] | None, typer.Option("--port", "-p", help="A port it must be able to serve (checked free at start; repeatable).")] = None,
    address: Annotated[str, typer.Option("--address", help="IP to listen on; 'auto' leases a loopback address of its own (not with --controlplane).")] = "127.0.0.1",
    delta: Annotated[bool, typer.Option("--delta", help="Use Delta xDS instead of state-of-the-world.")] = False,
    join_token: Annotated[str | None, typer.Option("--join-token", "--token", envvar="MALLA_JOIN_TOKEN", help="Join token from 'malla token create -n NAMESPACE' (default: minted from the control plane's home, same host only).")] = None,
    join_token_file: Annotated[Path | None, typer.Option("--join-token-file", "--token-file", help="Read the join token from this file.")] = None,
    controlplane: Annotated[str | None, typer.Option("--controlplane", envvar="MALLA_CONTROLPLANE", help="A control plane on another host, HOST[:PORT] of its mTLS port (default 15012); needs a join token, no local control plane.")] = None,
    ca_root: Annotated[Path | None, typer.Option("--ca-root", help="With --controlplane: the mesh's root-cert.pem (default: fetched and checked against the token's CA hash).")] = None,
    home: Annotated[str | None, typer.Option("--home", help="The control plane's home (default $MALLA_HOME or ./.malla); with --controlplane, this host's own (the mesh's roots, credentials).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the URLs it serves.")] = False,
) -> None:
    """Run an ingress gateway: Envoy serving the Gateway servers that select it, routed by VirtualServices."""
    from malla.agent.gateway import GatewayOptions, run_gateway
    from malla.agent.remote import RemoteOptions
    from malla.agent.remote_gateway import gateway_with_token, run_remote_gateway
    from malla.agent.run import AgentError
    from malla.pilot.snapshot import XdsMode

    parsed = _parse_labels(labels)
    for p in port or []:
        if not 1 <= p <= 65535:
            err_console.print(f"[red]error:[/red] --port {p}: the port must be between 1 and 65535")
            raise typer.Exit(2)
    if controlplane is None and ca_root is not None:
        err_console.print("[red]error:[/red] --ca-root is for a control plane on another host: add --controlplane HOST")
        raise typer.Exit(2)
    token = _join_token(join_token, join_token_file)
    if controlplane is None:
        home_path, state = require_control_plane(home, remote_flag=True)
    else:
        home_path, state = home_dir(home), None
    logging.basicConfig(level=os.environ.get("MALLA_LOG_LEVEL", "WARNING"))
    # httpx logs every URL at INFO; a remote gateway's relay URL carries its secret path.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    options = GatewayOptions(
        home=home_path, name=name, namespace=namespace, labels=parsed, address=address,
        ports=tuple(port or ()), xds_mode=XdsMode.DELTA if delta else XdsMode.SOTW, join_token=token,
    )

    def progress(message: str) -> None:
        if not quiet:
            err_console.print(f"[dim]malla:[/dim] {escape(message)}")

    def announce(message: str) -> None:
        # What it serves goes to stdout, for scripts; the commentary goes to stderr.
        console.print(escape(message))

    try:
        if controlplane is not None:
            code = run_remote_gateway(options, RemoteOptions(controlplane, ca_root=ca_root), progress=progress,
                                      announce=announce)
        else:
            assert state is not None
            code = run_gateway(gateway_with_token(options, token) if token else options, state,
                               progress=progress, announce=announce)
    except AgentError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(exc.exit_code) from None
    raise typer.Exit(code)


def _parse_labels(text: str) -> dict[str, str]:
    labels = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            err_console.print(
                f"[red]error:[/red] --labels: {part!r} is not key=value (e.g. --labels istio=ingressgateway)"
            )
            raise typer.Exit(2)
        labels[key.strip()] = value.strip()
    return labels
