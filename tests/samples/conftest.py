"""Start Bookinfo services as real processes on loopback, and fake peers that record what reaches them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

# Generous: other suites may load the machine; a healthy start takes well under a second.
STARTUP_TIMEOUT = 60.0
# Variables the services read: a test sets what it needs, nothing leaks in from the shell running pytest.
_SCRUBBED = (
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy",
    "PORT", "SERVICE_VERSION", "MALLA_VERSION", "ENABLE_RATINGS", "STAR_COLOR", "SERVICES_DOMAIN",
    "DETAILS_HOSTNAME", "DETAILS_SERVICE_PORT", "REVIEWS_HOSTNAME", "REVIEWS_SERVICE_PORT",
    "RATINGS_HOSTNAME", "RATINGS_SERVICE_PORT", "FLOOD_FACTOR", "ENABLE_EXTERNAL_BOOK_SERVICE",
    "DO_NOT_ENCRYPT", "HOSTNAME", "CLUSTER_NAME",
)

DETAILS_JSON = {"id": 0, "author": "William Shakespeare", "year": 1595, "type": "paperback", "pages": 200,
                "publisher": "PublisherA", "language": "English", "ISBN-10": "1234567890",
                "ISBN-13": "123-1234567890"}
REVIEWS_JSON = {"id": "0", "podname": "fake-reviews", "clustername": "null",
                "reviews": [{"reviewer": "Reviewer1", "text": "fake one"},
                            {"reviewer": "Reviewer2", "text": "fake two"}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client() -> httpx.Client:
    """The tests' own client: never through a proxy of the shell running pytest."""
    return httpx.Client(trust_env=False, timeout=30.0)


@dataclass
class Service:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env_for(self, peer: str) -> dict[str, str]:
        """The variables that point a caller at this service as its ``peer``."""
        return {f"{peer.upper()}_HOSTNAME": "127.0.0.1", f"{peer.upper()}_SERVICE_PORT": str(self.port)}


def _wait_healthy(service: Service) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with client() as c:
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                pytest.fail(f"{service.name} exited with {service.process.returncode}:\n{service.log.read_text()}")
            try:
                if c.get(f"{service.url}/health", timeout=1.0).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    pytest.fail(f"{service.name} did not answer /health within {STARTUP_TIMEOUT} s:\n{service.log.read_text()}")


class Launcher:
    """Starts ``python -m malla.samples.bookinfo.<module>`` with a scrubbed environment; stops them all at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Service] = []

    def env(self, extra: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        return {**env, "BIND_ADDRESS": "127.0.0.1", **extra}

    def start(self, module: str, *args: str, env: Mapping[str, str] | None = None,
              port: int | None = None) -> Service:
        """Start and wait for /health on ``port`` (a free one, given in ``$PORT`` unless ``env`` says otherwise)."""
        service = self.spawn(module, *args, env=env, port=port)
        _wait_healthy(service)
        return service

    def spawn(self, module: str, *args: str, env: Mapping[str, str] | None = None,
              port: int | None = None) -> Service:
        """Start without waiting: for services started together, then ``wait``-ed for."""
        port = port or free_port()
        log = self.workdir / f"{module}-{len(self.started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", f"malla.samples.bookinfo.{module}", *args],
                env=self.env({"PORT": str(port), **(env or {})}), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        service = Service(module, port, process, log)
        self.started.append(service)
        return service

    @staticmethod
    def wait(*services: Service) -> None:
        for service in services:
            _wait_healthy(service)

    def stop_all(self) -> None:
        for service in self.started:
            service.process.terminate()
        for service in self.started:
            try:
                service.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait(timeout=5)


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    """For services a whole test module shares."""
    launch = Launcher(tmp_path_factory.mktemp("bookinfo"))
    yield launch
    launch.stop_all()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    """For services one test starts for itself: stopped when the test ends."""
    launch = Launcher(tmp_path)
    yield launch
    launch.stop_all()


@dataclass(frozen=True)
class Seen:
    method: str
    target: str
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return urlsplit(self.target).path


@dataclass
class FakePeer:
    """An HTTP server on loopback that answers canned JSON by path prefix and records every request.

    It stands in for a Bookinfo peer, or for an HTTP proxy: a proxy gets the
    absolute URL as its request target, which ``Seen.target`` keeps.
    """

    routes: dict[str, tuple[int, Any, float]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env_for(self, peer: str) -> dict[str, str]:
        return {f"{peer.upper()}_HOSTNAME": "127.0.0.1", f"{peer.upper()}_SERVICE_PORT": str(self.port)}

    def answer(self, prefix: str, body: Any, *, status: int = 200, delay: float = 0.0) -> FakePeer:
        self.routes[prefix] = (status, body, delay)
        return self

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]

    def handle(self, method: str, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
        self.seen.append(Seen(method, target, headers))
        path = urlsplit(target).path
        for prefix, (status, body, delay) in self.routes.items():
            if path.startswith(prefix):
                time.sleep(delay)
                return status, json.dumps(body).encode()
        return 404, b'{"error": "no such fake route"}'


def _fake_handler(peer: FakePeer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, body = peer.handle(self.command, self.path, headers)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the caller gave up waiting (timeout tests)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def fake_peer() -> Iterator[Callable[[], FakePeer]]:
    servers: list[ThreadingHTTPServer] = []

    def start() -> FakePeer:
        peer = FakePeer()
        peer.server = ThreadingHTTPServer(("127.0.0.1", 0), _fake_handler(peer))
        peer.server.daemon_threads = True
        threading.Thread(target=peer.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(peer.server)
        return peer

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
