"""The namespace, its capture rules and the agent's relays, without Envoy (root).

The test plays Envoy: it listens on 15001/15006 inside the namespace and
reads where captured connections were going. Every destination is either
captured before it leaves the namespace, or on loopback.
"""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from malla.agent import netns
from malla.agent.relay import Relays, original_destination
from malla.dns.forward import HostResolver
from malla.dns.hints import Hints
from malla.dns.server import MeshDnsServer

from tests.pilot.mesh import snapshot, workload
from tests.transparent.conftest import new_netns_name, remove_netns
from tests.transparent.workloads import assert_gone, host_interface_of

pytestmark = pytest.mark.envoy


def in_ns(link: netns.Link, *command: str, as_proxy: bool = False, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*netns.exec_prefix(link.netns, as_proxy=as_proxy), *command],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def accept_from(listener: socket.socket, *, timeout: float = 10.0) -> socket.socket:
    listener.settimeout(timeout)
    conn, _ = listener.accept()
    return conn


def pending(listener: socket.socket) -> bool:
    return bool(select.select([listener], [], [], 0.2)[0])


def iptables_nat_of_host() -> str:
    out = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith("#"))


def test_namespace_rules_and_cleanup_leave_the_host_as_it_was():
    host_nat = iptables_nat_of_host()
    link = netns.allocate_link(new_netns_name())
    try:
        netns.create(link, hosts=netns.hosts_file(ns_address=link.ns_address, hostname="web"),
                     resolv_conf=netns.resolv_conf(namespace="shop"), rules=netns.capture_rules())
        rules = in_ns(link, "iptables-save").stdout
        for rule in (
            "-A PREROUTING -p tcp -j ISTIO_INBOUND",
            "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
            "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
            "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
        ):
            assert rule in rules
        assert (Path("/etc/netns") / link.netns / "resolv.conf").read_text().startswith(
            "nameserver 127.0.0.11\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\n"
        )
        host_interface = host_interface_of(link.netns, link.host_interface)
        assert iptables_nat_of_host() == host_nat
    finally:
        problems = netns.delete(link)
        remove_netns(link.netns)
    assert problems == []
    assert_gone(link.netns, host_interface)
    assert iptables_nat_of_host() == host_nat


def test_the_apps_connections_are_captured_and_loopback_is_left_alone(workload_netns):
    ns = workload_netns.netns
    outbound = netns.listen(ns, "0.0.0.0", netns.OUTBOUND_CAPTURE_PORT)
    inbound = netns.listen(ns, "0.0.0.0", netns.INBOUND_CAPTURE_PORT)
    local = netns.listen(ns, "127.0.0.1", 7070)
    with outbound, inbound, local:
        # To a mesh VIP, and to the host side of the veth: both end at 15001, neither leaves.
        for destination in (("240.240.0.7", 9080), (workload_netns.host_address, 9999)):
            with netns.connect(ns, *destination, timeout=10):
                with accept_from(outbound) as conn:
                    assert original_destination(conn) == destination
        # From the root namespace to the workload's address: 15006, original destination kept.
        with socket.create_connection((workload_netns.ns_address, 9080), timeout=10):
            with accept_from(inbound) as conn:
                assert original_destination(conn) == (workload_netns.ns_address, 9080)
        # The app to its own loopback: not captured.
        with netns.connect(ns, "127.0.0.1", 7070, timeout=10):
            accept_from(local).close()
        assert not pending(outbound)


@pytest.fixture
def echo_on_host_loopback():
    """A TCP server on 127.0.0.2 in the root namespace, where the mesh's explicit workloads live."""
    server = socket.create_server(("127.0.0.2", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"echo " + conn.recv(100))

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()
    server.close()


def test_the_proxys_connections_leave_through_the_agents_relay(workload_netns, echo_on_host_loopback):
    ns = workload_netns.netns
    relays = Relays(ns)
    try:
        relays.tcp(netns.listen(ns, "127.0.0.1", netns.EGRESS_RELAY_PORT), target=None)
        host, port = echo_on_host_loopback
        client = (
            "import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10); "
            "s.sendall(b'hello'); print(s.recv(100).decode())"
        )
        done = in_ns(workload_netns, sys.executable, "-c", client, host, str(port), as_proxy=True)
        assert (done.returncode, done.stdout.strip()) == (0, "echo hello"), done.stderr
        # The relay serves the sidecar only: the app cannot use it to skip capture.
        with pytest.raises(ConnectionRefusedError):
            netns.connect(ns, "127.0.0.1", netns.EGRESS_RELAY_PORT, timeout=10)
    finally:
        relays.close()


HOSTS = {"reviews": "10.1.2.3"}


def host_lookup(name, port, family=0, type=0, *args):
    if name not in HOSTS:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (HOSTS[name], 0))]


@pytest.fixture
def mesh_dns():
    snap = snapshot(
        """
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop}
spec: {selector: {app: ratings}, clusterIP: 10.96.0.30, ports: [{name: http, port: 9080}]}
""",
        workloads=[workload("reviews-v1", "127.0.1.7")],
    )
    server = MeshDnsServer(lambda: snap, upstream=HostResolver(getaddrinfo=host_lookup))
    server.start()
    yield server
    server.stop()


def test_dns_inside_the_namespace(workload_netns, mesh_dns):
    ns = workload_netns.netns
    relays = Relays(ns)
    try:
        upstream = ("127.0.0.1", mesh_dns.port)
        for address, port, hints in (
            (netns.APP_NAMESERVER, 53, Hints(namespace="default")),
            ("127.0.0.1", netns.PROXY_DNS_PORT, Hints(upstream_only=True)),
        ):
            relays.dns(udp=netns.listen(ns, address, port, kind=socket.SOCK_DGRAM),
                       tcp=netns.listen(ns, address, port), upstream=upstream, hints=hints)
        app = {name: in_ns(workload_netns, "getent", "hosts", name) for name in ("reviews", "ratings.shop")}
        assert app["reviews"].stdout.split()[0].startswith("240.240."), app["reviews"]
        assert app["ratings.shop"].stdout.split()[0] == "10.96.0.30", app["ratings.shop"]
        # Envoy's own lookups (uid 1337) get the host's answer: a VIP would send it back to itself.
        proxy = in_ns(workload_netns, "getent", "hosts", "reviews", as_proxy=True)
        assert proxy.stdout.split()[0] == "10.1.2.3", proxy
    finally:
        relays.close()


def test_requirements_are_named_with_their_package(monkeypatch):
    monkeypatch.setattr(netns.shutil, "which", lambda cmd, path=None: None if cmd == "iptables-restore" else "/x")
    with pytest.raises(netns.NetnsError, match=r"iptables-restore \(Debian package iptables\).*apt-get install iptables"):
        netns.check_requirements()
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    with pytest.raises(netns.NetnsError, match="needs root"):
        netns.check_requirements()


def test_a_test_namespace_name_is_cleaned_even_when_half_made():
    name = new_netns_name()
    subprocess.run(["ip", "netns", "add", name], check=True)
    remove_netns(name)
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
