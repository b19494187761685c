"""A small upstream app for the end-to-end tests: run by ``malla run`` (the agent) as a workload.

It listens on ``$PORT`` (127.0.0.1, as the agent asks) and answers who it is:
HTTP requests get JSON ``{"name", "version", "instance", "host", "path",
"headers"}`` from ``$MALLA_NAME``/``$MALLA_VERSION``; with ``--tcp`` every
connection gets one line ``NAME VERSION INSTANCE`` and is closed.

With ``--info FILE`` it writes ``{"address", "port", "pid"}`` there once it
listens, so the test learns the workload's mesh address (``$MALLA_ADDRESS``)
and the app's own port. ``--client`` makes a client workload: no server, it
writes its info and waits to be stopped; the test sends traffic through
its sidecar. Behaviour is set per process on the command line: ``--status S`` answers S
to everything, ``--fail-every N --fail-status S`` fails the 1st, (N+1)th, ...
request with S, ``--delay-ms D`` waits before answering. Per request, the
header ``x-sleep-ms`` adds a wait. ``GET /_stats`` (sent straight to the app
port, not through the mesh) returns what an HTTP app saw: request count,
failures, Host headers. It imports nothing from malla, so it starts in tens of ms.
"""

from __future__ import annotations

import argparse
import json
import os
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STATS_PATH = "/_stats"


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.failures = 0
        self.hosts: dict[str, int] = {}

    def count(self, host: str) -> int:
        with self.lock:
            self.requests += 1
            self.hosts[host] = self.hosts.get(host, 0) + 1
            return self.requests

    def failed(self) -> None:
        with self.lock:
            self.failures += 1

    def to_json(self) -> dict[str, object]:
        with self.lock:
            return {"requests": self.requests, "failures": self.failures, "hosts": dict(self.hosts)}


def identity() -> dict[str, str]:
    return {
        "name": os.environ.get("MALLA_NAME", "?"),
        "version": os.environ.get("MALLA_VERSION", ""),
        "instance": os.environ.get("UPSTREAM_INSTANCE", str(os.getpid())),
    }


def http_handler(args: argparse.Namespace, stats: Stats) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so Envoy reuses its upstream connections
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path == STATS_PATH:
                self._send(200, stats.to_json())
                return
            number = stats.count(self.headers.get("host", ""))
            wait_ms = args.delay_ms + int(self.headers.get("x-sleep-ms") or 0)
            if wait_ms:
                time.sleep(wait_ms / 1000)
            status = args.status
            if args.fail_every and (number - 1) % args.fail_every == 0:
                status = args.fail_status
            if status >= 500:
                stats.failed()
            body = identity() | {
                "host": self.headers.get("host", ""),
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
            self._send(status, body)

        do_POST = do_GET  # noqa: N815

        def _send(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: object) -> None:
            pass

    return Handler


def tcp_handler(stats: Stats) -> type[socketserver.BaseRequestHandler]:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            me = identity()
            stats.count("")
            self.request.sendall(f"{me['name']} {me['version']} {me['instance']}\n".encode())

    return Handler


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tcp", action="store_true")
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--fail-status", type=int, default=503)
    parser.add_argument("--delay-ms", type=int, default=0)
    parser.add_argument("--info", type=Path)
    parser.add_argument("--client", action="store_true")
    args = parser.parse_args()
    if args.client:
        write_info(args.info, port=0)
        threading.Event().wait()
    stats = Stats()
    port = int(os.environ["PORT"])
    if args.tcp:
        server: socketserver.BaseServer = _TcpServer(("127.0.0.1", port), tcp_handler(stats))
    else:
        ThreadingHTTPServer.daemon_threads = True
        server = ThreadingHTTPServer(("127.0.0.1", port), http_handler(args, stats))
    write_info(args.info, port=port)
    server.serve_forever()


def write_info(path: Path | None, *, port: int) -> None:
    if path is None:
        return
    info = {"address": os.environ.get("MALLA_ADDRESS", ""), "port": port, "pid": os.getpid()}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)


if __name__ == "__main__":
    main()
