"""Run an `XdsServer` on its own event loop in a background thread.

A connection storm keeps the xDS loop busy for seconds (measured: a unary call
waited 2.4-4.8 s during a 2,000-proxy sync), so health, admin and API traffic
belong elsewhere. This gives the xDS server a loop of its own and offers a
thread-safe face: start, status, stop. Snapshots are set on the shared
`SnapshotCache` from any thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import grpc

from malla.xds.cache import SnapshotCache
from malla.xds.server import DEFAULT_TCP, SERVICE, ProxyStatus, XdsServer

T = TypeVar("T")


class XdsServerThread:
    """An `XdsServer` living on a private event loop in a daemon thread."""

    def __init__(self, cache: SnapshotCache, *, tcp: tuple[str, int] | None = DEFAULT_TCP,
                 unix_path: str | None = None, **server_kwargs: Any) -> None:
        self.cache = cache
        self._tcp = tcp
        self._unix_path = unix_path
        self._server_kwargs = server_kwargs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.server: XdsServer | None = None
        self.port: int | None = None

    def start(self, *, timeout: float = 10.0) -> int | None:
        """Start serving; returns the bound TCP port (useful with port 0)."""
        if self._thread is not None:
            raise RuntimeError("this XdsServerThread was already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="malla-xds", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("the xDS event loop did not start in time")
        self.server = XdsServer(self.cache, **self._server_kwargs)
        self.port = self.run(self.server.start(tcp=self._tcp, unix_path=self._unix_path),
                             timeout=timeout)
        return self.port

    def run(self, coro: Coroutine[Any, Any, T], *, timeout: float = 10.0) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        if self._loop is None:
            raise RuntimeError("the server thread is not running")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"xDS server call did not finish within {timeout} s") from None

    def call(self, fn: Callable[[], T], *, timeout: float = 10.0) -> T:
        """Run a plain function on the server's loop (its state lives there)."""
        async def invoke() -> T:
            return fn()
        return self.run(invoke(), timeout=timeout)

    def ads_service(self) -> grpc.GenericRpcHandler:
        """The running server's ADS streams, for one more gRPC server on this loop (istiod's mTLS 15012).

        Streams opened there are this server's own: one status, one set of hooks.
        """
        server = self.server
        if server is None:
            raise RuntimeError("the xDS server is not running")
        return grpc.method_handlers_generic_handler(SERVICE, server.method_handlers())

    def status(self, *, timeout: float = 10.0) -> list[ProxyStatus]:
        server = self.server
        if server is None:
            return []
        return self.call(server.status, timeout=timeout)

    def stop(self, *, grace: float = 1.0, timeout: float = 10.0) -> None:
        loop, thread, server = self._loop, self._thread, self.server
        if loop is None or thread is None:
            return
        try:
            if server is not None:
                self.run(server.stop(grace=grace), timeout=timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._loop = self._thread = self.server = None

    def __enter__(self) -> XdsServerThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
