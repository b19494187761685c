"""Names that are not the mesh's: answered as the control plane's host would resolve them.

A and AAAA go through the host's own resolver (``getaddrinfo``), so
``/etc/hosts``, nsswitch and a local stub such as systemd-resolved count,
exactly as for a program on the host. One ``getaddrinfo`` call asks for
both families: a name that ``/etc/hosts`` knows for IPv4 only must not send
its AAAA question out to the network. Other types (MX, TXT, SRV, ...) are
sent as they are to the name servers of the host's ``resolv.conf``.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord

log = logging.getLogger(__name__)

TTL = 30
GetAddrInfo = Callable[..., list[tuple[Any, ...]]]
_NOT_FOUND = {getattr(socket, n) for n in ("EAI_NONAME", "EAI_NODATA", "EAI_ADDRFAMILY") if hasattr(socket, n)}


class HostResolver:
    def __init__(
        self,
        *,
        resolv_conf: Path = Path("/etc/resolv.conf"),
        timeout: float = 3.0,
        getaddrinfo: GetAddrInfo = socket.getaddrinfo,
    ) -> None:
        self.resolv_conf = resolv_conf
        self.timeout = timeout
        self._getaddrinfo = getaddrinfo

    def answer(self, request: DNSRecord) -> DNSRecord:
        qtype = request.q.qtype
        if qtype in (QTYPE.A, QTYPE.AAAA):
            return self._by_getaddrinfo(request)
        return self._by_name_servers(request)

    def _by_getaddrinfo(self, request: DNSRecord) -> DNSRecord:
        reply = request.reply()
        reply.header.aa = 0
        name = str(request.q.qname).rstrip(".")
        try:
            found = self._getaddrinfo(name, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            reply.header.rcode = RCODE.NXDOMAIN if exc.errno in _NOT_FOUND else RCODE.SERVFAIL
            return reply
        except (OSError, UnicodeError):
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        family, rdata = (socket.AF_INET, A) if request.q.qtype == QTYPE.A else (socket.AF_INET6, AAAA)
        seen: list[str] = []
        for fam, _type, _proto, _canon, sockaddr in found:
            address = str(sockaddr[0]).split("%", 1)[0]
            if fam == family and address not in seen:
                seen.append(address)
        for address in seen:
            reply.add_answer(RR(request.q.qname, request.q.qtype, rdata=rdata(address), ttl=TTL))
        return reply

    def _by_name_servers(self, request: DNSRecord) -> DNSRecord:
        for server in self.name_servers():
            try:
                data = request.send(server, 53, timeout=self.timeout)
                return DNSRecord.parse(data)
            except (OSError, ValueError) as exc:
                log.debug("name server %s did not answer %s: %s", server, request.q.qname, exc)
        reply = request.reply()
        reply.header.aa = 0
        reply.header.rcode = RCODE.SERVFAIL
        return reply

    def name_servers(self) -> list[str]:
        """The ``nameserver`` lines of the host's resolv.conf, read at each use (it may change)."""
        try:
            lines = self.resolv_conf.read_text().splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            parts = line.split("#", 1)[0].split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                out.append(parts[1])
        return out
