"""Replacing the CA's root under traffic: ``malla ca rotate-root begin``, ``activate``, ``retire``.

Each step waits for what the agents report (``malla ca show``): every
workload trusts the new root before it signs, and every workload holds a
certificate from it before the old root is dropped. Certificates live 4 s
so each wait is a few renewals; every request is a new mTLS handshake.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from malla.cli.ca_cmd import not_ready
from tests.e2e.mesh import wait_for
from tests.mtls.harness import Mesh

pytestmark = pytest.mark.envoy

URL = "http://reviews:9080/"
ONE_REQUEST_PER_CONNECTION = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      http:
        maxRequestsPerConnection: 1
"""


def test_the_root_is_replaced_without_losing_a_request(mesh: Mesh, namespace: str) -> None:
    workloads = [mesh.server("reviews", "--cert-ttl", "4s", namespace=namespace),
                 mesh.client("productpage", "--cert-ttl", "4s", namespace=namespace)]
    mesh.apply(ONE_REQUEST_PER_CONNECTION, namespace=namespace)
    old = mesh.cli_json("ca", "show")["ca"]["signingRoot"]
    statuses: list[int | str] = []
    stop = threading.Event()

    def traffic() -> None:
        http = workloads[1].http()
        while not stop.is_set():
            try:
                statuses.append(http.get(URL).status)
            except OSError as exc:
                statuses.append(repr(exc))
                http.close()

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        begun = rotate(mesh, "begin")
        assert begun["rotation"] == "staged" and len(begun["roots"]) == 2
        new = next(r for r in begun["roots"] if r["serial"] != old["serial"])
        wait_for(mesh.identities, lambda items: all(new["serial"] in roots(i) for i in items), timeout=120,
                 what="every workload to trust the new root")

        activated = rotate(mesh, "activate")
        assert activated["signingRoot"]["serial"] == new["serial"] and activated["rotation"] == "overlap"
        wait_for(mesh.identities, lambda items: all(i["issuer"] == new["subject"] for i in items), timeout=120,
                 what="every workload to hold a certificate from the new root")

        retired = rotate(mesh, "retire")
        assert [r["serial"] for r in retired["roots"]] == [new["serial"]] and retired["rotation"] == "steady"
        wait_for(mesh.identities, lambda items: all(roots(i) == [new["serial"]] for i in items), timeout=120,
                 what="every workload to trust the new root only")
    finally:
        stop.set()
        thread.join(30)
    failed = [s for s in statuses if s != 200]
    assert statuses and not failed, f"{len(failed)} of {len(statuses)} requests failed: {failed[:10]}"


def roots(item: dict[str, Any]) -> list[str]:
    return [r["serial"] for r in item["roots"]]


def rotate(mesh: Mesh, step: str) -> dict[str, Any]:
    done = mesh.cli("ca", "rotate-root", step, "-o", "json")
    assert done.returncode == 0, f"malla ca rotate-root {step}:\n{done.stdout}{done.stderr}"
    return dict(json.loads(done.stdout))


def test_a_step_that_would_break_mtls_is_refused_until_every_workload_caught_up() -> None:
    old = {"serial": "01", "subject": "CN=old"}
    new = {"serial": "02", "subject": "CN=new"}
    staged = {"signingRoot": old, "roots": [old, new]}
    behind = {"nodeId": "sidecar~127.0.1.9~reviews-1.default~d", "roots": [{"serial": "01"}], "issuer": "CN=old"}
    ahead = {"nodeId": "sidecar~127.0.1.8~ratings-1.default~d", "roots": [{"serial": "01"}, {"serial": "02"}],
             "issuer": "CN=old"}
    assert not_ready("activate", staged, [behind, ahead]) == ["reviews-1.default does not trust the new root yet"]
    assert not_ready("activate", staged, [ahead]) == []
    overlap = {"signingRoot": new, "roots": [old, new]}
    assert not_ready("retire", overlap, [ahead]) == ["ratings-1.default holds a certificate from the old root"]
    assert not_ready("retire", overlap, [ahead | {"issuer": "CN=new"}]) == []
