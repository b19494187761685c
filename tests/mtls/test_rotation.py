"""Certificates rotate under traffic without losing a request.

Both workloads run with a short certificate lifetime (``malla run
--cert-ttl``), so their agents renew every few seconds. A DestinationRule
allows one request per connection: every request is a new mTLS handshake,
made with whatever certificates the sidecars hold at that moment.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from tests.e2e.mesh import wait_for
from tests.mtls.harness import Mesh, xfcc

pytestmark = pytest.mark.envoy

URL = "http://reviews:9080/"
ROTATIONS = 10
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


def test_continuous_traffic_across_ten_rotations_loses_no_request(mesh: Mesh, namespace: str) -> None:
    server = mesh.server("reviews", "--cert-ttl", "6s", namespace=namespace)
    client = mesh.client("productpage", "--cert-ttl", "6s", namespace=namespace)
    mesh.apply(ONE_REQUEST_PER_CONNECTION, namespace=namespace)
    statuses: list[int | str] = []
    client_certs: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        http = client.http()
        while not stop.is_set():
            try:
                reply = http.get(URL)
            except OSError as exc:  # a request lost on the way: counted, and the next one goes on
                statuses.append(f"{time.time():.3f} {exc!r}")
                http.close()
                continue
            statuses.append(reply.status)
            if reply.status == 200:
                client_certs.append(re.search(r"Hash=([0-9a-f]+)", xfcc(reply)).group(1))  # type: ignore[union-attr]
        http.close()

    before = [mesh.identity(w)["rotations"] for w in (server, client)]
    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        wait_for(lambda: [mesh.identity(w)["rotations"] for w in (server, client)],
                 lambda counts: all(now >= then + ROTATIONS for now, then in zip(counts, before)),
                 timeout=300, interval=0.5, what=f"both workloads to rotate {ROTATIONS} times under traffic")
    finally:
        stop.set()
        thread.join(30)

    failed = [s for s in statuses if s != 200]
    assert not failed, f"{len(failed)} of {len(statuses)} requests failed: {failed[:10]}"
    # The server saw the client's rotated certificates: each one was used for new handshakes.
    assert len(set(client_certs)) >= ROTATIONS, f"{len(set(client_certs))} client certificates seen"
    for workload in (server, client):
        report = mesh.identity(workload)
        assert report["state"] == "VALID" and report["failures"] == 0, report
