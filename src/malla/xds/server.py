"""The ADS gRPC server: a thin adapter around the protocol machines and the cache.

In: Envoy streams on `envoy.service.discovery.v3.AggregatedDiscoveryService`
(`StreamAggregatedResources` for SotW, `DeltaAggregatedResources` for Delta)
and snapshot changes from the `SnapshotCache`. Out: serialized responses, and
`status()`: per connected proxy and type, SYNCED / STALE / NOT SENT /
REJECTED with Envoy's error text and the rejected names.

The control plane hooks in with `on_connect(node)`, awaited on every new
stream before the first answer (so it can compute that node's snapshot on
first contact), and `on_disconnect(node)`, called when the node's last stream
ends (a reconnecting Envoy may briefly hold two). Either may be a plain
function or a coroutine function. This module knows nothing of Istio.

gRPC settings come from measurements (see the field notes): Envoy's HTTP/2
keepalive pings must not earn strikes (else GOAWAY and reconnects), and the
pending-request limits are raised so a reconnect storm is not silently
cancelled. Responses are written as pre-serialized bytes (no serializer).
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from malla.xds import resources
from malla.xds.cache import PreparedSnapshot, SnapshotCache
from malla.xds.delta import DeltaStream
from malla.xds.protocol import Action, Nack, ProtocolError, Send, TypeStatus
from malla.xds.sotw import SotwStream

_log = logging.getLogger(__name__)

SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
DEFAULT_TCP = ("127.0.0.1", 15010)

SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    # Envoy pings every 30 s (see malla.envoy.bootstrap); never count strikes.
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    # Find dead proxies whose TCP connection vanished without a FIN.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    # Defaults (1000/3000) silently cancelled streams in a 2,000-proxy storm.
    ("grpc.server.max_pending_requests", 10_000),
    ("grpc.server.max_pending_requests_hard_limit", 20_000),
    # A stream the busy loop has not picked up within this many seconds is CANCELLED by gRPC
    # core (default 30): measured, 16-35% of 1,000 simulated proxies cancelled ~31 s into a storm.
    ("grpc.server_max_unrequested_time_in_server", 600),
    # SotW EDS requests repeat every subscribed name.
    ("grpc.max_receive_message_length", 64 << 20),
)

NodeHook = Callable[[Any], Awaitable[None] | None]


@dataclass(frozen=True)
class ProxyStatus:
    """What one connected proxy holds, as `malla proxy-status` shows it."""

    connection_id: str
    node_id: str
    cluster: str
    mode: str
    envoy_version: str
    connected_at: float
    snapshot_version: str | None
    types: tuple[TypeStatus, ...]


_CHANGED = object()
_EOF = object()


@dataclass(eq=False)
class _Connection:
    id: str
    node: Any
    delta: bool
    machine: SotwStream | DeltaStream
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    view: PreparedSnapshot | None = None
    change_pending: bool = False
    connected_at: float = field(default_factory=time.time)

    def wake(self, _node_id: str) -> None:
        """Called by the cache from any thread; many changes make one push."""
        self.loop.call_soon_threadsafe(self._mark_changed)

    def _mark_changed(self) -> None:
        if not self.change_pending:
            self.change_pending = True
            self.queue.put_nowait(_CHANGED)


class XdsServer:
    """Serves snapshots from a `SnapshotCache` to Envoys over ADS."""

    def __init__(self, cache: SnapshotCache, *, on_connect: NodeHook | None = None,
                 on_disconnect: NodeHook | None = None, initial_concurrency: int = 64,
                 options: Sequence[tuple[str, Any]] = ()) -> None:
        self.cache = cache
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._options = dict(SERVER_OPTIONS) | dict(options)
        self._initial_concurrency = initial_concurrency
        self._gate: asyncio.Semaphore | None = None
        self._server: grpc.aio.Server | None = None
        self._connections: dict[str, _Connection] = {}
        self._streams_per_node: dict[str, int] = {}
        self._epoch = uuid.uuid4().hex[:6]
        self._count = 0
        self._closing = False
        self.port: int | None = None
        self.unix_path: str | None = None

    # -- lifecycle ---------------------------------------------------------

    async def start(self, *, tcp: tuple[str, int] | None = DEFAULT_TCP,
                    unix_path: str | None = None,
                    credentials: grpc.ServerCredentials | None = None) -> int | None:
        """Listen on TCP and/or a Unix socket; returns the bound TCP port."""
        if tcp is None and unix_path is None:
            raise ValueError("start: give tcp=(host, port), unix_path=..., or both")
        self._closing = False
        # Semaphores and the server belong to the loop that runs them.
        self._gate = asyncio.Semaphore(self._initial_concurrency)
        server = grpc.aio.server(options=list(self._options.items()))
        handlers = self.method_handlers()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        server.add_registered_method_handlers(SERVICE, handlers)
        if tcp is not None:
            self.port = self._bind(server, f"{_host(tcp[0])}:{tcp[1]}", credentials)
        if unix_path is not None:
            _remove_stale_socket(unix_path)
            self._bind(server, f"unix:{unix_path}", credentials)
            self.unix_path = unix_path
        await server.start()
        self._server = server
        _log.info("xDS server listening on %s", self.addresses())
        return self.port

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """The ADS methods, for this server and for another gRPC server on the same loop
        (istiod's mTLS port): streams opened there are this server's own, one status, one set of hooks."""
        return {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self._stream_sotw, request_deserializer=discovery_pb2.DiscoveryRequest.FromString),
            "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self._stream_delta,
                request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString),
        }

    async def stop(self, *, grace: float = 1.0) -> None:
        """End every stream cleanly (Envoy keeps its config and reconnects), then stop."""
        if self._server is None:
            return
        self._closing = True
        for conn in list(self._connections.values()):
            conn.queue.put_nowait(_EOF)
        deadline = asyncio.get_running_loop().time() + grace
        while self._connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        await self._server.stop(grace)
        self._server = None

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    def addresses(self) -> list[str]:
        found = [f"tcp:{self.port}"] if self.port is not None else []
        return found + ([f"unix:{self.unix_path}"] if self.unix_path else [])

    @staticmethod
    def _bind(server: grpc.aio.Server, address: str,
              credentials: grpc.ServerCredentials | None) -> int:
        if credentials is not None:
            return server.add_secure_port(address, credentials)
        return server.add_insecure_port(address)

    # -- status ------------------------------------------------------------

    def status(self) -> list[ProxyStatus]:
        """Per connected proxy and type: sync state. Call on the server's loop."""
        result = []
        for conn in sorted(self._connections.values(), key=lambda c: (c.node.id, c.id)):
            view = self.cache.get_snapshot(conn.node.id)
            result.append(ProxyStatus(
                connection_id=conn.id, node_id=conn.node.id, cluster=conn.node.cluster,
                mode="Delta" if conn.delta else "SotW", envoy_version=_envoy_version(conn.node),
                connected_at=conn.connected_at,
                snapshot_version=view.version if view is not None else None,
                types=tuple(conn.machine.status(view))))
        return result

    # -- streams -----------------------------------------------------------

    async def _stream_sotw(self, _requests: object, context: grpc.aio.ServicerContext) -> None:
        await self._stream(context, delta=False)

    async def _stream_delta(self, _requests: object, context: grpc.aio.ServicerContext) -> None:
        await self._stream(context, delta=True)

    async def _stream(self, context: grpc.aio.ServicerContext, *, delta: bool) -> None:
        try:
            first = await context.read()
        except asyncio.CancelledError:
            return
        if first is grpc.aio.EOF:
            return
        if self._closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the xDS server is shutting down")
        if not first.node.id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "the first request of an ADS stream must carry node.id")
        conn = self._open(first.node, delta=delta)
        try:
            await self._run(conn, first, context)
        except asyncio.CancelledError:
            # Server shutdown or the proxy went away: nothing to report.
            _log.debug("stream %s cancelled", conn.id)
        except ProtocolError as exc:
            _log.warning("proxy %s broke the xDS protocol: %s", conn.node.id, exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        finally:
            await self._close(conn)

    def _open(self, node: Any, *, delta: bool) -> _Connection:
        self._count += 1
        conn_id = f"{node.id}-{self._epoch}-{self._count}"
        kind = DeltaStream if delta else SotwStream
        machine = kind(nonce_prefix=f"{self._epoch}.{self._count}.")
        conn = _Connection(id=conn_id, node=node, delta=delta, machine=machine,
                           loop=asyncio.get_running_loop())
        self._connections[conn_id] = conn
        self._streams_per_node[node.id] = self._streams_per_node.get(node.id, 0) + 1
        _log.info("proxy %s connected (%s, %s)", node.id, conn.id, "Delta" if delta else "SotW")
        return conn

    async def _close(self, conn: _Connection) -> None:
        self._connections.pop(conn.id, None)
        _log.info("proxy %s disconnected (%s)", conn.node.id, conn.id)
        left = self._streams_per_node.get(conn.node.id, 1) - 1
        if left > 0:
            self._streams_per_node[conn.node.id] = left
            return
        self._streams_per_node.pop(conn.node.id, None)
        if self._on_disconnect is not None:
            try:
                result = self._on_disconnect(conn.node)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                _log.exception("on_disconnect failed for proxy %s", conn.node.id)

    async def _run(self, conn: _Connection, first: object,
                   context: grpc.aio.ServicerContext) -> None:
        unwatch = self.cache.watch(conn.node.id, conn.wake)
        reader = asyncio.create_task(_read_requests(conn, context))
        try:
            assert self._gate is not None
            async with self._gate:  # pace first contacts during a reconnect storm
                await self._connect_hook(conn, context)
                await self._handle(conn, first, context)
            while True:
                item = await conn.queue.get()
                if item is _EOF:
                    return
                if isinstance(item, BaseException):
                    raise item
                await self._handle(conn, item, context)
        finally:
            unwatch()
            reader.cancel()

    async def _connect_hook(self, conn: _Connection, context: grpc.aio.ServicerContext) -> None:
        if self._on_connect is None:
            return
        try:
            result = self._on_connect(conn.node)
            if asyncio.iscoroutine(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("on_connect failed for proxy %s", conn.node.id)
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                "the control plane could not prepare this proxy's configuration")

    async def _handle(self, conn: _Connection, item: object,
                      context: grpc.aio.ServicerContext) -> None:
        previous = conn.view  # keeps resources it names alive while we encode
        conn.view = self.cache.get_snapshot(conn.node.id)
        if item is _CHANGED:
            conn.change_pending = False
            if conn.view is None:
                return
            actions = conn.machine.update(conn.view)
        else:
            actions = conn.machine.receive(item, conn.view)
        await self._apply(conn, actions, context)
        del previous

    async def _apply(self, conn: _Connection, actions: list[Action],
                     context: grpc.aio.ServicerContext) -> None:
        for action in actions:
            if isinstance(action, Send):
                await context.write(self.cache.encode(action, delta=conn.delta, view=conn.view))
            elif isinstance(action, Nack):
                _log.warning("proxy %s rejected %s (nonce %s, suspects %s): %s", conn.node.id,
                             resources.short_name(action.type_url), action.nonce,
                             ", ".join(action.rejected) or "-", action.message)


async def _read_requests(conn: _Connection, context: grpc.aio.ServicerContext) -> None:
    try:
        while True:
            request = await context.read()
            if request is grpc.aio.EOF:
                conn.queue.put_nowait(_EOF)
                return
            conn.queue.put_nowait(request)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the stream broke: end the handler with it
        conn.queue.put_nowait(exc)


def _envoy_version(node: Any) -> str:
    if node.HasField("user_agent_build_version"):
        version = node.user_agent_build_version.version
        return f"{version.major_number}.{version.minor_number}.{version.patch}"
    return str(node.user_agent_version)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _remove_stale_socket(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(mode):
        os.unlink(path)
    else:
        raise ValueError(f"unix_path: {path} exists and is not a socket; choose another path")
