"""SDS socket directories: an agent killed with SIGKILL leaves one behind; the next agent removes it.

Unit tests sweep a directory of their own with a pretend clock; the end-to-end
test kills a real ``malla run`` with SIGKILL and starts another workload.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from malla.agent.sds_dirs import PREFIX, STALE_AFTER, STALE_AFTER_UNNAMED, make_socket_dir, sweep_stale
from tests.e2e.mesh import wait_for
from tests.mtls.conftest import mesh, namespace  # noqa: F401  (fixtures: a control plane per test)
from tests.mtls.harness import Mesh


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def aged(path: Path, seconds: float) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_directories_of_gone_agents_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    gone = tmp_path / f"{PREFIX}{dead_pid()}-abc"
    mine = tmp_path / f"{PREFIX}{os.getpid()}-def"
    reused = tmp_path / f"{PREFIX}{os.getpid()}-ghi"  # old and silent: its pid was reused since
    old_unnamed = tmp_path / f"{PREFIX}k2j4h5g6"
    new_unnamed = tmp_path / f"{PREFIX}a1b2c3d4"
    other = tmp_path / "malla-envoy-1234"
    for path in (gone, mine, reused, old_unnamed, new_unnamed, other):
        path.mkdir(exist_ok=True)
        (path / "sds.sock").touch()  # a leftover file, no server behind it
    aged(old_unnamed, STALE_AFTER_UNNAMED + 5)
    aged(reused, STALE_AFTER + 5)

    removed = sweep_stale(root=tmp_path)

    assert sorted(p.name for p in removed) == sorted(p.name for p in (gone, reused, old_unnamed))
    assert not gone.exists() and not reused.exists() and not old_unnamed.exists()
    assert mine.exists() and new_unnamed.exists() and other.exists()


def test_a_directory_whose_server_answers_is_never_swept(tmp_path: Path) -> None:
    live = tmp_path / f"{PREFIX}{dead_pid()}-xyz"
    live.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(live / "sds.sock"))
        server.listen(1)
        aged(live, STALE_AFTER + 5)
        assert sweep_stale(root=tmp_path) == []
    assert live.exists()


def test_a_new_directory_is_private_and_named_after_its_agent(tmp_path: Path) -> None:
    made = make_socket_dir(root=tmp_path)
    assert made.name.startswith(f"{PREFIX}{os.getpid()}-")
    assert made.stat().st_mode & 0o777 == 0o700


@pytest.mark.envoy
def test_a_new_agent_removes_the_directory_of_one_killed_with_sigkill(mesh: Mesh, namespace: str) -> None:
    first = mesh.server("reviews", namespace=namespace)
    pattern = f"{PREFIX}{first.proc.pid}-*"
    left = list(Path(tempfile.gettempdir()).glob(pattern))
    assert len(left) == 1 and (left[0] / "sds.sock").exists(), left

    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(10)
    assert left[0].exists(), "SIGKILL leaves the directory behind"

    mesh.server("ratings", namespace=namespace)
    wait_for(lambda: left[0].exists(), lambda exists: not exists, timeout=10,
             what="the killed agent's SDS directory to be removed")
