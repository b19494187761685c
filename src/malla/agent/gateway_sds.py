"""The gateway agent's SDS server: secrets to its own Envoy over a Unix socket (Istio's ``sds-grpc``).

In: the names Envoy asks for, handed to a ``want`` callback that loads them
and calls ``publish`` with every secret it has (now and whenever a file
changes). Out: ``envoy.service.secret.v3.SecretDiscoveryService``
(``StreamSecrets``, state of the world) on a Unix socket.

Envoy opens one stream per secret. Each stream runs the same sans-IO
protocol machine as the control plane's ADS server (``malla.xds.sotw``)
over one shared snapshot of every secret asked for so far, so ACK/NACK
bookkeeping, versions and nonces behave the same. A name with no secret yet
gets no answer: Envoy keeps waiting, and gets the secret when its files
appear.

The socket lives in a directory only this user can enter (the secrets are
private keys), kept short because Unix socket paths are limited to 107 bytes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2

from malla.xds import resources
from malla.xds.cache import SnapshotCache
from malla.xds.protocol import Nack, Send
from malla.xds.sotw import SotwStream

log = logging.getLogger(__name__)

SERVICE = "envoy.service.secret.v3.SecretDiscoveryService"
_NODE = "local"  # one Envoy per agent: the cache holds a single snapshot
_CHANGED = object()
_EOF = object()

Want = Callable[[frozenset[str]], None]
OnNack = Callable[[str, str], None]


class SdsServer:
    """Serves published ``Secret``s over SDS on a Unix socket, from its own thread and loop."""

    def __init__(self, *, want: Want, on_nack: OnNack | None = None) -> None:
        self.cache = SnapshotCache()
        self._want = want
        self._on_nack = on_nack
        self._streams = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: grpc.aio.Server | None = None
        self._dir: Path | None = None
        self.socket_path: Path | None = None
        self.publish({})

    def publish(self, secrets: Mapping[str, secret_pb2.Secret]) -> None:
        """Every secret there is now (any thread); streams push what changed."""
        self.cache.set_snapshot(_NODE, {resources.SECRET: dict(secrets)})

    # -- lifecycle ---------------------------------------------------------

    def prepare(self) -> Path:
        """The socket's path, in a fresh private directory; Envoy may be started before ``start``."""
        if self.socket_path is None:
            self._dir = Path(tempfile.mkdtemp(prefix="malla-sds-"))  # mode 0700
            self.socket_path = self._dir / "sds.sock"
        return self.socket_path

    def start(self, *, timeout: float = 10.0) -> Path:
        """Listen on the socket; returns its path."""
        path = self.prepare()
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="malla-sds", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("the SDS event loop did not start in time")
        asyncio.run_coroutine_threadsafe(self._serve(str(path)), loop).result(timeout)
        return path

    async def _serve(self, path: str) -> None:
        server = grpc.aio.server()
        handlers = {
            "StreamSecrets": grpc.stream_stream_rpc_method_handler(
                self._stream, request_deserializer=discovery_pb2.DiscoveryRequest.FromString
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        server.add_insecure_port(f"unix:{path}")
        await server.start()
        self._server = server

    def stop(self, *, timeout: float = 5.0) -> None:
        loop, thread, server = self._loop, self._thread, self._server
        if loop is not None and thread is not None:
            if server is not None:
                try:
                    asyncio.run_coroutine_threadsafe(server.stop(0.5), loop).result(timeout)
                except Exception:  # stopping anyway: the loop goes next
                    log.debug("SDS server did not stop cleanly", exc_info=True)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
        self._loop = self._thread = self._server = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # -- streams -----------------------------------------------------------

    async def _stream(self, _requests: object, context: grpc.aio.ServicerContext) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        machine = SotwStream(nonce_prefix=f"sds{next(self._streams)}.")

        def wake(_node: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, _CHANGED)

        unwatch = self.cache.watch(_NODE, wake)
        reader = asyncio.create_task(_read(context, queue))
        try:
            while (item := await queue.get()) is not _EOF:
                if isinstance(item, BaseException):
                    raise item
                await self._handle(item, machine, context)
        except asyncio.CancelledError:
            pass  # Envoy went away or the server is stopping
        finally:
            unwatch()
            reader.cancel()

    async def _handle(self, item: object, machine: SotwStream, context: grpc.aio.ServicerContext) -> None:
        if item is _CHANGED:
            view = self.cache.get_snapshot(_NODE)
            actions = machine.update(view) if view is not None else []
        else:
            assert isinstance(item, discovery_pb2.DiscoveryRequest)
            if item.type_url != resources.SECRET:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"this server serves only {resources.SECRET}")
            self._want(frozenset(item.resource_names))
            view = self.cache.get_snapshot(_NODE)
            actions = machine.receive(item, view)
        for action in actions:
            if isinstance(action, Send):
                await context.write(self.cache.encode(action, delta=False, view=view))
            elif isinstance(action, Nack):
                log.warning("Envoy rejected secrets %s: %s", ", ".join(action.rejected) or "-", action.message)
                if self._on_nack is not None:
                    self._on_nack(", ".join(action.rejected), action.message)


async def _read(context: Any, queue: asyncio.Queue[object]) -> None:
    try:
        while True:
            request = await context.read()
            if request is grpc.aio.EOF:
                queue.put_nowait(_EOF)
                return
            queue.put_nowait(request)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the stream broke: end the handler with it
        queue.put_nowait(exc)
