"""Private directories for the agents' SDS sockets, and the sweeping of those whose agent is gone.

An SDS socket lives in a directory of its own under the system's temporary
directory (short: socket paths are limited to 107 bytes; mode 0700: the
workload's key passes through the socket). An agent removes its directory
when it stops, but one killed with SIGKILL cannot, so every agent, before
making its own, removes the stale ones of its user:

- ``malla-sds-<pid>-<random>`` (made here): stale when no server answers on
  a socket inside and its agent's pid is gone, or the directory is older
  than ``STALE_AFTER`` (its pid may have been reused);
- ``malla-sds-<random>`` (older agents, and gateways): stale when no server
  answers on a socket inside and it is older than ``STALE_AFTER_UNNAMED``
  (its agent may still be about to listen).

A directory with a live server is never removed, whatever its name says.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from malla.controlplane.home import pid_alive

log = logging.getLogger(__name__)

PREFIX = "malla-sds-"
STALE_AFTER = 600.0
STALE_AFTER_UNNAMED = 60.0


def make_socket_dir(*, root: Path | None = None) -> Path:
    """A fresh private directory named after this agent, once the stale ones are swept."""
    sweep_stale(root=root)
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=root))


def sweep_stale(*, root: Path | None = None, alive: Callable[[int], bool] = pid_alive,
                clock: Callable[[], float] = time.time) -> list[Path]:
    """Remove this user's stale SDS directories under `root` (default: the temporary directory)."""
    removed = []
    for path in Path(root or tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            info = path.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            continue
        if _stale(path, age=clock() - info.st_mtime, alive=alive):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.info("removed %d SDS directories left by agents that are gone", len(removed))
    return removed


def _stale(path: Path, *, age: float, alive: Callable[[int], bool]) -> bool:
    pid_text, dash, _ = path.name[len(PREFIX):].partition("-")
    if dash and pid_text.isdigit():
        if not (age > STALE_AFTER or not alive(int(pid_text))):
            return False
    elif age <= STALE_AFTER_UNNAMED:
        return False
    return not _serving(path)


def _serving(directory: Path) -> bool:
    """Does a server accept connections on any socket in `directory`?"""
    try:
        entries = list(directory.iterdir())
    except OSError:
        return False
    for entry in entries:
        try:
            if not stat.S_ISSOCK(entry.lstat().st_mode):
                continue
        except OSError:
            continue
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(str(entry))
            except OSError:
                continue
            return True
    return False
