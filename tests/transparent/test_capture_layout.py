"""Transparent capture of workloads that have no cluster IP: where a captured connection goes.

The golden case ``tests/pilot/golden/transparent-workloads`` holds the whole
config; here requests are followed through it (``malla.pilot.simulate``).
"""

import ipaddress

from malla.dns.names import resolve_name
from malla.pilot.generate import generate
from malla.pilot.simulate import Request, simulate
from malla.pilot.snapshot import CaptureMode
from malla.pilot.protocol import Protocol
from malla.pilot.vips import VIP_NETWORK, auto_vips

from tests.pilot.mesh import sidecar, snapshot, workload

WORKLOADS = [
    workload("reviews-v1", "127.0.1.7"),
    workload("db", "127.0.1.9", ports={"tcp-pg": 5432}),
    workload("replica", "127.0.1.10", ports={"tcp-pg": 5432}),
]


def frontend_config():
    snap = snapshot(workloads=WORKLOADS)
    proxy = sidecar("frontend", ip="10.89.0.2", capture=CaptureMode.TRANSPARENT, inbound=[(9080, 9080, Protocol.HTTP)])
    return snap, generate(proxy, snap)


def vip(snap, name):
    answer = resolve_name(snap, name, namespace="default")
    (address,) = answer.ipv4
    return address


def test_two_tcp_services_on_one_port_are_told_apart_by_the_vips_dns_answers():
    snap, config = frontend_config()
    db, replica = vip(snap, "db"), vip(snap, "replica")
    assert db != replica and all(ipaddress.ip_address(a) in VIP_NETWORK for a in (db, replica))
    to_db = simulate(config, Request(port=5432, address=db, protocol="tcp"))
    to_replica = simulate(config, Request(port=5432, address=replica, protocol="tcp"))
    assert to_db.cluster == "outbound|5432||db.default.svc.cluster.local"
    assert to_replica.cluster == "outbound|5432||replica.default.svc.cluster.local"


def test_http_by_host_whatever_address_dns_gave():
    snap, config = frontend_config()
    r = simulate(config, Request(port=9080, address=vip(snap, "reviews"), host="reviews:9080"))
    assert (r.listener, r.route_config, r.cluster) == (
        "0.0.0.0_9080", "9080", "outbound|9080||reviews.default.svc.cluster.local",
    )


def test_a_direct_connection_to_an_address_is_captured_and_passed_through():
    _snap, config = frontend_config()
    tcp = simulate(config, Request(port=5432, address="10.89.0.6", protocol="tcp"))
    assert (tcp.listener, tcp.cluster) == ("virtualOutbound", "PassthroughCluster")
    http = simulate(config, Request(port=9080, address="10.89.0.6", host="10.89.0.6:9080"))
    assert (http.listener, http.cluster) == ("0.0.0.0_9080", "PassthroughCluster")


def test_vips_are_stable_when_other_services_come_and_go():
    before = auto_vips(snapshot(workloads=WORKLOADS).registry.services)
    more = [*WORKLOADS, *(workload(f"svc{i}", f"127.0.2.{i}") for i in range(1, 40))]
    after = auto_vips(snapshot(workloads=more).registry.services)
    assert {k: after[k] for k in before} == dict(before)
    assert len(set(after.values())) == len(after)


def test_services_with_addresses_or_passthrough_get_no_vip():
    snap = snapshot(
        """
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec: {selector: {app: ratings}, clusterIP: 10.96.0.31, ports: [{name: http, port: 9080}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wiki}
spec: {hosts: ["*.wikipedia.org"], resolution: NONE, ports: [{number: 443, name: tls, protocol: TLS}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: any-db}
spec: {hosts: [db.corp.test], resolution: NONE, ports: [{number: 5432, name: tcp, protocol: TCP}]}
""",
        workloads=WORKLOADS,
    )
    vips = auto_vips(snap.registry.services)
    assert {host for _ns, host in vips} == {
        "reviews.default.svc.cluster.local", "db.default.svc.cluster.local", "replica.default.svc.cluster.local",
    }
