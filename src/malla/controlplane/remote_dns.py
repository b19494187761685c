"""Mesh DNS for agents on other hosts, carried over the mTLS port (15012).

The mesh DNS server (``malla.dns.server``) listens where the HTTP API does,
on the control plane's host only. A transparent workload on another host
still needs its answers: the VIPs its capture rules route and its sidecar's
TCP listeners match are the control plane's, so no local resolver could
make them up. Its agent sends each query, as the raw DNS message it would
have sent over UDP, as one call of ``malla.v1.MeshDns/Query`` on the mTLS
port, with the workload's certificate, and gets the raw reply back.

Istio carries the same knowledge to its agent's DNS proxy as a name table
(NDS) on the xDS stream; malla keeps its one resolver and ships questions
instead, so remote and local workloads get the same answers.

Any workload certificate of the mesh may ask. Short names resolve relative
to the namespace the certificate proves, whatever the query's hint said;
the sidecar's "the host's answer only" hint is kept.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc
from dnslib import DNSRecord

from malla.ca.service import AuthenticationError, identity_from_certificate, peer_certificate
from malla.dns.hints import Hints, add_hints, take_hints

if TYPE_CHECKING:
    from malla.controlplane.server import ControlPlane

SERVICE = "malla.v1.MeshDns"
METHOD = "Query"
FULL_METHOD = f"/{SERVICE}/{METHOD}"
MAX_QUERY = 65535  # a DNS message's largest size (the TCP length prefix)


class MeshDnsService(grpc.GenericRpcHandler):
    """``malla.v1.MeshDns/Query``, for the mTLS port's server (it runs on that server's loop)."""

    def __init__(self, cp: ControlPlane) -> None:
        self._cp = cp
        self._handler = grpc.unary_unary_rpc_method_handler(self._query)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._handler if handler_call_details.method == FULL_METHOD else None

    async def _query(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        cp = self._cp
        try:
            identity = identity_from_certificate(peer_certificate(context) or b"",
                                                 trust_domain=cp.options.mesh.trust_domain)
        except (AuthenticationError, ValueError) as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        try:
            query = rehinted(request, namespace=identity.namespace)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not a DNS query: {exc}")
        # The resolver may ask the host's resolver (a blocking call): off the server's loop.
        reply = await asyncio.to_thread(cp.dns.resolver.resolve, DNSRecord.parse(query), None)
        return bytes(reply.pack())


def rehinted(query: bytes, *, namespace: str) -> bytes:
    """The query with the caller's namespace as its hint (ValueError: not a DNS message)."""
    if not query or len(query) > MAX_QUERY:
        raise ValueError(f"a DNS message has 1 to {MAX_QUERY} bytes, this one {len(query)}")
    try:
        hints = take_hints(DNSRecord.parse(query))
        return add_hints(query, Hints(namespace=namespace, upstream_only=hints.upstream_only))
    except Exception as exc:  # dnslib raises several types on malformed input
        raise ValueError(str(exc) or type(exc).__name__) from None
