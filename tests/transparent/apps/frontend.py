"""A workload with no mesh settings at all: an HTTP server on $PORT (all addresses) that calls others.

GET /            -> "frontend -> " + the body of http://reviews:9080/
GET /call?url=U  -> the status and body of U
GET /resolve?name=N -> the addresses getaddrinfo gives for N, one per line
GET /env         -> the proxy variables it sees, one per line (none, in a transparent workload)
It uses only the standard library and no proxy (urllib reads none from an empty environment).
"""

import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 599, f"error: {exc}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/":
            status, body = fetch("http://reviews:9080/")
            self.answer(status, "frontend -> " + body)
        elif url.path == "/call":
            status, body = fetch(query["url"])
            self.answer(200, f"{status} {body}")
        elif url.path == "/resolve":
            try:
                found = sorted({a[4][0] for a in socket.getaddrinfo(query["name"], 80, type=socket.SOCK_STREAM)})
            except socket.gaierror as exc:
                found = [f"error: {exc}"]
            self.answer(200, "\n".join(found) + "\n")
        elif url.path == "/env":
            self.answer(200, "".join(f"{k}={v}\n" for k, v in sorted(os.environ.items()) if k.lower().endswith("_proxy")))
        else:
            self.answer(404, "not found\n")

    def answer(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "9080"))), Handler).serve_forever()
