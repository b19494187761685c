"""``malla run --transparent --controlplane HOST``: a captured workload on a host without a control plane.

``RemoteTransparentAgent`` is both a ``RemoteAgent`` (trust from the join
token, identity, the API relay, ADS over mTLS with the workload's own
certificate) and a ``TransparentAgent`` (namespace, capture rules, relays,
Envoy as uid 1337). What the two do not give by themselves, in the order it
happens:

1. The address: the workload registers at its host's address (``--address``,
   by default the one towards the control plane), since other hosts cannot
   route to the namespace's veth address. The control plane leases nothing
   here: the node id is made on this host, as ``RemoteAgent`` does.
2. Mesh DNS: the control plane's DNS server listens on its own host only,
   so the app's queries go, through the namespace's DNS relay, to a loopback
   bridge here that carries each one over the mTLS port
   (``malla.controlplane.remote_dns``) with the workload's certificate;
   names that are not the mesh's are resolved there too, by the control
   plane's host. The sidecar's own lookups stay on this host.
3. The namespace as ``TransparentAgent`` makes it; the sidecar's xDS relay
   dials the control plane's mTLS port. A TCP relay is transparent to TLS:
   Envoy still sends the control plane's name as SNI and checks it in the
   certificate's SANs (``malla.envoy.xds_tls``), whatever address it dialled.
   The SDS socket is a path in the file system (not network-namespaced),
   handed to uid 1337 as for any transparent workload.
4. Inbound forwarding: each declared port is relayed from ``ADDRESS:PORT``
   on the host to ``NAMESPACE_ADDRESS:PORT``, where the capture rules hand
   it to the sidecar's inbound listener (15006). A relay, not DNAT: DNAT
   would mean rules in the host's own tables (which malla never touches),
   IP forwarding, and ``route_localnet`` for loopback addresses. The relay
   keeps the peer's identity (mTLS is end to end, the relay sees only TLS
   records); the sidecar sees the host side of the veth as the source
   address, so AuthorizationPolicy ``ipBlocks`` cannot tell remote peers
   apart (principals can).
5. On exit the relays (forwards included), the namespace and the DNS bridge
   go, after the usual withdraw/stop.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import socket
import socketserver
import threading
from typing import Any

import grpc
from dnslib import DNSRecord

from malla.agent.api_relay import CALL_TIMEOUT, Tunnel
from malla.agent.remote import RemoteAgent
from malla.agent.run import AgentError, Progress, RunOptions
from malla.agent.transparent import TransparentAgent
from malla.controlplane.home import ControlPlaneState
from malla.controlplane.remote_dns import FULL_METHOD as DNS_METHOD
from malla.dns.forward import HostResolver
from malla.dns.hints import take_hints

log = logging.getLogger(__name__)


class DnsTunnel(Tunnel):
    """DNS messages over the mTLS port, with the workload's newest certificate."""

    def ask(self, query: bytes) -> bytes | None:
        """The control plane's reply; None when it cannot be asked (the client retries or gives up)."""
        cert = self.certificate()
        if cert is None:
            return None
        try:
            return bytes(self._channel_for(cert).unary_unary(DNS_METHOD)(query, timeout=CALL_TIMEOUT))
        except grpc.RpcError as exc:
            log.debug("mesh DNS at %s: %s %s", self.target, exc.code().name, exc.details())
            return None


class DnsBridge:
    """A loopback UDP name server: the app's queries go to the control plane through a ``DnsTunnel``.

    The sidecar's own lookups (hint "the host's answer only": a ServiceEntry's
    real host, say) are answered by this host's resolver, as Envoy on this
    host would see the name, not by the control plane's host.
    """

    def __init__(self, tunnel: DnsTunnel, *, local: HostResolver | None = None) -> None:
        self.tunnel = tunnel
        self.local = local or HostResolver()
        self._server: socketserver.ThreadingUDPServer | None = None
        self._thread: threading.Thread | None = None

    def answer(self, query: bytes) -> bytes | None:
        try:
            record = DNSRecord.parse(query)
        except Exception:  # dnslib raises several types on malformed input; such a query gets no answer
            return None
        if take_hints(record).upstream_only:
            return bytes(self.local.answer(record).pack())
        return self.tunnel.ask(query)

    def start(self) -> str:
        """Serve on a free port of 127.0.0.1; returns ``"127.0.0.1:PORT"`` (a state's ``dns_address``)."""
        bridge = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                query, sock = self.request
                reply = bridge.answer(query)
                if reply is not None:
                    sock.sendto(reply, self.client_address)

        server = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="malla-dns-bridge", daemon=True)
        self._thread.start()
        return f"127.0.0.1:{server.server_address[1]}"

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self.tunnel.close()


class RemoteTransparentAgent(TransparentAgent, RemoteAgent):
    """A transparent workload whose control plane is on another host (see the module docstring)."""

    def __init__(self, options: RunOptions, state: ControlPlaneState, *, progress: Progress,
                 address: str) -> None:
        super().__init__(options, state, progress=progress, address=address)
        self.dns_bridge: DnsBridge | None = None

    def lease(self) -> dict[str, Any]:
        self._allocate_link()
        lease = RemoteAgent.lease(self)
        self._start_dns_bridge()
        self._open_namespace()
        self._forward_inbound()
        return lease

    def _start_dns_bridge(self) -> None:
        s = self.state
        self.dns_bridge = DnsBridge(DnsTunnel(s.ca_address, server_name=s.ca_server_name,
                                              certificate=self.certificate))
        # The namespace's DNS relays take their upstream from the state (malla.agent.transparent).
        self.state = dataclasses.replace(s, dns_address=self.dns_bridge.start())

    def _forward_inbound(self) -> None:
        """Each declared port, from the host's address into the namespace (step 4)."""
        assert self.link is not None and self.relays is not None
        target = self.link.ns_address
        for spec in self.options.ports:
            listener = _listen(self.address, spec.port)
            self.relays.tcp(listener, target=(target, spec.port))
        if self.options.ports:
            ports = ", ".join(str(p.port) for p in self.options.ports)
            self.progress(f"forwarding {self.address} ports {ports} into the namespace ({target})")

    def _teardown(self) -> None:
        try:
            super()._teardown()  # the relays close the forwards' listeners too
        finally:
            if self.dns_bridge is not None:
                self.dns_bridge.stop()
                self.dns_bridge = None


def _listen(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRNOTAVAIL:
            why = "it is not an address of this host; give one with --address"
        elif exc.errno == errno.EADDRINUSE:
            why = "another program listens there; stop it, or give another address of this host with --address"
        else:
            why = exc.strerror or str(exc)
        raise AgentError(f"--address {address}: cannot forward port {port} into the workload's namespace: {why}") from None
    return sock

