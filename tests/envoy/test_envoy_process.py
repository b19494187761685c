"""Starting, reading and stopping a real Envoy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from malla.envoy.bootstrap import TcpAddress, build_bootstrap
from malla.envoy.process import EnvoyError, EnvoyProcess

pytestmark = pytest.mark.envoy

STATIC = {
    "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
    "static_resources": {"clusters": [{
        "name": "local", "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "local", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": 9}}}}]}]},
    }]},
}


def test_two_envoys_start_side_by_side_and_answer_admin(
        start_envoy: Callable[..., EnvoyProcess]) -> None:
    first, second = start_envoy(STATIC), start_envoy(STATIC)
    for envoy in (first, second):
        envoy.wait_ready(timeout=10)
        assert envoy.server_state() == "LIVE"
        assert "local" in [c["name"] for c in envoy.clusters()["cluster_statuses"]]
        assert envoy.stat("cluster_manager.active_clusters") == 1
        dump = envoy.config_dump()
        assert any("BootstrapConfigDump" in c["@type"] for c in dump["configs"])
    assert first.admin_address() != second.admin_address()


def test_async_wait_and_clean_stop(start_envoy: Callable[..., EnvoyProcess]) -> None:
    envoy = start_envoy(STATIC)
    asyncio.run(envoy.wait_ready_async(timeout=10))
    assert envoy.running()
    assert envoy.stop() == 0
    assert not envoy.running()


def test_envoy_waiting_for_its_control_plane_is_not_ready(
        start_envoy: Callable[..., EnvoyProcess]) -> None:
    envoy = start_envoy(build_bootstrap(node_id="n", node_cluster="c",
                                        xds_address=TcpAddress("127.0.0.1", 9)))
    with pytest.raises(EnvoyError, match="not LIVE"):
        envoy.wait_ready(timeout=0.5)
    assert envoy.server_state() == "PRE_INITIALIZING"


def test_bad_config_fails_fast_with_envoys_words(tmp_path: Path) -> None:
    envoy = EnvoyProcess({"static_resources": {"clusters": [{"name": ""}]}},
                         workdir=tmp_path / "bad")
    envoy.start()
    try:
        with pytest.raises(EnvoyError, match="exited with code") as caught:
            envoy.wait_ready(timeout=10)
        assert "ClusterValidationError.Name" in str(caught.value)
    finally:
        envoy.stop()
