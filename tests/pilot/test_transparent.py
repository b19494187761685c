"""Transparent capture: Istio's virtualOutbound/virtualInbound layout."""

from malla.pilot.generate import generate
from malla.pilot.protocol import Protocol
from malla.pilot.resources import LISTENER, ROUTE
from malla.pilot.simulate import Request, simulate
from malla.pilot.snapshot import CaptureMode, MeshConfig

from tests.pilot.mesh import sidecar, snapshot

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec: {selector: {app: reviews}, clusterIP: 10.96.0.10, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {selector: {app: db}, clusterIP: 10.96.0.20, ports: [{name: tcp, port: 5432}]}
"""


def resources(mesh=None):
    proxy = sidecar("client", ip="10.0.0.5", capture=CaptureMode.TRANSPARENT, inbound=[(8000, 8000, Protocol.HTTP)])
    return generate(proxy, snapshot(SERVICES, mesh=mesh))


def test_istio_listener_layout():
    res = resources()
    assert list(res[LISTENER]) == ["0.0.0.0_9080", "10.96.0.20_5432", "virtualInbound", "virtualOutbound"]
    assert not res[LISTENER]["0.0.0.0_9080"].bind_to_port.value
    assert res[LISTENER]["virtualOutbound"].use_original_dst.value
    assert list(res[ROUTE]) == ["9080", "inbound|8000||"]


def test_http_by_port_and_bare_names():
    res = resources()
    r = simulate(res, Request(port=9080, address="10.96.0.10", host="reviews"))
    assert (r.listener, r.route_config, r.cluster) == (
        "0.0.0.0_9080",
        "9080",
        "outbound|9080||reviews.default.svc.cluster.local",
    )


def test_tcp_by_vip_and_unknown_destinations_pass_through_or_are_dropped():
    res = resources()
    db = simulate(res, Request(port=5432, address="10.96.0.20", protocol="tcp"))
    assert db.cluster == "outbound|5432||db.default.svc.cluster.local"
    elsewhere = simulate(res, Request(port=443, address="93.184.216.34", protocol="tcp"))
    assert (elsewhere.listener, elsewhere.cluster) == ("virtualOutbound", "PassthroughCluster")
    strict = resources(MeshConfig(outbound_traffic_policy="REGISTRY_ONLY"))
    assert simulate(strict, Request(port=443, address="93.184.216.34", protocol="tcp")).cluster == "BlackHoleCluster"


def test_inbound_capture_on_15006():
    res = resources()
    declared = simulate(res, Request(listener="virtualInbound", port=8000, host="client"))
    assert declared.cluster == "inbound|8000||"
    other = simulate(res, Request(listener="virtualInbound", port=7777, protocol="tcp"))
    assert (other.filter_chain, other.cluster) == ("InboundPassthroughCluster", "InboundPassthroughCluster")
