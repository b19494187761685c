"""istiod's port 15012 inside ``malla up``: ADS, certificate renewals and the remote agents' API over mTLS.

In: the running xDS server (its ADS streams, ``XdsServerThread.ads_service``),
a maker of TLS credentials that require a client certificate from the mesh
CA (the CA's own, ``CAServer.credentials``), and more gRPC services to serve beside ADS
(the CA's ``IstioCertificateService``, the remote agents' API). Out: one gRPC
server on the xDS server's event loop, where the streams' state lives, so a
proxy connected here shows in ``malla proxy-status`` like any other. A
client without a mesh certificate does not get past the TLS handshake.

An ADS stream here is served only to a proxy whose node metadata
(``NAMESPACE``, ``SERVICE_ACCOUNT``) is the identity its certificate
proves, as istiod checks a connection's identity: a workload cannot ask for
the configuration of another namespace or service account.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from malla.ca.service import AuthenticationError, identity_from_certificate, peer_certificate
from malla.ca.spiffe import Identity
from malla.xds.runner import XdsServerThread
from malla.xds.server import SERVER_OPTIONS

log = logging.getLogger(__name__)


def node_identity_problem(node: Any, identity: Identity) -> str | None:
    """Why a proxy with this certificate may not ask for this node's configuration (None: it may)."""
    fields = node.metadata.fields
    namespace = fields["NAMESPACE"].string_value if "NAMESPACE" in fields else ""
    account = fields["SERVICE_ACCOUNT"].string_value if "SERVICE_ACCOUNT" in fields else ""
    if (namespace, account) == (identity.namespace, identity.service_account):
        return None
    return (f"node {node.id!r} says namespace {namespace!r}, service account {account!r}, but its "
            f"certificate proves {identity.uri}; a proxy gets only its own workload's configuration")


class _CheckedContext:
    """A stream's context whose first request must come from the node the certificate speaks for."""

    def __init__(self, context: grpc.aio.ServicerContext, identity: Identity) -> None:
        self._context = context
        self._identity = identity
        self._checked = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def read(self) -> Any:
        request = await self._context.read()
        if not self._checked and request is not grpc.aio.EOF:
            self._checked = True
            problem = node_identity_problem(request.node, self._identity)
            if problem is not None:
                log.warning("refused an ADS stream on the mTLS port: %s", problem)
                await self._context.abort(grpc.StatusCode.PERMISSION_DENIED, problem)
        return request


class _IdentityCheckedAds(grpc.GenericRpcHandler):
    """ADS as the xDS server serves it, each stream checked against the caller's certificate."""

    def __init__(self, ads: grpc.GenericRpcHandler, *, trust_domain: str) -> None:
        self._ads = ads
        self._trust_domain = trust_domain

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._ads.service(handler_call_details)
        if handler is None or handler.stream_stream is None:
            return handler
        serve = handler.stream_stream
        trust_domain = self._trust_domain

        async def checked(requests: object, context: grpc.aio.ServicerContext) -> None:
            try:
                identity = identity_from_certificate(peer_certificate(context) or b"", trust_domain=trust_domain)
            except (AuthenticationError, ValueError) as exc:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"ADS on the mTLS port: {exc}")
            await serve(requests, _CheckedContext(context, identity))

        return grpc.stream_stream_rpc_method_handler(
            checked, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)


class MeshTlsServer:
    """One mTLS port serving ADS (the xDS server's own streams) and `services`, on the xDS loop."""

    def __init__(self, xds: XdsServerThread, *, credentials: Callable[[], grpc.ServerCredentials],
                 services: Sequence[grpc.GenericRpcHandler], trust_domain: str) -> None:
        self._xds = xds
        self._credentials = credentials
        self._services = tuple(services)
        self._trust_domain = trust_domain
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None

    def start(self, *, host: str, port: int, timeout: float = 10.0) -> int:
        """Listen on host:port (0: a free port); OSError when the port cannot be bound."""
        return self._xds.run(self._start(host, port), timeout=timeout)

    async def _start(self, host: str, port: int) -> int:
        # The same settings as the plaintext port: Envoy's keepalive pings, storms of reconnects.
        server = grpc.aio.server(options=[*SERVER_OPTIONS, ("grpc.so_reuseport", 0)])
        ads = _IdentityCheckedAds(self._xds.ads_service(), trust_domain=self._trust_domain)
        server.add_generic_rpc_handlers((ads, *self._services))
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            # Fresh credentials per server: gRPC's dynamic ones hand their first certificate out once.
            bound = server.add_secure_port(address, self._credentials())
        except RuntimeError:  # gRPC's bind failure says nothing useful
            bound = 0
        if bound == 0:
            raise OSError(f"cannot serve xDS and the CA over mTLS on {address}: the port is taken or not this host's")
        await server.start()
        self._server, self.port = server, bound
        log.info("xDS and CA over mTLS on %s", address.rsplit(":", 1)[0] + f":{bound}")
        return bound

    def stop(self, *, grace: float = 0.5, timeout: float = 10.0) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        try:
            self._xds.run(server.stop(grace), timeout=timeout)
        except (RuntimeError, TimeoutError):
            log.warning("the mTLS port's server did not stop cleanly (the xDS loop is gone)")
