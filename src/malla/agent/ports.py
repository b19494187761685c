"""Ports a workload declares (``--port 9080/http``) and free local ports for its app."""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass

from malla.pilot.protocol import Protocol

_PROTOCOLS = {
    "http": Protocol.HTTP, "http2": Protocol.HTTP2, "grpc": Protocol.GRPC, "grpc-web": Protocol.GRPC_WEB,
    "tcp": Protocol.TCP, "tls": Protocol.TLS, "https": Protocol.HTTPS, "mongo": Protocol.MONGO,
    "redis": Protocol.REDIS, "mysql": Protocol.MYSQL,
}


@dataclass(frozen=True)
class PortSpec:
    port: int
    protocol: Protocol
    name: str


def parse_ports(texts: list[str]) -> tuple[PortSpec, ...]:
    """'9080', '9080/http', '6379/tcp' -> PortSpecs with unique Istio-style names (http, http-9081, ...)."""
    specs: list[PortSpec] = []
    used: set[str] = set()
    for text in texts:
        number, _, proto = text.partition("/")
        proto = (proto or "http").lower()
        if proto not in _PROTOCOLS:
            raise ValueError(f"--port {text!r}: unknown protocol {proto!r}; use one of {', '.join(_PROTOCOLS)}")
        try:
            port = int(number)
        except ValueError:
            raise ValueError(f"--port {text!r}: use NUMBER[/PROTOCOL], for example 9080/http") from None
        if not 1 <= port <= 65535:
            raise ValueError(f"--port {text!r}: the port must be between 1 and 65535")
        if any(s.port == port for s in specs):
            raise ValueError(f"--port {port} is given twice")
        name = proto if proto not in used else f"{proto}-{port}"
        used.add(name)
        specs.append(PortSpec(port, _PROTOCOLS[proto], name))
    return tuple(specs)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# Where app ports are drawn from when the kernel's ephemeral range cannot be read: below Linux's default
# 32768-60999, clear of the mesh's own ports (15000-15099, the API's 20001) and Istio's 31400.
_APP_PORTS = range(21000, 31000)


def _ephemeral_range() -> range:
    try:
        low, high = (int(v) for v in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    except (OSError, ValueError):
        return range(32768, 61000)
    return range(low, high + 1)


def app_port(host: str = "127.0.0.1", *, attempts: int = 200) -> int:
    """A free port for a workload's app, outside the kernel's ephemeral range.

    The port is only probed here and bound later by the app, so a port from the ephemeral range could be
    taken meanwhile by any outgoing connection's source port (seen as the app's "Address already in use"
    when many connections are made at once). Ports outside that range are never handed out by the kernel.
    """
    ephemeral = _ephemeral_range()
    candidates = [p for p in random.sample(_APP_PORTS, min(attempts, len(_APP_PORTS))) if p not in ephemeral]
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    return free_port(host)
