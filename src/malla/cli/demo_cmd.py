"""``malla demo``: the newcomer's first minute.

Until the Bookinfo mesh lands (it needs the agent and the gateway), the demo
loads Istio's own Bookinfo routing files shipped in the package, validates
and analyzes them, and says plainly that the running mesh is not there yet.
"""

from __future__ import annotations

from importlib import resources

import typer
from rich.markup import escape

from malla.cli.output import console
from malla.config.files import load_paths


def bookinfo_dir() -> str:
    return str(resources.files("malla.data").joinpath("samples/bookinfo/networking"))


def bookinfo_platform() -> str:
    """Istio's Kubernetes manifest of the Bookinfo services: gives the analyzers their hosts and pods."""
    return str(resources.files("malla.data").joinpath("samples/bookinfo/platform/kube/bookinfo.yaml"))


def demo() -> None:
    """Run the Bookinfo demo (today: validate and analyze Istio's Bookinfo config)."""
    from malla.analysis import analyze

    folder = bookinfo_dir()
    console.print(f"[bold]malla demo[/bold]: Istio's Bookinfo routing files from {escape(folder)}")
    result, files = load_paths([folder, bookinfo_platform()])
    for d in result.diagnostics:
        console.print(escape(d.format()))
    console.print(
        f"  loaded {len(result.configs)} Istio resources from {files} files "
        f"({len(result.errors)} errors)"
    )
    by_kind: dict[str, int] = {}
    for c in result.configs:
        by_kind[c.kind] = by_kind.get(c.kind, 0) + 1
    for kind, n in sorted(by_kind.items()):
        console.print(f"    {kind:<16} {n}")
    messages = analyze(result.configs, result.kube)
    console.print(f"  analysis with the Bookinfo services and deployments: {len(messages)} message(s)")
    for m in messages[:10]:
        console.print(f"    {escape(m.format_istioctl())}")
    console.print(
        "\nThe running Bookinfo mesh (control plane, sidecars, ingress gateway) is not part of this "
        "version yet; try:\n  malla validate " + escape(folder) + "\n  malla analyze " + escape(folder)
    )
    raise typer.Exit(1 if result.errors else 0)
