"""``malla dashboard``: where the console of the running control plane is, opened in a browser.

istioctl's ``dashboard kiali``, without a port-forward: the console is
served by the control plane's HTTP API (Kiali's port, 20001), so this
prints its URL and opens a browser when this machine has a graphical one.
"""

from __future__ import annotations

import enum
import os
import sys
import webbrowser
from typing import Annotated

import typer

from malla.cli.client import require_control_plane
from malla.cli.output import console, err_console

HomeOpt = Annotated[str | None, typer.Option("--home", help="State directory (default $MALLA_HOME or ./.malla).")]


class Page(str, enum.Enum):
    graph = "graph"
    workloads = "workloads"
    services = "services"
    proxies = "proxies"
    config = "config"
    traces = "traces"


def has_graphical_browser() -> bool:
    """A browser a person would see: a desktop session here (a text browser in this terminal would not do)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("BROWSER"))


def dashboard(
    page: Annotated[Page, typer.Argument(help="Which page to open.")] = Page.graph,
    home: HomeOpt = None,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Only print the URL.")] = False,
) -> None:
    """Print the console's URL (service graph, health, config, proxies, traces) and open it in a browser."""
    _, state = require_control_plane(home)
    url = f"{state.api_url}/console/{page.value}"
    console.print(url)
    if no_browser:
        return
    if not has_graphical_browser():
        err_console.print("no graphical browser here: open the URL above in yours (--no-browser skips this note)")
        return
    try:
        opened = webbrowser.open(url, new=2)
    except webbrowser.Error:
        opened = False
    if not opened:
        err_console.print("could not start a browser: open the URL above yourself")
