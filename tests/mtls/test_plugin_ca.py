"""Plug-in CA: Istio's ``cacerts`` files placed in ``<home>/ca`` before ``malla up`` sign every workload.

``ca-cert.pem`` (an intermediate), ``ca-key.pem``, ``cert-chain.pem`` and
``root-cert.pem`` (the organisation's root, kept offline), as Istio names
them. The control plane runs detached (``malla up -d``), as a user starts it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.ca.conftest import write_plugin
from tests.controlplane.harness import Mesh as CliMesh
from tests.controlplane.harness import wait_until
from tests.e2e.mesh import UPSTREAM, HttpClient
from tests.mtls.harness import PYTHON, xfcc

pytestmark = pytest.mark.envoy


def test_malla_up_signs_with_plugged_in_ca_files(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    mesh = CliMesh(tmp_path / "home", workdir)
    try:
        root, intermediate = write_plugin(mesh.home / "ca", now=datetime.now(timezone.utc))
        mesh.start()
        ca = mesh.cli_json("ca", "show")["ca"]
        assert ca["pluggedIn"] is True
        assert [r["serial"] for r in ca["roots"]] == [f"{root.serial_number:x}"]
        assert ca["signingCertificate"]["subject"] == intermediate.subject.rfc4514_string()

        info = {name: workdir / f"{name}.json" for name in ("reviews", "productpage")}
        mesh.run("reviews", "-p", "9080/http", command=[PYTHON, str(UPSTREAM), "--info", str(info["reviews"])])
        mesh.run("productpage", command=[PYTHON, str(UPSTREAM), "--client", "--info", str(info["productpage"])])
        certs = wait_until(lambda: _certificates(mesh, 2), timeout=60, what="two workload certificates")
        for cert in certs:
            assert cert["issuer"] == intermediate.subject.rfc4514_string(), cert
            assert [r["serial"] for r in cert["roots"]] == [f"{root.serial_number:x}"]

        client = HttpClient(json.loads(info["productpage"].read_text())["address"])
        reply = wait_until(lambda: _ok(client), timeout=30, what="mTLS between the workloads")
        assert "URI=spiffe://cluster.local/ns/default/sa/productpage" in xfcc(reply)

        refused = mesh.cli("ca", "rotate-root", "begin")
        assert refused.returncode == 1 and "plug-in CA material" in refused.stderr, refused.stderr
    finally:
        mesh.close()


def _certificates(mesh: CliMesh, count: int) -> list[dict[str, object]] | None:
    certs = mesh.cli_json("status")["certificates"]
    return certs if len(certs) == count and all(c["state"] == "VALID" for c in certs) else None


def _ok(client: HttpClient) -> object:
    reply = client.get("http://reviews:9080/")
    return reply if reply.status == 200 else None
