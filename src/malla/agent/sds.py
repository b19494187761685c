"""The agent's SDS server: the workload's certificate to its Envoy over a Unix socket.

In: `WorkloadCertificate`s from the rotator (`update`, callable from any
thread). Out: Envoy `Secret`s on
`envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets` (SotW), as
Istio's agent serves them: `default` (tls_certificate: chain + key) and
`ROOTCA` (validation_context.trusted_ca: the trust bundle). Envoy asks for
them by name through the bootstrap cluster `sds-grpc` (`sds_cluster()`);
a new certificate is pushed on the open streams, so Envoy uses it for new
connections without a restart.

The protocol is malla.xds's sans-IO SotW machine and snapshot cache; this
module is only the gRPC adapter. `WorkloadIdentityThread` runs the rotator
and this server on a private event loop for the synchronous agent. One socket serves one workload: every
stream sees the same secrets whatever its node id. A name it does not hold
gets no answer (Envoy keeps waiting), as in Istio.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import os
import stat
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from envoy.service.discovery.v3 import discovery_pb2

from malla.agent.identity import CertificateRotator, IdentityStatus, WorkloadCertificate
from malla.pilot.names import ROOT_CA_SECRET, WORKLOAD_CERT_SECRET
from malla.xds import resources
from malla.xds.cache import PreparedSnapshot, SnapshotCache
from malla.xds.protocol import Action, Nack, ProtocolError, Send, SyncState, TypeStatus
from malla.xds.server import SERVER_OPTIONS
from malla.xds.sotw import SotwStream

_log = logging.getLogger(__name__)
T = TypeVar("T")

SERVICE = "envoy.service.secret.v3.SecretDiscoveryService"
SDS_CLUSTER = "sds-grpc"
_KEY = "workload"  # the cache holds one snapshot: this socket's workload
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107


def build_secrets(cert: WorkloadCertificate) -> dict[str, secret_pb2.Secret]:
    """`default` (chain + key) and `ROOTCA` (trust bundle), by name."""
    workload = secret_pb2.Secret(
        name=WORKLOAD_CERT_SECRET,
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=cert.chain_pem),
            private_key=base_pb2.DataSource(inline_bytes=cert.key_pem)))
    roots = secret_pb2.Secret(
        name=ROOT_CA_SECRET,
        validation_context=common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(inline_bytes=cert.trust_bundle_pem)))
    return {WORKLOAD_CERT_SECRET: workload, ROOT_CA_SECRET: roots}


def sds_cluster(socket_path: str, *, name: str = SDS_CLUSTER) -> dict[str, Any]:
    """The bootstrap's static cluster towards this server (HTTP/2 over the Unix socket)."""
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"pipe": {"path": socket_path}}}}]}]},
        "typed_extension_protocol_options": {_HTTP_OPTIONS: {
            "@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
            "explicit_http_config": {"http2_protocol_options": {}},
        }},
    }


_CHANGED = object()
_EOF = object()


@dataclass(eq=False)
class _Stream:
    id: str
    node_id: str
    machine: SotwStream
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    view: PreparedSnapshot | None = None
    served: bool = False

    def wake(self, _key: str) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, _CHANGED)


