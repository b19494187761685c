"""An agent's pid file in its working directory, so that ``malla down`` finds agents the API does not list.

Sidecar agents register their workload (with their pid) through the API;
gateway agents serve no workload, so each writes ``agent.pid`` beside its
Envoy's files and removes it on exit. ``agents_in`` lists the live ones: a
pid is trusted only while a process with it runs ``malla`` (a stale file
whose pid was reused by another program is ignored).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

PID_FILE = "agent.pid"


def write_pid(workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / PID_FILE
    path.write_text(f"{os.getpid()}\n")
    return path


def remove_pid(workdir: Path) -> None:
    path = workdir / PID_FILE
    with contextlib.suppress(FileNotFoundError, ValueError):
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()


def agents_in(root: Path) -> Iterator[tuple[int, str]]:
    """(pid, directory name) of each live malla agent with a pid file under ``root/*/``."""
    for path in sorted(root.glob(f"*/{PID_FILE}")):
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            continue
        if _is_malla(pid):
            yield pid, path.parent.name


def _is_malla(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(b"malla" in part for part in cmdline[:4])
