"""Fixtures of the end-to-end suite: one real control plane per test module, one namespace per test.

The control plane is the real ``ControlPlane`` (xDS, HTTP API, push loop)
in this process, on ports the kernel picks, in a temporary home. Its
workload addresses come from a loopback range of its own (127.A.B.0/24,
derived from the process id), so xdist workers, and anyone else's mesh on
this host, never hand out the same address.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from malla.controlplane.addresses import AddressPool
from malla.controlplane.server import ControlPlane, ControlPlaneOptions
from malla.pilot.snapshot import XdsMode
from tests.e2e.mesh import Mesh, namespace_for

_planes = itertools.count()


def _address_range() -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    # 127.64.0.0-127.253.255.0 in /24 steps: away from malla's default 127.0.1.0/16.
    seed = hashlib.sha256(f"{os.getpid()}-{next(_planes)}".encode()).digest()
    block = int.from_bytes(seed[:4], "big") % (190 * 256)
    base = f"127.{64 + block // 256}.{block % 256}"
    return ipaddress.IPv4Address(f"{base}.1"), ipaddress.IPv4Address(f"{base}.254")


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    home = tmp_path_factory.mktemp("malla-home")
    cp = ControlPlane(ControlPlaneOptions(home=home, xds_port=0, api_port=0, monitoring_port=0))
    first, last = _address_range()
    cp.discovery.orphan_listeners.remove(cp.addresses.release_owner)
    cp.addresses = AddressPool(first=first, last=last)
    cp.discovery.orphan_listeners.append(cp.addresses.release_owner)
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
