"""The agent's access-log server: Envoy's gRPC access-log service on a Unix socket.

``envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs`` is a
client stream: Envoy opens one per access logger (and worker) and sends
batches of HTTP or TCP entries, the first naming the logger
(``identifier.log_name``). Every entry goes to the ``Recorder`` on the
server's own event loop (one thread, so the recorder needs no lock). The
socket lives in a private temporary directory: a Unix socket path must fit
in 107 bytes, which a deep home directory would not.

The server runs on its own thread and loop; start it after the agent has
forked its children (Envoy, the app): a fork while gRPC's threads run can
abort the child.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from envoy.service.accesslog.v3 import als_pb2

from malla.telemetry.recorder import Recorder

log = logging.getLogger(__name__)

SERVICE = "envoy.service.accesslog.v3.AccessLogService"


class AccessLogServer:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.entries = 0  # received so far, for tests and status
        self._dir: Path | None = None
        self.socket_path: Path | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: grpc.aio.Server | None = None

    def prepare(self) -> Path:
        """The socket's path (Envoy may be configured with it before ``start``)."""
        if self.socket_path is None:
            self._dir = Path(tempfile.mkdtemp(prefix="malla-als-"))  # mode 0700: only this user's Envoy
            self.socket_path = self._dir / "als.sock"
        return self.socket_path

    def start(self, *, timeout: float = 10.0) -> Path:
        path = self.prepare()
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="malla-als", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(str(path)), loop).result(timeout)
        return path

    async def _serve(self, path: str) -> None:
        server = grpc.aio.server()
        handler = grpc.stream_unary_rpc_method_handler(
            self._stream,
            request_deserializer=als_pb2.StreamAccessLogsMessage.FromString,
            response_serializer=als_pb2.StreamAccessLogsResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"StreamAccessLogs": handler}),)
        )
        server.add_insecure_port(f"unix:{path}")
        await server.start()
        self._server = server

    async def _stream(
        self, messages: AsyncIterator[als_pb2.StreamAccessLogsMessage], _context: grpc.aio.ServicerContext
    ) -> als_pb2.StreamAccessLogsResponse:
        async for message in messages:
            try:
                self._record(message)
            except Exception:  # one odd entry must not end the stream, nor lose the ones after it
                log.exception("could not record an access-log entry")
        return als_pb2.StreamAccessLogsResponse()

    def _record(self, message: als_pb2.StreamAccessLogsMessage) -> None:
        for http in message.http_logs.log_entry:
            self.entries += 1
            self.recorder.http(http)
        for tcp in message.tcp_logs.log_entry:
            self.entries += 1
            self.recorder.tcp(tcp)

    def stop(self, *, timeout: float = 5.0) -> None:
        loop, thread, server = self._loop, self._thread, self._server
        if loop is not None and thread is not None:
            if server is not None:
                try:
                    asyncio.run_coroutine_threadsafe(server.stop(0.2), loop).result(timeout)
                except Exception:  # stopping anyway: the loop goes next
                    log.debug("the access-log server did not stop cleanly", exc_info=True)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if not thread.is_alive():
                loop.close()
        self._loop = self._thread = self._server = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
