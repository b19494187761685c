"""A remote agent's control-plane API on loopback: the same HTTP calls, carried over the mTLS port.

The parts of an agent that talk to the control plane (registration, the
membership loop, certificate reports, the telemetry's workload directory)
speak HTTP to ``state.api_url``. On a host without the control plane, that
URL is this relay: a loopback HTTP server that passes each call on as
``malla.v1.AgentApi/Call`` (``malla.controlplane.remote_agents``) over
mTLS with the workload's current certificate, and answers with what the
control plane answered. Its URL ends in a random path segment, so another
user of the host cannot act with the workload's identity through it.

Answers when the call could not be made: 503 before the workload has a
certificate or while the control plane is unreachable; 401/403/400 when the
control plane refused the call (its reason in ``error``).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import grpc

from malla.agent.identity import WorkloadCertificate
from malla.controlplane.remote_agents import FULL_METHOD, ApiCall, decode_answer

log = logging.getLogger(__name__)

CALL_TIMEOUT = 4.0  # below the callers' own timeouts (5-10 s), so they see the reason
_STATUS = {grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403,
           grpc.StatusCode.INVALID_ARGUMENT: 400}


class Tunnel:
    """Calls over mTLS with the newest certificate (one channel per certificate)."""

    def __init__(self, target: str, *, server_name: str,
                 certificate: Callable[[], WorkloadCertificate | None]) -> None:
        self.target = target
        self._server_name = server_name
        self.certificate = certificate
        self._lock = threading.Lock()
        self._channel: tuple[int, grpc.Channel] | None = None

    def call(self, call: ApiCall) -> tuple[int, Any]:
        cert = self.certificate()
        if cert is None:
            return 503, {"error": "the workload has no certificate yet; the control plane is reached with it"}
        try:
            answer = self._channel_for(cert).unary_unary(FULL_METHOD)(call.encode(), timeout=CALL_TIMEOUT)
        except grpc.RpcError as exc:
            code = exc.code()
            return _STATUS.get(code, 503), {"error": f"the control plane at {self.target} answered "
                                                     f"{code.name}: {exc.details()}"}
        return decode_answer(answer)

    def _channel_for(self, cert: WorkloadCertificate) -> grpc.Channel:
        with self._lock:
            if self._channel is not None and self._channel[0] == cert.serial:
                return self._channel[1]
            if self._channel is not None:
                self._channel[1].close()
            credentials = grpc.ssl_channel_credentials(root_certificates=cert.trust_bundle_pem,
                                                       private_key=cert.key_pem, certificate_chain=cert.chain_pem)
            channel = grpc.secure_channel(self.target, credentials,
                                          options=[("grpc.ssl_target_name_override", self._server_name)])
            self._channel = (cert.serial, channel)
            return channel

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel[1].close()
                self._channel = None


class ApiRelay:
    """The loopback HTTP server; ``start()`` gives the URL to use as ``state.api_url``."""

    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel
        self._prefix = "/" + secrets.token_urlsafe(16)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self._prefix, self.tunnel))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="malla-api-relay", daemon=True)
        self._thread.start()
        return f"http://127.0.0.1:{server.server_address[1]}{self._prefix}"

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self.tunnel.close()


def _handler(prefix: str, tunnel: Tunnel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _relay(self) -> None:
            url = urlsplit(self.path)
            if not url.path.startswith(prefix + "/"):
                self._answer(404, {"error": "not found"})
                return
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                self._answer(400, {"error": "the body must be JSON"})
                return
            call = ApiCall(self.command, url.path[len(prefix):], dict(parse_qsl(url.query)), body)
            self._answer(*tunnel.call(call))

        do_GET = do_POST = do_PUT = do_DELETE = _relay

        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("api relay: " + format, *args)

    return Handler
