"""The agent's relays between a workload namespace and the host: one event loop, one thread.

Their listening sockets were made inside the namespace (``netns.listen``);
every connection they open is made from the agent's own thread, in the
root namespace. So the sidecar reaches what only the host can reach:

- egress (15002): connections the capture rules redirect (``MALLA_EGRESS``)
  go on to their original destination (``SO_ORIGINAL_DST``), the host's
  loopback workloads, other namespaces' workloads, or the world;
- fixed targets: the sidecar's xDS (127.0.0.1:15010 inside -> the control
  plane), as Istio's agent proxies xDS for its Envoy;
- DNS: queries to the namespace's name server (the app's) or redirected
  from the sidecar (``PROXY_DNS_PORT``) go to the control plane's mesh DNS
  over UDP, with the ``malla.dns.hints`` of who asks; DNS over TCP is read
  message by message and asked the same way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
import threading
from collections.abc import Coroutine
from functools import partial
from typing import Any

from malla.dns.hints import Hints, add_hints
from malla.pilot.vips import VIP_NETWORK

log = logging.getLogger(__name__)

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
_CHUNK = 65536
_CONNECT_TIMEOUT = 10.0
_DNS_TIMEOUT = 5.0

Address = tuple[str, int]


class Relays:
    """Relays for one workload, on an event loop of their own (a daemon thread)."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._servers: list[Any] = []
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"malla-relay-{name}", daemon=True)
        self._thread.start()

    def tcp(self, listener: socket.socket, *, target: Address | None) -> None:
        """Relay each connection on ``listener`` to ``target`` (None: where it was going)."""
        self._run(self._serve_tcp(listener, target))

    def dns(self, *, udp: socket.socket, tcp: socket.socket | None, upstream: Address, hints: Hints) -> None:
        """Answer queries on ``udp`` (and ``tcp``) by asking ``upstream`` with ``hints`` added."""
        self._run(self._serve_dns(udp, tcp, upstream, hints))

    def close(self) -> None:
        if self._loop.is_closed():
            return

        async def shutdown() -> None:
            for server in self._servers:
                server.close()
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()

        try:
            self._run(shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            if not self._loop.is_running():
                self._loop.close()

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # -- TCP ------------------------------------------------------------------------------

    async def _serve_tcp(self, listener: socket.socket, target: Address | None) -> None:
        listener.setblocking(False)
        server = await asyncio.start_server(partial(self._pipe, target=target), sock=listener)
        self._servers.append(server)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, target: Address | None) -> None:
        sock = writer.get_extra_info("socket")
        destination = target or original_destination(sock)
        if destination is None or not allowed(destination, listener=sock.getsockname()):
            log.debug("relay refused a connection to %s", destination)
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*destination), _CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:
            log.debug("relay could not reach %s: %s", destination, exc)
            _reset(writer)  # the sidecar sees a failed connect, as without the relay
            return
        await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer), return_exceptions=True)
        for w in (writer, up_writer):
            w.close()

    # -- DNS ------------------------------------------------------------------------------

    async def _serve_dns(self, udp: socket.socket, tcp: socket.socket | None, upstream: Address, hints: Hints) -> None:
        udp.setblocking(False)
        transport, _ = await self._loop.create_datagram_endpoint(lambda: _DnsDatagrams(upstream, hints), sock=udp)
        self._servers.append(transport)
        if tcp is not None:
            tcp.setblocking(False)
            server = await asyncio.start_server(partial(_dns_stream, upstream=upstream, hints=hints), sock=tcp)
            self._servers.append(server)


def original_destination(sock: socket.socket) -> Address | None:
    """Where a REDIRECTed connection was going (netfilter's conntrack keeps it)."""
    try:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    port = struct.unpack("!H", raw[2:4])[0]
    return socket.inet_ntoa(raw[4:8]), port


def allowed(destination: Address, *, listener: Address) -> bool:
    """Not back to the relay itself, and never to a mesh VIP: those exist only inside namespaces."""
    host, port = destination
    if (host, port) == tuple(listener[:2]):
        return False
    try:
        return ipaddress.ip_address(host) not in VIP_NETWORK
    except ValueError:
        return False


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-close: HTTP/1.0-style "the body ends at EOF" keeps working
    except (OSError, asyncio.IncompleteReadError):
        writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


def ask(upstream: Address, query: bytes) -> bytes | None:
    """One DNS question over UDP; None when the server does not answer in time."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(_DNS_TIMEOUT)
        try:
            sock.sendto(query, upstream)
            return sock.recv(65535)
        except OSError:
            return None


def _with_hints(query: bytes, hints: Hints) -> bytes | None:
    try:
        return add_hints(query, hints)
    except Exception:  # dnslib raises several types on malformed input; such a query gets no answer
        return None


class _DnsDatagrams(asyncio.DatagramProtocol):
    def __init__(self, upstream: Address, hints: Hints) -> None:
        self.upstream, self.hints = upstream, hints
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        asyncio.get_running_loop().create_task(self._answer(data, addr))

    async def _answer(self, data: bytes, addr: Address) -> None:
        query = _with_hints(data, self.hints)
        if query is None:
            return
        reply = await asyncio.get_running_loop().run_in_executor(None, ask, self.upstream, query)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def _dns_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: Address, hints: Hints) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            query = _with_hints(await reader.readexactly(size), hints)
            reply = None if query is None else await loop.run_in_executor(None, ask, upstream, query)
            if reply is None:
                break
            writer.write(struct.pack("!H", len(reply)) + reply)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
