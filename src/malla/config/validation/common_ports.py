"""Ports, port names, protocols, bind addresses and Unix domain sockets, as Istio judges them.

Port numbers are 1..65535 (``agent.ValidatePort``); port names are
DNS-1123 labels of either case (``ValidatePortName``); protocol names are
Istio's ``protocol.Parse`` list, matched without regard to case; a
``unix://`` address names an absolute socket file or an abstract '@name'
socket (``ValidateUnixAddress``); a bind address is an IP or a
``unix://`` socket, which then needs port number 0.

Value checks return the problem as text, or None.
"""

from __future__ import annotations

from malla.config.validation.common import DNS1123_LABEL_MAX, is_dns1123_label, is_ip

UNIX_PREFIX = "unix://"

_PROTOCOLS = {
    p.lower(): p
    for p in ("HTTP", "HTTPS", "GRPC", "GRPC-Web", "HTTP2", "HTTP_PROXY", "Mongo", "Redis", "MySQL", "TCP", "TLS", "UDP")
}
_HTTP_PROTOCOLS = {"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-Web"}
_TLS_PROTOCOLS = {"HTTPS", "TLS"}
_TCP_PROTOCOLS = {"TCP", "HTTPS", "TLS", "Mongo", "Redis", "MySQL"}
PROTOCOLS_ALLOWED = "HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, REDIS, MYSQL, TCP, TLS, UDP, HTTP_PROXY"


def check_port(value: int | None, what: str = "port number") -> str | None:
    if value is None:
        return f"{what} is required: a number between 1 and 65535"
    if not 1 <= value <= 65535:
        return f"invalid {what} {value}: must be between 1 and 65535"
    return None


def check_port_name(name: str, *, max_length: int = DNS1123_LABEL_MAX) -> str | None:
    """Istio's ValidatePortName: a DNS-1123 label (upper case allowed); some CRD fields allow fewer characters."""
    if len(name) > max_length or not is_dns1123_label(name):
        return (
            f"invalid port name {name!r}: must be a DNS-1123 label (letters, digits and '-', starting and ending "
            f"with a letter or digit, at most {max_length} characters)"
        )
    return None


def parse_protocol(name: str | None) -> str | None:
    """Istio's canonical protocol name, or None when Istio does not know it."""
    return _PROTOCOLS.get((name or "").lower())


def is_http_protocol(name: str | None) -> bool:
    return parse_protocol(name) in _HTTP_PROTOCOLS


def is_tls_protocol(name: str | None) -> bool:
    return parse_protocol(name) in _TLS_PROTOCOLS


def is_tcp_protocol(name: str | None) -> bool:
    """Istio's Instance.IsTCP: protocols carried over plain TCP connections (TLS included)."""
    return parse_protocol(name) in _TCP_PROTOCOLS


def check_unix_address(address: str) -> str | None:
    """The part after ``unix://``: an absolute path to the socket file, or an abstract socket '@name'."""
    if not address:
        return "the unix domain socket path must not be empty: write unix:///var/run/app.sock"
    if address.startswith("@"):
        return None
    if not address.startswith("/"):
        return (
            f"invalid unix domain socket {address!r}: use an absolute path (unix:///var/run/app.sock) "
            "or an abstract socket (unix://@name)"
        )
    if address.endswith("/"):
        return f"unix domain socket {address!r} is a directory: the path must name the socket file"
    return None


def bind_errors(bind: str | None, *, port_number: int | None) -> list[str]:
    """A listener's bind: an IP address, or a ``unix://`` socket, which needs port number 0."""
    if not bind:
        return []
    if bind.startswith(UNIX_PREFIX):
        errors = [e for e in [check_unix_address(bind[len(UNIX_PREFIX) :])] if e]
        if port_number:
            errors.append(f"port number must be 0 when binding to a unix domain socket, got {port_number}")
        return errors
    if not is_ip(bind):
        return [f"bind address {bind!r} is not a valid IP address"]
    return []
