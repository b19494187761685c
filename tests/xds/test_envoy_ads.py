"""Real Envoy against the real ADS server, in SotW and Delta: traffic is the proof."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from malla.envoy.bootstrap import Address, TcpAddress, UnixAddress, build_bootstrap
from malla.envoy.process import EnvoyProcess
from malla.xds.cache import SnapshotCache
from malla.xds.protocol import SyncState
from malla.xds.runner import XdsServerThread
from malla.xds.server import ProxyStatus
from tests.xds.harness import (
    Upstream,
    assignment,
    broken_cluster,
    eds_cluster,
    http_get,
    http_listener,
    route_to,
    snapshot,
    wait_for,
)

pytestmark = pytest.mark.envoy


class Mesh:
    """One ADS server, one Envoy, two upstreams (a and b) on loopback."""

    def __init__(self, *, mode: str, start_envoy: Callable[..., EnvoyProcess],
                 tmp_path: Path) -> None:
        self.mode = mode
        self.node_id = f"sidecar~{uuid.uuid4().hex[:8]}"
        self.cache = SnapshotCache()
        self.server = XdsServerThread(self.cache, tcp=("127.0.0.1", 0))
        self.a, self.b = Upstream("a"), Upstream("b")
        self._start_envoy = start_envoy
        self._tmp = tmp_path
        self.envoy: EnvoyProcess | None = None
        self.port = 0

    def snapshot(self, *, route: str = "svc-a", ports: tuple[int, int] | None = None,
                 extra: tuple[Any, ...] = (), timeout_a: int = 1) -> dict[str, Any]:
        port_a, port_b = ports or (self.a.port, self.b.port)
        return snapshot(
            http_listener("http", route_config="local"), route_to("local", route),
            eds_cluster("svc-a", connect_timeout_s=timeout_a), assignment("svc-a", port_a),
            eds_cluster("svc-b"), assignment("svc-b", port_b), *extra)

    def start(self, snap: dict[str, Any], *, xds: Address | None = None) -> None:
        self.cache.set_snapshot(self.node_id, snap)
        if self.server.server is None:
            self.server.start()
        bootstrap = build_bootstrap(
            node_id=self.node_id, node_cluster="test", mode=self.mode,  # type: ignore[arg-type]
            xds_address=xds or TcpAddress("127.0.0.1", self.server.port or 0),
            reconnect_backoff_s=(0.05, 0.25))
        self.envoy = self._start_envoy(bootstrap)
        self.envoy.wait_ready(timeout=10)
        self.port = self.envoy.listener_port("http")

    def body(self) -> str:
        status, body = http_get(self.port)
        return body if status == 200 else f"{status}: {body[:80]}"

    def wait_body(self, expected: str, *, timeout: float = 5.0) -> None:
        wait_for(self.body, lambda body: body == expected, timeout=timeout,
                 what=f"traffic to reach upstream {expected!r}")

    def status(self) -> ProxyStatus | None:
        found = [s for s in self.server.status() if s.node_id == self.node_id]
        return found[0] if found else None

    def wait_synced(self, *, timeout: float = 5.0) -> ProxyStatus:
        def synced(status: ProxyStatus | None) -> bool:
            return status is not None and len(status.types) == 4 and all(
                t.state == SyncState.SYNCED for t in status.types)
        found = wait_for(self.status, synced, timeout=timeout, what="every type SYNCED")
        assert found is not None
        return found

    def rejected_updates(self) -> dict[str, int | str]:
        assert self.envoy is not None
        return {k: v for k, v in self.envoy.stats(filter_regex="update_rejected$").items() if v}

    def close(self) -> None:
        self.server.stop()
        self.a.close()
        self.b.close()


@pytest.fixture(params=["sotw", "delta"])
def mesh(request: pytest.FixtureRequest, start_envoy: Callable[..., EnvoyProcess],
         tmp_path: Path) -> Iterator[Mesh]:
    built = Mesh(mode=request.param, start_envoy=start_envoy, tmp_path=tmp_path)
    yield built
    built.close()


def test_request_through_envoy_reaches_the_upstream(mesh: Mesh) -> None:
    mesh.start(mesh.snapshot())
    assert mesh.body() == "a"
    status = mesh.wait_synced()
    assert status.mode == ("Delta" if mesh.mode == "delta" else "SotW")
    assert [t.short_name for t in status.types] == ["CDS", "EDS", "LDS", "RDS"]


def test_route_change_moves_traffic(mesh: Mesh) -> None:
    mesh.start(mesh.snapshot(route="svc-a"))
    assert mesh.body() == "a"
    mesh.cache.set_snapshot(mesh.node_id, mesh.snapshot(route="svc-b"))
    mesh.wait_body("b")
    mesh.wait_synced()


def test_endpoint_change_reaches_envoy(mesh: Mesh) -> None:
    mesh.start(mesh.snapshot())
    assert mesh.body() == "a"
    mesh.cache.set_snapshot(mesh.node_id, mesh.snapshot(ports=(mesh.b.port, mesh.b.port)))
    mesh.wait_body("b")
    mesh.wait_synced()


def test_cluster_config_change_keeps_endpoints_without_a_stall(mesh: Mesh) -> None:
    mesh.start(mesh.snapshot())
    mesh.cache.set_snapshot(mesh.node_id, mesh.snapshot(timeout_a=2))
    assert mesh.envoy is not None
    # Envoy re-creates the cluster and needs its endpoints again; without them
    # it would stay warming for 15 s.
    wait_for(lambda: mesh.envoy.stat("cluster_manager.warming_clusters"),
             lambda n: n == 0, timeout=3, what="no warming clusters")
    mesh.wait_synced()
    assert mesh.body() == "a"


def test_rejected_cluster_is_reported_not_resent_and_old_config_serves(mesh: Mesh) -> None:
    mesh.start(mesh.snapshot())
    mesh.wait_synced()
    mesh.cache.set_snapshot(mesh.node_id, mesh.snapshot(extra=(broken_cluster("bad"),)))

    def cds(status: ProxyStatus | None) -> Any:
        return next((t for t in status.types if t.short_name == "CDS"), None) if status else None

    rejected = wait_for(lambda: cds(mesh.status()),
                        lambda t: t is not None and t.state == SyncState.REJECTED,
                        what="CDS REJECTED")
    assert rejected.rejected == ("bad",)
    assert rejected.error  # Envoy's own words; shown, never parsed
    responses = rejected.responses
    time.sleep(0.5)
    after = cds(mesh.status())
    assert (after.state, after.responses) == (SyncState.REJECTED, responses)
    assert mesh.rejected_updates() == {"cluster_manager.cds.update_rejected": 1}
    assert mesh.body() == "a"
    mesh.cache.set_snapshot(mesh.node_id, mesh.snapshot(route="svc-b"))
    mesh.wait_body("b")
    mesh.wait_synced()


def test_server_restart_while_envoy_runs(mesh: Mesh) -> None:
    mesh.start(mesh.snapshot())
    mesh.wait_synced()
    port = mesh.server.port
    mesh.server.stop()
    assert mesh.body() == "a"  # Envoy keeps serving its last config
    assert mesh.envoy is not None
    wait_for(lambda: mesh.envoy.stat("control_plane.connected_state"), lambda v: v == 0,
             what="Envoy to notice the control plane is gone")
    # A new process: fresh cache, same address, changed cluster and route.
    mesh.cache = SnapshotCache()
    mesh.cache.set_snapshot(mesh.node_id, mesh.snapshot(route="svc-b", timeout_a=2))
    mesh.server = XdsServerThread(mesh.cache, tcp=("127.0.0.1", port or 0))
    mesh.server.start()
    mesh.wait_body("b")
    mesh.wait_synced()
    wait_for(lambda: mesh.envoy.stat("cluster_manager.warming_clusters"),
             lambda n: n == 0, timeout=3, what="no warming clusters")
    assert mesh.rejected_updates() == {}


def test_envoy_reaches_the_server_over_a_unix_socket(mesh: Mesh, tmp_path: Path) -> None:
    path = str(tmp_path / "xds.sock")
    mesh.server = XdsServerThread(mesh.cache, tcp=None, unix_path=path)
    mesh.server.start()
    mesh.start(mesh.snapshot(), xds=UnixAddress(path))
    assert mesh.body() == "a"
    mesh.wait_synced()
