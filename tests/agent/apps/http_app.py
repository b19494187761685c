"""A mesh workload for the tests: an HTTP server on $PORT that says who it is.

Its files live in $APP_STATE: ``env.json`` (its environment and pid, written at
start), ``signals.log`` (a line per SIGTERM). GET / answers ``NAME VERSION``,
with `` terminating`` once SIGTERM arrived: a request answered like that
reached an app that was already stopping. Knobs, all optional:
``APP_LISTEN_AFTER`` a file that must exist before it listens;
``APP_READY_AFTER`` a file that must exist before GET /ready answers 200;
``APP_EXIT_AFTER`` a file whose appearance makes it exit with status 3;
``APP_TERM_GRACE`` seconds it keeps serving after SIGTERM (then exits 0).
"""

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STATE = Path(os.environ["APP_STATE"])
terminating = threading.Event()


def wait_for(name):
    path = os.environ.get(name)
    while path and not os.path.exists(path):
        time.sleep(0.02)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/ready" and not (os.environ.get("APP_READY_AFTER") is None or os.path.exists(os.environ["APP_READY_AFTER"])):
            self.answer(503, "not ready\n")
            return
        who = f"{os.environ.get('MALLA_NAME')} {os.environ.get('MALLA_VERSION', '-')}"
        self.answer(200, who + (" terminating" if terminating.is_set() else "") + "\n")

    def answer(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def on_term(signum, frame):
    with (STATE / "signals.log").open("a") as fh:
        fh.write("SIGTERM\n")
    terminating.set()
    grace = float(os.environ.get("APP_TERM_GRACE", "0.5"))
    threading.Timer(grace, lambda: os._exit(0)).start()


def exit_when_told():
    wait_for("APP_EXIT_AFTER")
    os._exit(3)


signal.signal(signal.SIGTERM, on_term)
env = {k: v for k, v in os.environ.items() if k == "PORT" or k.startswith("MALLA_") or k.lower().endswith("_proxy")}
(STATE / "env.json").write_text(json.dumps({"pid": os.getpid(), "env": env}))
wait_for("APP_LISTEN_AFTER")
server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
if os.environ.get("APP_EXIT_AFTER"):
    threading.Thread(target=exit_when_told, daemon=True).start()
server.serve_forever()
