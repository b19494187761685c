"""Finding and calling the running control plane from the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import typer

from malla.cli.output import err_console
from malla.controlplane.home import ControlPlaneState, home_dir, pid_alive


class NotRunning(Exception):
    pass


def find_control_plane(home: str | None) -> tuple[Path, ControlPlaneState]:
    path = home_dir(home)
    state = ControlPlaneState.read(path)
    if state is None or not pid_alive(state.pid):
        raise NotRunning(f"no control plane is running for home {path}")
    return path, state


def require_control_plane(home: str | None, *, remote_flag: bool = False) -> tuple[Path, ControlPlaneState]:
    """The running control plane, or a clear message and exit status 3.

    ``remote_flag``: the command also takes ``--controlplane HOST`` (a control plane on another host).
    """
    try:
        return find_control_plane(home)
    except NotRunning as exc:
        remote = "; or, for one on another host, --controlplane HOST[:15012] with a join token" if remote_flag else ""
        err_console.print(f"[red]error:[/red] {exc}. Start one with 'malla up' (or set MALLA_HOME / --home to "
                          f"its home){remote}.")
        raise typer.Exit(3) from None


def call(state: ControlPlaneState, method: str, path: str, *, timeout: float = 10.0, **kwargs: Any) -> httpx.Response:
    try:
        # The control plane is always reached directly: a proxy from the environment (a corporate one,
        # or a workload's sidecar) must not sit between the CLI and it.
        return httpx.request(method, state.api_url + path, timeout=timeout, trust_env=False, **kwargs)
    except httpx.HTTPError as exc:
        err_console.print(f"[red]error:[/red] the control plane at {state.api_url} did not answer: {exc}")
        raise typer.Exit(3) from None
