"""Fixtures of the identity suite: a control plane of its own per test, one namespace per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mesh import namespace_for
from tests.mtls.harness import Mesh


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    workdir = tmp_path / "work"
    workdir.mkdir()
    m = Mesh(tmp_path / "home", workdir)
    try:
        yield m
    finally:
        m.close()


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    return namespace_for(request.node.name)
