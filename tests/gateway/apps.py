"""Tiny workloads for the gateway tests, run under ``malla run`` (they listen on $PORT).

``python apps.py http``: answers every GET with JSON naming the workload, path and Host.
``python apps.py tcp``: echoes each line back prefixed with the workload's name.
``python apps.py tls CERT KEY``: HTTPS with that certificate, answering like ``http``.
"""

from __future__ import annotations

import http.server
import json
import os
import socketserver
import ssl
import sys

NAME = os.environ.get("MALLA_NAME", "app")
PORT = int(os.environ["PORT"])


class Http(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = json.dumps({"name": NAME, "path": self.path, "host": self.headers.get("host")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


class Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(f"{NAME}: ".encode() + line)


def main(mode: str, *args: str) -> None:
    if mode == "tcp":
        server: socketserver.TCPServer = socketserver.ThreadingTCPServer(("127.0.0.1", PORT), Echo)
    else:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Http)
    if mode == "tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args[0], args[1])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:])
