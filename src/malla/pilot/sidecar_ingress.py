"""The ports a sidecar accepts inbound traffic on: a Sidecar's ``ingress`` listeners, else its registered ports.

Istio's rule (``buildInboundChainConfigs``): when the Sidecar resource that
applies to a proxy lists ``ingress`` listeners, they replace the ports the
workload registered; each one says

- ``port`` (number, protocol, name): what the listener accepts;
- ``defaultEndpoint``: where the app is. ``127.0.0.1:PORT`` (``[::1]:PORT``)
  is loopback; ``0.0.0.0:PORT`` (``[::]:PORT``) is the instance's own
  address: the app's address with explicit capture (the proxy's own address
  belongs to the sidecar there), the workload's address with transparent
  capture; ``unix:///path`` a Unix socket. Left out, traffic goes where it
  would have gone, the app's address at the registered port's app port (or
  at the same port number);
- ``bind`` and ``captureMode``: whether the port gets a listener of its own
  (``BIND_PORT``) or a filter chain of ``virtualInbound``. With explicit
  capture every port binds (Istio's rule for a proxy without interception)
  except ``IPTABLES`` ones, which join ``virtualInbound`` on the proxy's
  address; with transparent capture only ``NONE`` binds (at ``bind``, else
  0.0.0.0), the rest are redirected to ``virtualInbound``;
- ``tls``: the sidecar terminates TLS with the files named (SIMPLE or
  MUTUAL) when PeerAuthentication leaves the port plaintext (``DISABLE``),
  as Istio requires; the port's protocol is then the one inside TLS
  (HTTPS -> HTTP, TLS -> TCP);
- ``connectionPool``: limits of the inbound cluster, over the Sidecar's
  ``inboundConnectionPool``.

A port the first listener already took, or the sidecar's HTTP proxy port on
its own address, is skipped, as Istio skips conflicting ports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from malla.config.model import Config
from malla.pilot.gateways import server_tls_common
from malla.pilot.protocol import Protocol, parse_protocol
from malla.pilot.snapshot import CaptureMode, MeshConfig, MeshSnapshot, Proxy

UNIX_PREFIX = "unix://"
WILDCARD = "0.0.0.0"
_LOOPBACK = ("127.0.0.1", "::1")
_ANY = ("0.0.0.0", "::")


@dataclass(frozen=True)
class IngressPort:
    """One port inbound traffic arrives on, and where it goes."""

    port: int
    protocol: Protocol
    app_address: str  # an IP, or unix:///path
    app_port: int  # 0 for a Unix socket
    name: str = ""
    bind: str = ""  # the listener's address when ``own_listener``
    own_listener: bool = False  # a listener BIND_PORT of its own, not a chain of virtualInbound
    tls: Any = None  # ServerTLSSettings the sidecar terminates
    connection_pool: Any = None
    from_sidecar: bool = False  # declared by a Sidecar resource (its HTTP routes are inline)


def inbound_ports(proxy: Proxy, snapshot: MeshSnapshot) -> tuple[IngressPort, ...]:
    """The Sidecar's ingress listeners if it has any, else the workload's registered ports; by port."""
    sidecar = None if proxy.is_router else snapshot.sidecar_scope(proxy)
    if sidecar is None or not sidecar.spec.ingress:
        registered = (
            IngressPort(
                port=p.port, protocol=p.protocol, name=p.name, app_address=proxy.app_address, app_port=p.app_port
            )
            for p in proxy.inbound
        )
        return tuple(sorted(registered, key=lambda p: p.port))
    out: dict[int, IngressPort] = {}
    outbound = proxy.outbound_port or snapshot.mesh.outbound_port
    for listener in sidecar.spec.ingress:
        port = _ingress_port(listener, proxy, sidecar)
        if port is None or port.port in out:
            continue
        if proxy.capture is CaptureMode.EXPLICIT and port.port == outbound and port.bind == proxy.ip:
            continue  # the app's HTTP proxy listener has it
        out[port.port] = port
    return tuple(out[p] for p in sorted(out))


def bound_inbound_ports(proxy: Proxy, snapshot: MeshSnapshot) -> set[tuple[str, int]]:
    """(address, port) pairs inbound listeners bind, which outbound listeners must leave alone."""
    out = set()
    for p in inbound_ports(proxy, snapshot):
        if p.own_listener:
            out.add((p.bind, p.port))
        elif proxy.capture is CaptureMode.EXPLICIT:
            out.add((proxy.ip, p.port))
    return out


def _ingress_port(listener: Any, proxy: Proxy, sidecar: Config) -> IngressPort | None:
    if listener.port is None or not listener.port.number:
        return None
    number = listener.port.number
    protocol = parse_protocol(listener.port.protocol or "")
    capture = listener.capture_mode or "DEFAULT"
    if proxy.capture is CaptureMode.EXPLICIT:
        own = capture != "IPTABLES"
        bind = (listener.bind or proxy.ip) if own else proxy.ip
    else:
        own = capture == "NONE"
        bind = listener.bind or WILDCARD
    endpoint = app_endpoint(listener.default_endpoint or "", proxy, port=number)
    if endpoint is None:
        return None
    pool = listener.connection_pool or sidecar.spec.inbound_connection_pool
    return IngressPort(
        port=number,
        protocol=protocol,
        name=listener.port.name or "",
        app_address=endpoint[0],
        app_port=endpoint[1],
        bind=bind,
        own_listener=own,
        tls=listener.tls,
        connection_pool=pool,
        from_sidecar=True,
    )


def app_endpoint(default_endpoint: str, proxy: Proxy, *, port: int) -> tuple[str, int] | None:
    """``defaultEndpoint`` -> (address, port) of the app; None when it cannot be read."""
    if default_endpoint.startswith(UNIX_PREFIX):
        return default_endpoint, 0
    if not default_endpoint:
        registered = next((p for p in proxy.inbound if p.port == port), None)
        return proxy.app_address, registered.app_port if registered is not None else port
    host, sep, number = default_endpoint.rpartition(":")
    host = host.strip("[]")
    if not sep or not number.isdigit():
        return None
    if host in _LOOPBACK:
        return host, int(number)
    if host in _ANY:
        instance = proxy.app_address if proxy.capture is CaptureMode.EXPLICIT else proxy.ip
        return instance, int(number)
    return None  # validation allows loopback and "any" only: nothing else is a local app


def terminated_protocol(protocol: Protocol) -> Protocol:
    """What a port carries once the sidecar has terminated its TLS."""
    return {Protocol.HTTPS: Protocol.HTTP, Protocol.TLS: Protocol.TCP}.get(protocol, protocol)


def translate_ingress_tls(tls: Any, *, http: bool, mesh: MeshConfig) -> tls_pb2.DownstreamTlsContext:
    """A Sidecar ingress ``tls`` -> the server context: certificate files, client checks for MUTUAL."""
    mode = tls.mode or "SIMPLE"
    common = server_tls_common(tls, http=http)
    # Files on the workload's host, read by Envoy itself: the sidecar's SDS serves only mesh identities.
    common.tls_certificates.add(
        certificate_chain=base_pb2.DataSource(filename=tls.server_certificate or ""),
        private_key=base_pb2.DataSource(filename=tls.private_key or ""),
    )
    if mode in ("MUTUAL", "OPTIONAL_MUTUAL"):
        validation = common.validation_context
        validation.trusted_ca.filename = tls.ca_certificates or mesh.system_ca_bundle
        if tls.ca_crl:
            validation.crl.filename = tls.ca_crl
        validation.verify_certificate_spki.extend(tls.verify_certificate_spki)
        validation.verify_certificate_hash.extend(tls.verify_certificate_hash)
    return tls_pb2.DownstreamTlsContext(
        common_tls_context=common, require_client_certificate={"value": mode == "MUTUAL"}
    )
