"""``malla dashboard``: the running control plane's console URL, opened in a browser when there is one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.console.conftest import ConsoleMesh

pytestmark = pytest.mark.xdist_group("console")


def malla(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER") and not k.startswith("MALLA_") and not k.lower().endswith("_proxy")}
    return subprocess.run([sys.executable, "-m", "malla", "dashboard", *args], env={**base, "MALLA_HOME": str(home), **env},
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_prints_the_console_url_of_the_running_control_plane(console_mesh: ConsoleMesh) -> None:
    done = malla("--no-browser", home=console_mesh.home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == console_mesh.api + "/console/graph"
    assert httpx.get(done.stdout.strip(), timeout=30, trust_env=False).status_code == 200
    proxies = malla("proxies", "--no-browser", home=console_mesh.home)
    assert proxies.stdout.strip() == console_mesh.api + "/console/proxies"


def test_opens_the_browser_the_user_named(console_mesh: ConsoleMesh, tmp_path: Path) -> None:
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.py"
    browser.write_text(f"import sys\nopen({str(opened)!r}, 'w').write(sys.argv[1])\n")
    done = malla(home=console_mesh.home, BROWSER=f"{sys.executable} {browser} %s")
    assert done.returncode == 0, done.stderr
    assert opened.read_text() == console_mesh.api + "/console/graph"


def test_without_a_graphical_browser_it_says_so(console_mesh: ConsoleMesh) -> None:
    done = malla(home=console_mesh.home)
    assert done.returncode == 0
    assert done.stdout.strip() == console_mesh.api + "/console/graph"
    assert "no graphical browser here: open the URL above in yours" in done.stderr


def test_no_control_plane_is_exit_3_with_a_way_out(tmp_path: Path) -> None:
    done = malla("--no-browser", home=tmp_path / "nothing-here")
    assert done.returncode == 3
    assert "no control plane is running for home" in done.stderr and "malla up" in done.stderr
