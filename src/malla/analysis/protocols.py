"""Istio's protocol names and how a Kubernetes Service port's protocol is derived from its name.

Istio selects a port's protocol from ``appProtocol`` or else the port name's
prefix before the first ``-`` (``http-web`` is HTTP); a name it does not
recognise leaves the protocol to sniffing, which the port-name analyzer
reports. See https://istio.io/latest/docs/ops/configuration/traffic-management/protocol-selection/
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_PROTOCOLS = {
    "tcp": "TCP",
    "udp": "UDP",
    "grpc": "GRPC",
    "grpc-web": "GRPC-Web",
    "http": "HTTP",
    "http_proxy": "HTTP_PROXY",
    "http2": "HTTP2",
    "https": "HTTPS",
    "tls": "TLS",
    "mongo": "Mongo",
    "redis": "Redis",
    "mysql": "MySQL",
}
UNSUPPORTED = "UnsupportedProtocol"

# Ports whose unnamed traffic Istio treats as TCP rather than sniffing it (SMTP, DNS, MySQL, MongoDB).
_WELL_KNOWN_TCP_PORTS = frozenset({25, 53, 3306, 27017})

# Kubernetes' standard appProtocol values.
_K8S_APP_PROTOCOLS = {"kubernetes.io/h2c": "HTTP2", "kubernetes.io/ws": "HTTP", "kubernetes.io/wss": "HTTPS"}

HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-Web"})


def parse_protocol(name: str) -> str:
    """Istio's protocol for a name, case-insensitively, or ``UnsupportedProtocol``."""
    return _PROTOCOLS.get(name.lower(), UNSUPPORTED)


def service_port_protocol(port: Mapping[str, Any]) -> str:
    """The protocol Istio assigns a Kubernetes Service port (ConvertProtocol in Istio)."""
    if str(port.get("protocol") or "") == "UDP":
        return "UDP"
    name = str(port.get("name") or "")
    app_protocol = port.get("appProtocol")
    if app_protocol is not None:
        name = str(app_protocol)
        if name in _K8S_APP_PROTOCOLS:
            return _K8S_APP_PROTOCOLS[name]
    if name.lower().startswith("grpc-web"):
        return "GRPC-Web"
    protocol = parse_protocol(name.partition("-")[0])
    if protocol == UNSUPPORTED and port.get("port") in _WELL_KNOWN_TCP_PORTS:
        return "TCP"
    return protocol
