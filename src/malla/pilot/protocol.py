"""The protocol a service port carries, decided as Istio decides it.

A Kubernetes port's ``appProtocol`` wins; otherwise the port name's prefix
before the first '-' (``http-web`` -> HTTP, ``grpc-web`` as a whole). A name
Istio does not know is "unsupported", which Istio sniffs; malla turns
sniffing off by default (``MeshConfig.protocol_sniffing``), so such ports are
plain TCP. Istio's list:
https://istio.io/latest/docs/ops/configuration/traffic-management/protocol-selection/
"""

from __future__ import annotations

import enum


class Protocol(enum.StrEnum):
    HTTP = "HTTP"
    HTTP2 = "HTTP2"
    HTTPS = "HTTPS"
    GRPC = "GRPC"
    GRPC_WEB = "GRPC-Web"
    HTTP_PROXY = "HTTP_PROXY"
    TCP = "TCP"
    TLS = "TLS"
    UDP = "UDP"
    MONGO = "Mongo"
    REDIS = "Redis"
    MYSQL = "MySQL"
    UNSUPPORTED = "UnsupportedProtocol"

    @property
    def is_http(self) -> bool:
        return self in _HTTP

    @property
    def is_http2(self) -> bool:
        return self in (Protocol.HTTP2, Protocol.GRPC, Protocol.GRPC_WEB)

    @property
    def is_grpc(self) -> bool:
        return self in (Protocol.GRPC, Protocol.GRPC_WEB)

    @property
    def is_tls(self) -> bool:
        return self in (Protocol.HTTPS, Protocol.TLS)

    @property
    def is_tcp(self) -> bool:
        """Carried as opaque bytes by a sidecar (tcp_proxy, or SNI routing for TLS)."""
        return self in _TCP


_HTTP = frozenset({Protocol.HTTP, Protocol.HTTP2, Protocol.HTTP_PROXY, Protocol.GRPC, Protocol.GRPC_WEB})
_TCP = frozenset({Protocol.TCP, Protocol.HTTPS, Protocol.TLS, Protocol.MONGO, Protocol.REDIS, Protocol.MYSQL})

_BY_NAME = {
    "tcp": Protocol.TCP,
    "udp": Protocol.UDP,
    "grpc": Protocol.GRPC,
    "grpc-web": Protocol.GRPC_WEB,
    "http": Protocol.HTTP,
    "http_proxy": Protocol.HTTP_PROXY,
    "http2": Protocol.HTTP2,
    "https": Protocol.HTTPS,
    "tls": Protocol.TLS,
    "mongo": Protocol.MONGO,
    "redis": Protocol.REDIS,
    "mysql": Protocol.MYSQL,
}

# Kubernetes' own appProtocol values (KEP-3726) and their Istio meaning.
_KUBERNETES_APP_PROTOCOLS = {
    "kubernetes.io/h2c": Protocol.HTTP2,
    "h2c": Protocol.HTTP2,
    "kubernetes.io/ws": Protocol.HTTP,
    "kubernetes.io/wss": Protocol.HTTPS,
}

# Ports whose servers speak first; Istio never sniffs them.
_WELL_KNOWN_TCP_PORTS = frozenset({25, 53, 3306, 27017})


def parse_protocol(text: str) -> Protocol:
    """A protocol name as ServiceEntry ``ports[].protocol`` spells it, any case."""
    return _BY_NAME.get(text.lower(), Protocol.UNSUPPORTED)


def protocol_from_port(
    *, port: int, name: str = "", app_protocol: str | None = None, transport: str = "TCP"
) -> Protocol:
    """What Istio concludes about a Kubernetes Service port (``transport`` is its ``protocol:``)."""
    if transport.upper() == "UDP":
        return Protocol.UDP
    if app_protocol:
        known = _KUBERNETES_APP_PROTOCOLS.get(app_protocol.lower()) or parse_protocol(app_protocol)
        if known is not Protocol.UNSUPPORTED:
            return known
    result = _protocol_from_name(name)
    if result is Protocol.UNSUPPORTED and port in _WELL_KNOWN_TCP_PORTS:
        return Protocol.TCP
    return result


def _protocol_from_name(name: str) -> Protocol:
    if name.lower().startswith("grpc-web"):
        return Protocol.GRPC_WEB
    prefix = name.split("-", 1)[0]
    found = parse_protocol(prefix)
    return Protocol.UNSUPPORTED if found is Protocol.UDP else found


def effective_protocol(protocol: Protocol, *, sniffing: bool) -> Protocol:
    """With protocol sniffing off, an undeclared protocol is carried as TCP."""
    if protocol is Protocol.UNSUPPORTED and not sniffing:
        return Protocol.TCP
    return protocol
