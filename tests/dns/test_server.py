"""The mesh DNS server over real UDP and TCP sockets on loopback; the host's resolver is a stand-in."""

import socket

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from malla.dns.forward import HostResolver
from malla.dns.hints import Hints, add_hints
from malla.dns.server import MeshDnsServer, query
from malla.pilot.vips import auto_vips

from tests.pilot.mesh import snapshot, workload

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop}
spec: {selector: {app: ratings}, clusterIP: 10.96.0.30, ports: [{name: http, port: 9080}]}
"""
HOSTS = {"printer.corp.test": "10.77.0.9"}


def fake_getaddrinfo(name, port, family=0, type=0, *args):
    """The host's resolver as /etc/hosts with one entry; nothing reaches a network."""
    if name not in HOSTS:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (HOSTS[name], 0))]


@pytest.fixture
def server():
    snap = snapshot(SERVICES, workloads=[workload("reviews-v1", "10.89.0.2")])
    dns = MeshDnsServer(lambda: snap, upstream=HostResolver(getaddrinfo=fake_getaddrinfo))
    dns.start()
    dns.vip = auto_vips(snap.registry.services)[("default", "reviews.default.svc.cluster.local")]
    yield dns
    dns.stop()


def ask(server, name, qtype="A", *, hints=None, tcp=False):
    if hints is None:
        return query(("127.0.0.1", server.port), name, qtype, tcp=tcp)
    data = add_hints(DNSRecord.question(name, qtype).pack(), hints)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(data, ("127.0.0.1", server.port))
        return DNSRecord.parse(sock.recv(65535))


def addresses(reply):
    return [str(rr.rdata) for rr in reply.rr]


def test_mesh_names_over_udp_and_tcp(server):
    for tcp in (False, True):
        reply = ask(server, "reviews.default.svc.cluster.local", tcp=tcp)
        assert (reply.header.rcode, reply.header.aa, addresses(reply)) == (RCODE.NOERROR, 1, [server.vip])


def test_short_names_follow_the_namespace_the_agent_names(server):
    assert addresses(ask(server, "ratings", hints=Hints(namespace="shop"))) == ["10.96.0.30"]
    assert addresses(ask(server, "reviews", hints=Hints(namespace="default"))) == [server.vip]
    # Without a hint a short name is the default namespace's.
    assert addresses(ask(server, "reviews")) == [server.vip]
    # default has no ratings: the name goes to the host's resolver, which does not know it either.
    assert ask(server, "ratings").header.rcode == RCODE.NXDOMAIN


def test_other_types_of_a_mesh_name_are_empty_not_forwarded(server):
    for qtype in ("AAAA", "MX", "TXT"):
        reply = ask(server, "reviews.default.svc.cluster.local", qtype)
        assert (reply.header.rcode, reply.rr) == (RCODE.NOERROR, [])


def test_unknown_mesh_names_are_nxdomain(server):
    reply = ask(server, "nothing.default.svc.cluster.local")
    assert (reply.header.rcode, reply.header.aa) == (RCODE.NXDOMAIN, 1)


def test_other_names_are_the_host_resolvers(server):
    reply = ask(server, "printer.corp.test")
    assert (reply.header.rcode, reply.header.aa, addresses(reply)) == (RCODE.NOERROR, 0, ["10.77.0.9"])
    assert QTYPE[reply.rr[0].rtype] == "A"
    assert ask(server, "printer.corp.test", "AAAA").rr == []
    assert ask(server, "unknown.corp.test").header.rcode == RCODE.NXDOMAIN


def test_the_sidecars_own_lookups_get_the_hosts_answer_only(server):
    HOSTS["reviews"] = "10.1.2.3"
    try:
        mesh = ask(server, "reviews", hints=Hints(namespace="default"))
        host = ask(server, "reviews", hints=Hints(upstream_only=True))
    finally:
        del HOSTS["reviews"]
    assert addresses(mesh) == [server.vip]
    assert addresses(host) == ["10.1.2.3"]
