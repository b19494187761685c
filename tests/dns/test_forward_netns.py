"""Names that are not the mesh's are the host resolver's: /etc/hosts of a test namespace (root).

The server runs inside a namespace that has only loopback, with its own
``hosts`` and a ``resolv.conf`` naming 127.0.0.1 (where nothing listens),
so a lookup can reach no network at all.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from dnslib import RCODE, DNSRecord

from malla.agent import netns

pytestmark = pytest.mark.envoy

SERVE = Path(__file__).with_name("serve_in_netns.py")


@pytest.fixture
def dns_in_namespace():
    name = f"malla-test-{secrets.token_hex(4)}"
    etc = Path("/etc/netns") / name
    proc = None
    try:
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        etc.mkdir(parents=True)
        (etc / "hosts").write_text("127.0.0.1 localhost\n10.77.0.9 printer.corp.test printer\n")
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        proc = subprocess.Popen(
            [*netns.exec_prefix(name), sys.executable, str(SERVE)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        port = int(proc.stdout.readline())
        yield name, port
    finally:
        if proc is not None:
            proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        shutil.rmtree(etc, ignore_errors=True)


def ask(name: str, port: int, qname: str, qtype: str = "A") -> DNSRecord:
    def query() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(10)
            sock.sendto(DNSRecord.question(qname, qtype).pack(), ("127.0.0.1", port))
            return sock.recv(65535)

    return DNSRecord.parse(netns.in_netns(name, query))


def test_forwarded_names_come_from_the_hosts_resolver(dns_in_namespace):
    name, port = dns_in_namespace
    reply = ask(name, port, "printer.corp.test")
    assert (reply.header.rcode, reply.header.aa, [str(r.rdata) for r in reply.rr]) == (RCODE.NOERROR, 0, ["10.77.0.9"])
    # An IPv4-only hosts entry: the AAAA question is answered empty, not sent out.
    assert ask(name, port, "printer.corp.test", "AAAA").rr == []
    unknown = ask(name, port, "nothing.corp.test")
    assert unknown.rr == [] and unknown.header.rcode != RCODE.NOERROR
    # Mesh names never leave the mesh, even when the mesh is empty.
    assert ask(name, port, "printer.default.svc.cluster.local").header.rcode == RCODE.NXDOMAIN
