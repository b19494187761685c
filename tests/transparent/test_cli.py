"""``malla run`` refuses transparent-mode options it cannot honour before starting anything."""

import subprocess
import sys

from tests.controlplane.harness import clean_env


def malla_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "malla", "run", "--name", "web", *args, "--", "true"],
        capture_output=True, text=True, timeout=60, env=clean_env(), stdin=subprocess.DEVNULL,
    )


def test_netns_needs_transparent():
    done = malla_run("--netns", "malla-web")
    assert done.returncode == 2
    assert "--netns names the namespace of a --transparent workload" in done.stderr


def test_a_bad_namespace_name_is_named():
    done = malla_run("--transparent", "--netns", "bad name/../x")
    assert done.returncode == 2
    assert "--netns 'bad name/../x'" in done.stderr
