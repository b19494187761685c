"""What an agent tells mesh DNS about who asks: EDNS(0) options added to relayed queries.

A transparent workload's queries reach the control plane through its
agent, so their source address says nothing about the workload. The agent
adds an EDNS option with the workload's namespace (short names resolve
relative to it), or, for the sidecar's own lookups (Envoy resolving a
ServiceEntry's real host), one asking for the host's answer only: a mesh
VIP there would send the sidecar back to itself. Codes are from the
local/experimental range of RFC 6891; the server strips them before
anything is forwarded.
"""

from __future__ import annotations

from dataclasses import dataclass

from dnslib import EDNS0, QTYPE, DNSRecord, EDNSOption

NAMESPACE_OPTION = 65301
UPSTREAM_ONLY_OPTION = 65302
_UDP_PAYLOAD = 1232  # the EDNS buffer size DNS Flag Day 2020 settled on


@dataclass(frozen=True)
class Hints:
    namespace: str | None = None
    upstream_only: bool = False


def add_hints(query: bytes, hints: Hints) -> bytes:
    """The query with the hints as EDNS options (an existing OPT record is extended)."""
    record = DNSRecord.parse(query)
    options = []
    if hints.namespace:
        options.append(EDNSOption(NAMESPACE_OPTION, hints.namespace.encode()))
    if hints.upstream_only:
        options.append(EDNSOption(UPSTREAM_ONLY_OPTION, b"\x01"))  # dnslib drops empty options
    if not options:
        return query
    opt = next((rr for rr in record.ar if rr.rtype == QTYPE.OPT), None)
    if opt is None:
        record.add_ar(EDNS0(udp_len=_UDP_PAYLOAD, opts=options))
    else:
        opt.rdata = [o for o in opt.rdata if o.code not in (NAMESPACE_OPTION, UPSTREAM_ONLY_OPTION)] + options
    return record.pack()


def take_hints(record: DNSRecord) -> Hints:
    """Read the hints and remove them from ``record`` (they must not travel further)."""
    namespace, upstream_only = None, False
    for rr in record.ar:
        if rr.rtype != QTYPE.OPT:
            continue
        kept = []
        for option in rr.rdata:
            if option.code == NAMESPACE_OPTION:
                namespace = bytes(option.data).decode("utf-8", "replace") or None
            elif option.code == UPSTREAM_ONLY_OPTION:
                upstream_only = True
            else:
                kept.append(option)
        rr.rdata = kept
    return Hints(namespace=namespace, upstream_only=upstream_only)
