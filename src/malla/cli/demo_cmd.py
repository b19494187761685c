"""``malla demo``: the Bookinfo mesh, the newcomer's first minute."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from malla.cli.output import console, err_console


def demo(
    port: Annotated[int, typer.Option("--port", help="Ingress gateway port (a free one is used when it is taken).")] = 8080,
    home: Annotated[str | None, typer.Option("--home", help="State directory (default .malla/demo).")] = None,
    traffic: Annotated[bool, typer.Option("--traffic", help="Send a steady background load to the product page.")] = False,
    exit_after: Annotated[float, typer.Option("--exit-after", help="Stop after N seconds (0: run until Ctrl-C).", hidden=True)] = 0.0,
) -> None:
    """Run Istio's Bookinfo as a mesh: control plane, six workloads with sidecars, an ingress gateway."""
    from malla.demo.bookinfo import Demo, DemoError, networking_dir

    home_path = Path(home).resolve() if home else (Path.cwd() / ".malla" / "demo").resolve()
    d = Demo(home=home_path, gateway_port=port, progress=lambda m: console.print(f"  [green]✔[/green] {escape(m)}"))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    console.print("[bold]malla demo[/bold]: Istio's Bookinfo on this machine")
    try:
        d.start()
    except DemoError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        d.stop()
        raise typer.Exit(1) from None
    except BaseException:
        d.stop()
        raise
    if traffic:
        d.start_traffic()
    nets = networking_dir()
    state = d.cp.state  # type: ignore[union-attr]
    console.print(f"""
[bold]Bookinfo is up.[/bold]
  product page   {d.product_url}
  control plane  {state.api_url}   (xDS {state.xds_address}, metrics {state.monitoring_url}/metrics)

Next, in another terminal ([dim]export MALLA_HOME={escape(str(home_path))}[/dim]):
  malla status
  malla apply -f {escape(str(nets / 'virtual-service-all-v1.yaml'))}            # only reviews v1
  malla apply -f {escape(str(nets / 'virtual-service-reviews-50-v3.yaml'))}     # about half red stars
  malla apply -f {escape(str(nets / 'virtual-service-reviews-jason-v2-v3.yaml'))}  # log in as jason: black stars
  malla proxy-config routes productpage
Ctrl-C stops everything.""")
    try:
        stop.wait(exit_after if exit_after > 0 else None)
    finally:
        console.print("stopping the demo mesh...")
        d.stop()
        if traffic:
            console.print(f"  background traffic: {d.traffic_ok}/{d.traffic_sent} requests answered 200")
        console.print("  [green]✔[/green] stopped; nothing left running")
