"""``malla run --controlplane``'s flags: mistakes are named before anything starts (exit 2).

No control plane runs here: each command must stop at its flags, with an
empty home, and say which flag is wrong and what to do.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.mtls.harness import PYTHON, clean_env


def malla_run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "malla", "run", "--name", "reviews", *args, "--", "true"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env=clean_env(MALLA_HOME=str(home)), cwd=home)


@pytest.mark.parametrize(("args", "said"), [
    (("--ca-root", "root.pem"), "add --controlplane HOST"),
    (("--address", "10.0.0.7"), "add --controlplane HOST"),
    (("--controlplane", "127.0.0.1:1", "--join-token", "x", "--address", "not-an-ip"), "--address 'not-an-ip'"),
    (("--controlplane", "127.0.0.1:1", "--join-token-file", "missing.token"), "--join-token-file missing.token"),
    (("--controlplane", "127.0.0.1:1", "--join-token", "x", "--join-token-file", "t"), "not both"),
    (("--controlplane", "127.0.0.1:1"), "needs a join token"),
    (("--controlplane", "127.0.0.1:http", "--join-token", "x"), "--controlplane '127.0.0.1:http'"),
    (("--controlplane", "127.0.0.1:1", "--join-token", "not-a-token"), "not a malla join token"),
])
def test_wrong_remote_flags_are_named(tmp_path: Path, args: tuple[str, ...], said: str) -> None:
    done = malla_run(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    assert said in " ".join(done.stderr.split()), done.stderr
    assert not (tmp_path / "workloads").exists()


def test_an_unreachable_control_plane_is_named(tmp_path: Path) -> None:
    from malla.ca.tokens import JoinTokens

    token = JoinTokens(b"s" * 32).create_token("default", "reviews", ttl=600, ca_hashes=["sha256:" + "0" * 64],
                                               join_port=1)
    (tmp_path / "token").write_text(token)
    done = malla_run(tmp_path, "--controlplane", "127.0.0.1:1", "--join-token-file", "token")
    assert done.returncode == 1
    assert "cannot reach the control plane's join port 127.0.0.1:1" in " ".join(done.stderr.split()), done.stderr


def test_a_wrong_mtls_port_is_named_before_envoy_starts(tmp_path: Path) -> None:
    """The roots are given (nothing to fetch), the token is good: the dead 15012 is what is named, at once."""
    from malla.ca.authority import CertificateAuthority
    from malla.ca.tokens import JoinTokens

    ca = CertificateAuthority.open(tmp_path / "ca")
    (tmp_path / "root.pem").write_bytes(ca.trust_bundle_pem())
    (tmp_path / "token").write_text(JoinTokens(b"s" * 32).create_token("default", "reviews", ttl=600))
    done = malla_run(tmp_path, "--controlplane", "127.0.0.1:1", "--join-token-file", "token",
                     "--ca-root", "root.pem")
    said = " ".join(done.stderr.split())
    assert done.returncode == 1, said
    assert "--controlplane 127.0.0.1:1: cannot reach the control plane's mTLS port" in said
    assert not (tmp_path / "workloads").exists()


@pytest.mark.parametrize("command", [("run", "--name", "reviews", "--", "true"), ("gateway",)])
def test_no_local_control_plane_points_at_both_ways(tmp_path: Path, command: tuple[str, ...]) -> None:
    done = subprocess.run([PYTHON, "-m", "malla", *command], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env=clean_env(MALLA_HOME=str(tmp_path / "home")), cwd=tmp_path)
    said = " ".join(done.stderr.split())
    assert done.returncode == 3, said
    assert "Start one with 'malla up'" in said and "--controlplane HOST[:15012] with a join token" in said
