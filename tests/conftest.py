"""Shared fixtures that start real Envoy processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from malla.envoy.process import EnvoyProcess


@pytest.fixture
def start_envoy(tmp_path: Path) -> Iterator[Callable[..., EnvoyProcess]]:
    """Start Envoys (`--concurrency 1`, dynamic base id, admin port 0); stopped after the test."""
    started: list[EnvoyProcess] = []

    def start(config: dict[str, Any] | str | Path, *, name: str = "envoy",
              **kwargs: Any) -> EnvoyProcess:
        workdir = tmp_path / f"{name}-{len(started)}"
        envoy = EnvoyProcess(config, workdir=workdir, concurrency=1, **kwargs)
        started.append(envoy)
        return envoy.start()

    yield start
    for envoy in reversed(started):
        envoy.stop()
