"""The mesh DNS server: dnslib's UDP and TCP servers in front of ``names`` and ``forward``.

Each query reads the control plane's current ``MeshSnapshot`` (a callable,
so the server never holds a stale one), takes the agent's hints off it
(``hints``: which namespace asks, or "the host's answer only"), and answers
mesh names itself (authoritative, short TTL), unknown mesh-domain names
with NXDOMAIN, and everything else through the host's resolver. Both
servers run on daemon threads with a thread per query (dnslib's
socketserver classes), so a slow forwarded lookup holds up no other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSServer

from malla.dns.forward import HostResolver
from malla.dns.hints import take_hints
from malla.dns.names import Outcome, resolve_name
from malla.pilot.snapshot import MeshSnapshot

log = logging.getLogger(__name__)

MESH_TTL = 10  # short: a service's endpoints (headless) and VIPs follow the registry
DEFAULT_NAMESPACE = "default"


class MeshResolver(BaseResolver):  # type: ignore[misc]
    """dnslib's resolver interface: request in, reply out (called on many threads at once)."""

    def __init__(self, snapshot: Callable[[], MeshSnapshot], *, upstream: HostResolver) -> None:
        self._snapshot = snapshot
        self.upstream = upstream

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        hints = take_hints(request)
        if request.header.opcode != 0 or not request.questions:
            reply = request.reply()
            reply.header.rcode = RCODE.NOTIMP
            return reply
        if hints.upstream_only:
            return self.upstream.answer(request)
        answer = resolve_name(self._snapshot(), str(request.q.qname), namespace=hints.namespace or DEFAULT_NAMESPACE)
        if answer.outcome is Outcome.FORWARD:
            return self.upstream.answer(request)
        reply = request.reply()  # authoritative, recursion available
        if answer.outcome is Outcome.NXDOMAIN:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        qtype, qname = request.q.qtype, request.q.qname
        if qtype in (QTYPE.A, QTYPE.ANY):
            for address in answer.ipv4:
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(address), ttl=MESH_TTL))
        if qtype in (QTYPE.AAAA, QTYPE.ANY):
            for address in answer.ipv6:
                reply.add_answer(RR(qname, QTYPE.AAAA, rdata=AAAA(address), ttl=MESH_TTL))
        # Other types of a mesh name: NOERROR with no records, so the client does not look elsewhere.
        return reply


class MeshDnsServer:
    """UDP and TCP on one port of ``host`` (port 0: a free one, the same for both)."""

    def __init__(
        self,
        snapshot: Callable[[], MeshSnapshot],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        upstream: HostResolver | None = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.resolver = MeshResolver(snapshot, upstream=upstream or HostResolver())
        self._servers: list[DNSServer] = []
        self.port: int | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> int:
        """Bind and serve; returns the port. Raises OSError when it cannot bind."""
        attempts = 1 if self.requested_port else 20
        for attempt in range(attempts):
            udp = DNSServer(self.resolver, address=self.host, port=self.requested_port, logger=_Quiet())
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(self.resolver, address=self.host, port=port, tcp=True, logger=_Quiet())
            except OSError:
                udp.server.server_close()
                if attempt == attempts - 1:
                    raise
                continue  # the free UDP port is taken for TCP: draw another
            break
        self._servers = [udp, tcp]
        for server in self._servers:
            server.start_thread()
        self.port = port
        return port

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()
        self._servers = []


class _Quiet:
    """dnslib's logger interface, into ``logging`` (dnslib's own prints every query to stdout)."""

    def log_error(self, handler: Any, error: Exception) -> None:
        log.warning("DNS query from %s failed: %s", getattr(handler, "client_address", "?"), error)

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("log_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


def query(server: tuple[str, int], name: str, qtype: str = "A", *, timeout: float = 5.0, tcp: bool = False) -> DNSRecord:
    """Ask ``server`` one question (for tools and tests)."""
    data = DNSRecord.question(name, qtype).send(server[0], server[1], tcp=tcp, timeout=timeout)
    return DNSRecord.parse(data)

