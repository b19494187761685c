"""The HTTP plumbing the Bookinfo services share, so each service module holds only its behaviour.

In: a ``Router`` of handlers ``(Request) -> Response``. Out: a threading
HTTP/1.1 server on the service's port, JSON/text/redirect responses, the
header forwarding every Bookinfo service does, and an ``httpx`` client that
honours the proxy variables (``malla run`` points ``HTTP_PROXY`` at the
sidecar) and keeps no connection pool, as productpage's "do not pool" note
asks, so load spreads over every version behind a service.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.message import Message
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

DEFAULT_PORT = 9080

# The headers every Bookinfo service copies from the request it serves to the
# requests it makes (Istio's details and reviews keep the same list), see
# https://istio.io/latest/docs/tasks/observability/distributed-tracing/overview/#trace-context-propagation
TRACE_HEADERS = (
    "x-request-id",
    "x-ot-span-context",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "traceparent",
    "tracestate",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "sw8",
)
CONTEXT_HEADERS = ("end-user", "user-agent", "cookie", "authorization", "jwt")
PROPAGATED_HEADERS = TRACE_HEADERS + CONTEXT_HEADERS


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: Message
    body: bytes = b""
    params: tuple[str, ...] = ()

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def cookie(self, name: str) -> str | None:
        jar = SimpleCookie()
        try:
            jar.load(self.headers.get("cookie") or "")
        except CookieError:
            return None
        morsel = jar.get(name)
        return morsel.value if morsel is not None else None

    def values(self) -> dict[str, str]:
        """Query and form fields together, the query's first, as Flask's ``request.values``."""
        fields: dict[str, str] = {}
        if "application/x-www-form-urlencoded" in (self.header("content-type") or ""):
            body = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
            fields.update({k: v[0] for k, v in body.items()})
        fields.update({k: v[0] for k, v in parse_qs(self.query, keep_blank_values=True).items()})
        return fields


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(data: Any, *, status: int = 200) -> Response:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(status, body, "application/json")


def text_response(text: str, *, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> Response:
    return Response(status, text.encode(), content_type)


def redirect(location: str, *, set_cookies: Iterable[str] = ()) -> Response:
    headers = [("Location", location)] + [("Set-Cookie", c) for c in set_cookies]
    return Response(302, b"", "text/plain; charset=utf-8", headers)


Handler = Callable[[Request], Response]


class Router:
    """Regex routes; a route's groups become ``Request.params``. GET routes answer HEAD too."""

    def __init__(self) -> None:
        self._routes: list[tuple[re.Pattern[str], frozenset[str], Handler]] = []

    def route(self, pattern: str, *, methods: Sequence[str] = ("GET",)) -> Callable[[Handler], Handler]:
        allowed = frozenset(methods) | ({"HEAD"} if "GET" in methods else set())

        def register(handler: Handler) -> Handler:
            self._routes.append((re.compile(pattern), allowed, handler))
            return handler

        return register

    def dispatch(self, request: Request) -> Response:
        allowed: set[str] = set()
        for pattern, methods, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            if request.method in methods:
                return handler(replace(request, params=match.groups()))
            allowed |= methods
        if allowed:
            response = text_response("Method Not Allowed", status=405)
            response.headers.append(("Allow", ", ".join(sorted(allowed))))
            return response
        return text_response("Not Found", status=404)


def forward_headers(request: Request, names: Iterable[str] = PROPAGATED_HEADERS) -> dict[str, str]:
    """The listed headers of ``request`` that are present, to send on to the next service."""
    return {name: value for name in names if (value := request.header(name)) is not None}


def peer_url(name: str, *, env: Mapping[str, str]) -> str:
    """``http://<NAME>_HOSTNAME[.SERVICES_DOMAIN]:<NAME>_SERVICE_PORT``, Istio's images' way to find a peer."""
    upper = name.upper()
    host = env.get(f"{upper}_HOSTNAME") or name
    domain = f".{env['SERVICES_DOMAIN']}" if env.get("SERVICES_DOMAIN") else ""
    port = env.get(f"{upper}_SERVICE_PORT") or str(DEFAULT_PORT)
    return f"http://{host}{domain}:{port}"


@dataclass(frozen=True)
class Reply:
    """What a peer answered: ``status`` None when it could not be reached."""

    status: int | None
    data: Any = None


class Peers:
    """Calls to other services: proxy variables honoured (``trust_env``), no connection kept for reuse."""

    def __init__(self) -> None:
        self._client = httpx.Client(trust_env=True, limits=httpx.Limits(max_keepalive_connections=0))

    def get_json(self, url: str, *, headers: Mapping[str, str], timeout: float) -> Reply:
        try:
            response = self._client.get(url, headers=dict(headers), timeout=timeout)
        except httpx.HTTPError:
            return Reply(None)
        try:
            return Reply(response.status_code, response.json())
        except ValueError:
            # A body that is not JSON is as good as no answer to the callers.
            return Reply(response.status_code if response.status_code != 200 else 500)


def parse_args(argv: Sequence[str] | None, *, prog: str, versions: Sequence[str] = ()) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=f"Bookinfo's {prog} service.")
    parser.add_argument("port", nargs="?", type=int, help="port to listen on (default: $PORT, else 9080)")
    if versions:
        parser.add_argument(
            "--version", choices=versions,
            help="which version to be (default: $SERVICE_VERSION, else $MALLA_VERSION, else %s)" % versions[0],
        )
    args = parser.parse_args(argv)
    if args.port is None:
        args.port = _env_port(parser)
    if versions:
        args.version = _pick_version(parser, args.version, versions)
    return args


def _env_port(parser: argparse.ArgumentParser) -> int:
    raw = os.environ.get("PORT")
    if not raw:
        return DEFAULT_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        parser.error(f"environment variable PORT={raw!r}: must be a port number from 1 to 65535")
    return int(raw)


def _pick_version(parser: argparse.ArgumentParser, flag: str | None, versions: Sequence[str]) -> str:
    if flag:
        return flag
    for var in ("SERVICE_VERSION", "MALLA_VERSION"):
        value = os.environ.get(var)
        if value:
            if value not in versions:
                parser.error(f"environment variable {var}={value!r}: must be one of {', '.join(versions)}")
            return value
    return versions[0]


def serve(router: Router, *, name: str, port: int) -> None:
    """Serve ``router`` until SIGTERM or Ctrl-C, on ``$BIND_ADDRESS`` (default loopback)."""
    bind = os.environ.get("BIND_ADDRESS") or "127.0.0.1"
    server_class = _IPv6Server if ":" in bind else ThreadingHTTPServer
    server = server_class((bind, port), _handler_class(router, name))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"{name} listening on http://{bind}:{port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _split_target(target: str) -> tuple[str, str]:
    """Path and query of a request target; an absolute URL (sent as to a proxy) keeps only those."""
    if not target.startswith("/"):
        parts = urlsplit(target)
        return parts.path or "/", parts.query
    path, _, query = target.partition("?")
    return path, query


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _handler_class(router: Router, name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.router = router
    Handler.server_version = f"bookinfo-{name}"
    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    router: Router

    def _serve(self) -> None:
        path, query = _split_target(self.path)
        request = Request(self.command, path, query, self.headers, self._read_body())
        try:
            response = self.router.dispatch(request)
        except Exception:  # one bad request must not take the service down
            traceback.print_exc()
            response = text_response("Internal Server Error", status=500)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for key, value in response.headers:
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            return self._read_chunks()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunks(self) -> bytes:
        body = bytearray()
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            body += self.rfile.read(size)
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
            pass
        return bytes(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve
