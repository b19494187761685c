"""``malla gateway``: run an ingress gateway (Envoy as a router proxy) configured by Gateway resources."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer
from rich.markup import escape

from malla.cli.client import require_control_plane
from malla.cli.output import console, err_console


def gateway(
    name: Annotated[str, typer.Option("--name", help="Gateway name; its labels default to istio=NAME, app=NAME.")] = "ingressgateway",
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="The gateway's namespace (Istio's: istio-system).")] = "istio-system",
    labels: Annotated[str, typer.Option("--labels", help="More labels, k=v,k2=v2: what Gateway selectors match.")] = "",
    port: Annotated[list[int] | None, typer.Option("--port", "-p", help="A port it must be able to serve (checked free at start; repeatable).")] = None,
    address: Annotated[str, typer.Option("--address", help="IP to listen on; 'auto' leases a loopback address of its own.")] = "127.0.0.1",
    delta: Annotated[bool, typer.Option("--delta", help="Use Delta xDS instead of state-of-the-world.")] = False,
    home: Annotated[str | None, typer.Option("--home", help="The control plane's home (default $MALLA_HOME or ./.malla).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the URLs it serves.")] = False,
) -> None:
    """Run an ingress gateway: Envoy serving the Gateway servers that select it, routed by VirtualServices."""
    from malla.agent.gateway import GatewayOptions, run_gateway
    from malla.agent.run import AgentError
    from malla.pilot.snapshot import XdsMode

    parsed = _parse_labels(labels)
    for p in port or []:
        if not 1 <= p <= 65535:
            err_console.print(f"[red]error:[/red] --port {p}: the port must be between 1 and 65535")
            raise typer.Exit(2)
    home_path, state = require_control_plane(home)
    logging.basicConfig(level=os.environ.get("MALLA_LOG_LEVEL", "WARNING"))
    options = GatewayOptions(
        home=home_path, name=name, namespace=namespace, labels=parsed, address=address,
        ports=tuple(port or ()), xds_mode=XdsMode.DELTA if delta else XdsMode.SOTW,
    )

    def progress(message: str) -> None:
        if not quiet:
            err_console.print(f"[dim]malla:[/dim] {escape(message)}")

    def announce(message: str) -> None:
        # What it serves goes to stdout, for scripts; the commentary goes to stderr.
        console.print(escape(message))

    try:
        code = run_gateway(options, state, progress=progress, announce=announce)
    except AgentError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
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
