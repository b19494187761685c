"""Fixtures of the end-to-end suite: one real control plane per test module, one namespace per test.

The control plane is the real ``ControlPlane`` (xDS, HTTP API, push loop)
in this process, on ports the kernel picks, in a temporary home. Workload
addresses come from its address pool, which keeps an address to one mesh
host-wide: xdist workers, each with control planes of their own, never
hand out the same one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from malla.controlplane.server import ControlPlane, ControlPlaneOptions
from malla.pilot.snapshot import XdsMode
from tests.e2e.mesh import Mesh, namespace_for


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    home = tmp_path_factory.mktemp("malla-home")
    cp = ControlPlane(ControlPlaneOptions(home=home, xds_port=0, api_port=0, monitoring_port=0,
                                          ca_port=0, ca_join_port=0))
    cp.start()
    yield cp
    cp.stop()


@pytest.fixture(params=[XdsMode.SOTW, XdsMode.DELTA], ids=["sotw", "delta"])
def xds_mode(request: pytest.FixtureRequest) -> XdsMode:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def mesh(control_plane: ControlPlane, xds_mode: XdsMode, request: pytest.FixtureRequest,
         tmp_path: Path) -> Iterator[Mesh]:
    """This test's namespace and workloads, SotW or Delta; every workload is stopped afterwards."""
    m = Mesh(control_plane, namespace=namespace_for(request.node.name), mode=xds_mode, workdir=tmp_path)
    try:
        yield m
    finally:
        m.close()
