"""``malla ca show`` and ``malla ca rotate-root begin|activate|retire``: the mesh CA, and replacing its root.

A root rotation (self-signed CA only) has three steps, each safe only once
every workload caught up with the one before, which the agents' reports
tell (``malla status``):

1. ``begin``: a new root is trusted beside the old one; the old one still
   signs. Workloads get the two-root bundle at their next renewal.
2. ``activate``: the new root signs. Refused while a workload does not
   trust the new root yet (its peers would reject its new certificate).
3. ``retire``: only the new root stays trusted. Refused while a workload
   still holds a certificate from the old root.

``--force`` skips those checks (for workloads that are gone but reported).
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from malla.cli.certificates import print_wide, time_left, when, workload_name
from malla.cli.client import call, require_control_plane
from malla.cli.output import OutputFormat, console, emit_data, err_console

app = typer.Typer(help="The mesh's certificate authority.", no_args_is_help=True)
HomeOpt = Annotated[str | None, typer.Option("--home")]
OutputOpt = Annotated[OutputFormat, typer.Option("--output", "-o", help="text, json or yaml.")]


class Step(str, enum.Enum):
    begin = "begin"
    activate = "activate"
    retire = "retire"


_NEXT = {
    "begin": "once every workload trusts the new root (malla ca show: ROOTS TRUSTED 2 for all), "
             "run 'malla ca rotate-root activate'; at most one certificate lifetime",
    "activate": "once every workload holds a certificate from the new root (at most one certificate "
                "lifetime), run 'malla ca rotate-root retire'",
    "retire": "the rotation is complete",
}


@app.command("show")
def show(home: HomeOpt = None, output: OutputOpt = OutputFormat.text) -> None:
    """The CA: trust domain, addresses, rotation phase, roots, and which roots each workload trusts."""
    _, state = require_control_plane(home)
    ca = call(state, "GET", "/api/v1/ca").json()
    items = call(state, "GET", "/api/v1/identities").json()["items"]
    if output is not OutputFormat.text:
        emit_data({"ca": ca, "workloads": items}, output)
        return
    _print_ca(ca)
    _print_workload_roots(items, ca)


@app.command("rotate-root")
def rotate_root(
    step: Annotated[Step, typer.Argument(help="begin, activate or retire (in this order).")],
    force: Annotated[bool, typer.Option("--force", help="Skip the check that every workload is ready.")] = False,
    home: HomeOpt = None,
    output: OutputOpt = OutputFormat.text,
) -> None:
    """One step of replacing the CA's root without breaking mTLS (see 'malla ca show')."""
    _, state = require_control_plane(home)
    if not force:
        ca = call(state, "GET", "/api/v1/ca").json()
        items = call(state, "GET", "/api/v1/identities").json()["items"]
        behind = not_ready(step.value, ca, items)
        if behind:
            err_console.print(f"[red]error:[/red] not safe to {step.value} yet: {escape('; '.join(behind))}. "
                              "Wait for their next renewal, or pass --force")
            raise typer.Exit(1)
    response = call(state, "POST", "/api/v1/ca/rotate-root", json={"step": step.value})
    body = response.json()
    if response.status_code != 200:
        err_console.print(f"[red]error:[/red] {escape(str(body.get('error', body)))}")
        raise typer.Exit(1)
    if output is not OutputFormat.text:
        emit_data(body, output)
        return
    _print_ca(body)
    console.print(f"next: {_NEXT[step.value]}")


def not_ready(step: str, ca: dict[str, Any], items: list[dict[str, Any]]) -> list[str]:
    """Workloads for which ``step`` would break mTLS now, each with the reason."""
    signing = ca["signingRoot"]
    if step == "activate":
        staged = [r["serial"] for r in ca["roots"] if r["serial"] != signing["serial"]]
        return [f"{workload_name(i)} does not trust the new root yet" for i in items
                if staged and not set(staged) <= {r.get("serial") for r in i.get("roots") or []}]
    if step == "retire":
        return [f"{workload_name(i)} holds a certificate from the old root" for i in items
                if i.get("issuer") and i["issuer"] != signing["subject"]]
    return []


def _print_ca(ca: dict[str, Any]) -> None:
    kind = "plug-in CA files" if ca["pluggedIn"] else "self-signed root"
    console.print(f"CA for trust domain {escape(ca['trustDomain'])} ({kind} in {escape(ca['directory'])})")
    console.print(f"  renewals (mTLS) {ca['address']}   join tokens {ca['joinAddress']}   rotation: {ca['rotation']}")
    table = Table("ROOT", "SERIAL", "NOT AFTER", "SIGNS", box=None, pad_edge=False)
    for root in ca["roots"]:
        signs = "yes" if root["serial"] == ca["signingRoot"]["serial"] else "no"
        table.add_row(escape(root["subject"]), root["serial"], when(root["notAfter"]), signs)
    print_wide(table)
    print_problem(ca.get("problem"))


def print_problem(problem: dict[str, Any] | None) -> None:
    """The replaced CA files the CA refused; it still signs with the material above."""
    if problem:
        err_console.print(f"[red]CA files refused[/red] ({escape(problem['file'])}, since "
                          f"{when(problem['since'])}): {escape(problem['message'])}; still signing with "
                          "the previous material")


def _print_workload_roots(items: list[dict[str, Any]], ca: dict[str, Any]) -> None:
    if not items:
        console.print("no workload certificates reported")
        return
    table = Table("WORKLOAD", "ROOTS TRUSTED", "SIGNED BY", "TIME LEFT", box=None, pad_edge=False)
    subjects = {r["subject"]: f"root {r['serial'][:16]}" for r in ca["roots"]}
    for item in items:
        issuer = item.get("issuer") or "-"
        table.add_row(escape(workload_name(item)), str(len(item.get("roots") or [])),
                      escape(subjects.get(issuer, issuer)), time_left(item.get("secondsLeft")))
    print_wide(table)
