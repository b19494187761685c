"""TCP services end to end: the client dials its own sidecar's address at the service port."""

from __future__ import annotations

import pytest

from tests.e2e.mesh import App, Mesh, shares, tcp_line

pytestmark = pytest.mark.envoy

TCP_SPLIT = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tcpecho}
spec:
  host: tcpecho
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcpecho}
spec:
  hosts: [tcpecho]
  tcp:
  - match:
    - port: 9000
    route:
    - destination: {host: tcpecho, subset: v1, port: {number: 9000}}
      weight: 80
    - destination: {host: tcpecho, subset: v2, port: {number: 9000}}
      weight: 20
"""


def test_tcp_route_splits_connections_by_weight(mesh: Mesh) -> None:
    tcp = ("9000/tcp",)
    *_, client = mesh.start(App("tcpecho", "v1", ports=tcp), App("tcpecho", "v2", ports=tcp), clients=1)
    assert {tcp_line(client.address, 9000).split()[0] for _ in range(5)} == {"tcpecho"}
    mesh.apply(TCP_SPLIT)
    seen = shares(tcp_line(client.address, 9000).split()[1] for _ in range(500))
    assert set(seen) == {"v1", "v2"}, seen
    assert abs(seen["v1"] - 80) <= 7.5 and abs(seen["v2"] - 20) <= 7.5, seen
