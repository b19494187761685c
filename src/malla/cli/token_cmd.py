"""``malla token create``: a join token for an agent that cannot read the control plane's home.

The token is printed alone on stdout (``TOKEN=$(malla token create ...)``);
what to do with it goes to stderr. It carries the hash of the mesh's roots,
the join port and the trust domain, so ``malla run --controlplane HOST
--join-token TOKEN`` on the other host needs nothing else. ``-o json|yaml``
prints the token, its expiry, the CA's addresses, the roots' hashes and the
trust bundle (save ``rootCert`` to a file for ``--ca-root``).
"""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.markup import escape

from malla.api.base import parse_duration_ns
from malla.cli.client import call, require_control_plane
from malla.cli.output import OutputFormat, emit_data, err_console

app = typer.Typer(help="Join tokens for agents on other hosts.", no_args_is_help=True)


def parse_ttl(flag: str, text: str) -> float:
    """A positive Go-style duration (``90s``, ``1h``, ``1h30m``) in seconds; ValueError names the flag."""
    try:
        ns = parse_duration_ns(text)
    except ValueError as exc:
        raise ValueError(f"{flag} {text!r}: {exc}") from None
    if ns <= 0:
        raise ValueError(f"{flag} {text!r}: give a positive duration such as 90s, 30m or 24h")
    return ns / 1e9


@app.command("create")
def create(
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="The namespace the agent joins.")],
    service_account: Annotated[str | None, typer.Option(
        "--service-account", help="The identity it may take (default: any service account in the namespace).")] = None,
    ttl: Annotated[str, typer.Option("--ttl", help="How long the token can be used to join: 10m, 1h, 24h.")] = "1h",
    home: Annotated[str | None, typer.Option("--home")] = None,
    output: Annotated[OutputFormat, typer.Option(
        "--output", "-o", help="text (the token alone), json or yaml.")] = OutputFormat.text,
) -> None:
    """Create a join token: an agent on another host uses it for its first certificate (malla run --join-token)."""
    try:
        seconds = parse_ttl("--ttl", ttl)
    except ValueError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    _, state = require_control_plane(home)
    body = {"namespace": namespace, "ttlSeconds": seconds}
    if service_account:
        body["serviceAccount"] = service_account
    response = call(state, "POST", "/api/v1/tokens", json=body)
    data = response.json()
    if response.status_code != 200:
        err_console.print(f"[red]error:[/red] {escape(str(data.get('error', data)))}")
        raise typer.Exit(2)
    if output is not OutputFormat.text:
        emit_data(data, output)
        return
    typer.echo(data["token"])
    who = data["serviceAccount"] if data["serviceAccount"] != "*" else "any service account"
    left = max(0, int(data["expiresAt"] - time.time()))
    err_console.print(
        f"[dim]join token for {escape(who)} in namespace {escape(namespace)}, valid {left} s, trust domain "
        f"{escape(data['trustDomain'])}; CA join port {escape(data['caJoinAddress'])}, xDS and renewals "
        f"{escape(data['caAddress'])}. On the other host: malla run --controlplane THIS_HOST:"
        f"{escape(data['caAddress'].rpartition(':')[2])} --join-token TOKEN ... (the token carries the CA's hash; "
        f"the mTLS ports must listen where that host reaches them: malla up --mtls-host)[/dim]")