class SdsServer:
    """Serves one workload's secrets to its Envoy over a Unix socket."""

    def __init__(self) -> None:
        self.cache = SnapshotCache(check_references=False)
        self._streams: dict[str, _Stream] = {}
        self._ids = itertools.count(1)
        self._server: grpc.aio.Server | None = None
        self.path: str | None = None

    def update(self, cert: WorkloadCertificate) -> None:
        """Serve `cert` from now on; open streams get it pushed. Any thread."""
        self.cache.set_snapshot(_KEY, {resources.SECRET: build_secrets(cert)})

    def version(self) -> str | None:
        """The version of what is served now (a content hash), None before the first update."""
        view = self.cache.get_snapshot(_KEY)
        return view.type_version(resources.SECRET) if view is not None else None

    async def start(self, path: str | Path, *, mode: int = 0o600) -> None:
        """Listen on the Unix socket `path` (its directory is made 0700 if missing)."""
        path = Path(path)
        if len(str(path).encode()) > MAX_SOCKET_PATH:
            raise ValueError(f"SDS socket path: {path} is longer than {MAX_SOCKET_PATH} bytes, "
                             "the Unix socket limit; choose a shorter path")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _remove_stale_socket(path)
        server = grpc.aio.server(options=list(SERVER_OPTIONS))
        handler = grpc.stream_stream_rpc_method_handler(
            self._stream_secrets, request_deserializer=discovery_pb2.DiscoveryRequest.FromString)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"StreamSecrets": handler}),))
        try:
            bound = server.add_insecure_port(f"unix:{path}")
        except RuntimeError:  # gRPC's bind failure says nothing useful
            bound = 0
        if bound == 0:
            raise OSError(f"the SDS server cannot listen on {path}; choose another path")
        await server.start()
        os.chmod(path, mode)
        self._server, self.path = server, str(path)
        _log.info("SDS server listening on unix:%s", path)

    async def stop(self, *, grace: float = 1.0) -> None:
        if self._server is None:
            return
        for stream in list(self._streams.values()):
            stream.queue.put_nowait(_EOF)
        await self._server.stop(grace)
        self._server = None
        if self.path is not None:
            _remove_stale_socket(Path(self.path))

    def status(self) -> Mapping[str, list[TypeStatus]]:
        """Per open stream (by id): what Envoy holds. Call on the server's loop."""
        view = self.cache.get_snapshot(_KEY)
        return {sid: s.machine.status(view) for sid, s in sorted(self._streams.items())}

    def synced(self) -> bool:
        """Every stream that was served has ACKed the current secrets (and one was served)."""
        view = self.cache.get_snapshot(_KEY)
        states = [t.state for s in self._streams.values() if s.served
                  for t in s.machine.status(view)]
        return bool(states) and all(state == SyncState.SYNCED for state in states)

    # -- streams -------------------------------------------------------------

    async def _stream_secrets(self, _requests: object, context: grpc.aio.ServicerContext) -> None:
        try:
            first = await context.read()
        except asyncio.CancelledError:
            return
        if first is grpc.aio.EOF:
            return
        number = next(self._ids)
        stream = _Stream(id=f"sds-{number}", node_id=first.node.id,
                         machine=SotwStream(nonce_prefix=f"{number}."),
                         loop=asyncio.get_running_loop())
        self._streams[stream.id] = stream
        unwatch = self.cache.watch(_KEY, stream.wake)
        reader = asyncio.create_task(_read_requests(stream, context))
        try:
            await self._serve(stream, first, context)
        except asyncio.CancelledError:
            _log.debug("SDS stream %s cancelled", stream.id)
        except ProtocolError as exc:
            _log.warning("Envoy %s broke the SDS protocol: %s", stream.node_id, exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        finally:
            unwatch()
            reader.cancel()
            self._streams.pop(stream.id, None)

    async def _serve(self, stream: _Stream, first: object,
                     context: grpc.aio.ServicerContext) -> None:
        item: object = first
        while True:
            previous = stream.view  # keeps the resources it names alive while encoding
            stream.view = self.cache.get_snapshot(_KEY)
            if item is _CHANGED:
                actions = stream.machine.update(stream.view) if stream.view is not None else []
            else:
                actions = stream.machine.receive(item, stream.view)
            await self._apply(stream, actions, context)
            del previous
            item = await stream.queue.get()
            if item is _EOF:
                return
            if isinstance(item, BaseException):
                raise item

    async def _apply(self, stream: _Stream, actions: list[Action],
                     context: grpc.aio.ServicerContext) -> None:
        for action in actions:
            if isinstance(action, Send):
                if not action.resources:
                    # Envoy NACKs an SDS response without its secret ("Missing SDS
                    # resources"): a name this agent does not hold gets silence.
                    continue
                stream.served = True
                await context.write(self.cache.encode(action, delta=False, view=stream.view))
            elif isinstance(action, Nack):
                _log.error("Envoy %s rejected secrets %s: %s", stream.node_id,
                           ", ".join(action.rejected) or "-", action.message)


async def _read_requests(stream: _Stream, context: grpc.aio.ServicerContext) -> None:
    try:
        while True:
            request = await context.read()
            if request is grpc.aio.EOF:
                stream.queue.put_nowait(_EOF)
                return
            stream.queue.put_nowait(request)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the stream broke: end the handler with it
        stream.queue.put_nowait(exc)


def _remove_stale_socket(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ValueError(f"SDS socket path: {path} exists and is not a socket; choose another path")
    path.unlink()


class WorkloadIdentityThread:
    """A rotator feeding an SDS server, both on a private event loop in a daemon thread."""

    def __init__(self, rotator: CertificateRotator, *, socket_path: str | Path) -> None:
        self.rotator = rotator
        self.socket_path = str(socket_path)
        self.sds = SdsServer()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, *, timeout: float = 30.0) -> WorkloadCertificate:
        """Serve SDS and wait for the first certificate (retrying as the rotator does)."""
        if self._thread is not None:
            raise RuntimeError("this WorkloadIdentityThread was already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="malla-sds", daemon=True)
        self._thread.start()
        try:
            return self._call(self._start(timeout), timeout=timeout + 5)
        except BaseException:
            self.stop()
            raise

    async def _start(self, timeout: float) -> WorkloadCertificate:
        await self.sds.start(self.socket_path)
        self.rotator.add_listener(self.sds.update)
        self._task = asyncio.create_task(self.rotator.run())
        deadline = asyncio.get_running_loop().time() + timeout
        while self.rotator.current is None:
            if asyncio.get_running_loop().time() > deadline:
                status = self.rotator.status()
                raise TimeoutError(f"no certificate for {self.rotator.spiffe_id} within "
                                   f"{timeout:.0f} s: {status.last_error or 'the CA did not answer'}")
            await asyncio.sleep(0.02)
        return self.rotator.current

    def status(self) -> IdentityStatus:
        return self._call(_value(self.rotator.status))

    def synced(self) -> bool:
        """Envoy holds the current certificate (every served stream ACKed it)."""
        return self._call(_value(self.sds.synced))

    def stop(self, *, timeout: float = 5.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._call(self._shutdown(), timeout=timeout)
        finally:
            self._loop = self._thread = None
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if not loop.is_running():
                loop.close()

    async def _shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.sds.stop(grace=0.5)

    def _call(self, coro: Coroutine[Any, Any, T], *, timeout: float = 10.0) -> T:
        if self._loop is None:
            raise RuntimeError("the workload identity thread is not running")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            if future.done():  # the coroutine's own TimeoutError (the same class since 3.11)
                raise
            future.cancel()
            raise TimeoutError(f"the SDS thread did not answer within {timeout} s") from None


async def _value(fn: Callable[[], T]) -> T:
    return fn()
