"""Workload certificates for people: ``malla status``'s table and warnings, ``malla proxy-config secret``.

In: the control plane's ``/api/v1/identities`` items (what each agent last
reported; the time left computed by the control plane when asked). Out:
one row per workload (SPIFFE ID, serial, not-after, time left, state) and a
loud line per certificate in trouble: rotation failing, expiring, expired,
or an agent that stopped reporting. Certificates must not expire silently.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from malla.cli.client import call
from malla.cli.output import OutputFormat, console, emit_data, err_console
from malla.controlplane.home import ControlPlaneState


def when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def time_left(seconds: float | None) -> str:
    """``23h59m``, ``4m12s``, ``42s``; ``expired 3s ago`` once it is past."""
    if seconds is None:
        return "-"
    if seconds <= 0:
        return f"expired {_span(-seconds)} ago"
    return _span(seconds)


def _span(seconds: float) -> str:
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def workload_name(item: dict[str, Any]) -> str:
    """``NAME.NAMESPACE`` from the node id, as ``malla proxy-status`` shows proxies."""
    parts = str(item.get("nodeId", "")).split("~")
    return parts[2] if len(parts) == 4 and parts[2] else f"{item.get('name')}.{item.get('namespace')}"


_STATE_STYLE = {"VALID": "green", "ROTATION FAILING": "yellow", "EXPIRING": "bold red", "EXPIRED": "bold red"}


def print_certificates(items: list[dict[str, Any]]) -> None:
    """The certificate table, then one warning per certificate in trouble (on stderr)."""
    if not items:
        console.print("  no workload certificates reported")
        return
    table = _table("CERTIFICATE OF", "SPIFFE ID", "SERIAL", "NOT AFTER", "TIME LEFT", "STATE")
    for item in items:
        style = _STATE_STYLE.get(item["state"], "")
        state = f"[{style}]{item['state']}[/]" if style else item["state"]
        table.add_row(escape(workload_name(item)), escape(item["spiffeId"]), item.get("serial") or "-",
                      when(item.get("notAfter")), time_left(item.get("secondsLeft")), state)
    print_wide(table)
    for item in items:
        warning = certificate_warning(item)
        if warning:
            err_console.print(warning)


def certificate_warning(item: dict[str, Any]) -> str | None:
    """A loud line when a certificate is in trouble, None when it is fine."""
    who = f"{escape(workload_name(item))} ({escape(item['spiffeId'])})"
    error = escape(item.get("lastError") or "no reason given")
    left = time_left(item.get("secondsLeft"))
    state = item["state"]
    if state == "EXPIRED":
        return (f"[bold red]CERTIFICATE EXPIRED[/bold red] {who}: {left}; mTLS to and from it fails until "
                f"its agent gets a new one from the CA: {error}")
    if state == "EXPIRING":
        return (f"[bold red]CERTIFICATE EXPIRING[/bold red] {who}: expires in {left} and rotation keeps "
                f"failing ({item.get('failures', 0)} attempts): {error}. Bring the CA back "
                "(malla status shows its address) before it expires")
    if state == "ROTATION FAILING":
        return (f"[yellow]warning:[/yellow] certificate rotation of {who} is failing "
                f"({item.get('failures', 0)} attempts): {error}; the current certificate is valid for {left}")
    if item.get("stale"):
        return f"[yellow]warning:[/yellow] the agent of {who} stopped reporting its certificate; it may be gone"
    return None


def _table(*headers: str) -> Table:
    table = Table(box=None, pad_edge=False)
    for header in headers:
        table.add_column(header, no_wrap=True)
    return table


def print_wide(table: Table) -> None:
    # SPIFFE IDs and serials are copied from here: one line per row, even past the
    # terminal's width (the terminal wraps it), never folded inside a cell.
    wide = Console(width=max(console.width, 400), highlight=False, no_color=console.no_color,
                   force_terminal=console.is_terminal)
    wide.print(table, crop=False)


def secret_rows(item: dict[str, Any]) -> list[dict[str, Any]]:
    """``default`` and ``ROOTCA`` as the agent serves them to its Envoy (istioctl's proxy-config secret)."""
    synced = item.get("envoySynced")
    status = "ACTIVE" if synced else ("PUSHING" if synced is False else "SERVED")
    left = item.get("secondsLeft")
    rows = [{
        "name": "default", "type": "Cert Chain", "status": status,
        "valid": left is not None and left > 0, "serial": item.get("serial"), "spiffeId": item["spiffeId"],
        "notBefore": item.get("notBefore"), "notAfter": item.get("notAfter"), "secondsLeft": left,
    }]
    for root in item.get("roots") or []:
        rows.append({"name": "ROOTCA", "type": "CA", "status": status, "valid": True,
                     "serial": root.get("serial"), "subject": root.get("subject"), "notAfter": root.get("notAfter")})
    return rows


def print_secrets(item: dict[str, Any], rows: list[dict[str, Any]], *, now: float) -> None:
    console.print(f"proxy {escape(str(item['nodeId']))}: certificate state {item['state']}")
    table = _table("RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER", "TIME LEFT",
                   "IDENTITY")
    for row in rows:
        expires = row.get("notAfter")
        left = row.get("secondsLeft", None if expires is None else expires - now)
        table.add_row(row["name"], row["type"], row["status"], str(row["valid"]).lower(), row.get("serial") or "-",
                      when(expires), time_left(left), escape(row.get("spiffeId") or row.get("subject") or "-"))
    print_wide(table)
    warning = certificate_warning(item)
    if warning:
        err_console.print(warning)


def show_secret(state: ControlPlaneState, proxy: str, output: OutputFormat) -> None:
    """``malla proxy-config secret PROXY``: what the proxy's agent serves it, by node id or a unique part of it."""
    items = call(state, "GET", "/api/v1/identities").json()["items"]
    found = [i for i in items if i["nodeId"] == proxy] or [i for i in items if proxy in i["nodeId"]]
    if len(found) != 1:
        what = "no workload certificate is reported" if not found else f"{len(found)} proxies match"
        err_console.print(f"[red]error:[/red] {what} for {escape(proxy)!r}; 'malla status' lists the certificates")
        raise typer.Exit(1)
    item = found[0]
    rows = secret_rows(item)
    if output is not OutputFormat.text:
        emit_data({"node": item["nodeId"], "state": item["state"], "secrets": rows}, output)
        return
    print_secrets(item, rows, now=time.time())
