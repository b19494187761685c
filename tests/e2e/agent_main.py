"""``malla run`` without its command line: the real agent, in a process of its own.

The end-to-end tests fork agents from a multiprocessing fork server that
imported the agent once, instead of starting ``python -m malla run`` per
workload (about 0.5 s of CPU in imports each, on a 2-core budget). The fork
server is a fresh interpreter with no gRPC threads, which the agent needs:
it starts Envoy with a ``preexec_fn``. What runs is ``malla.agent.run.run``,
the function behind ``malla run``: signals, readiness, registration, exit.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from malla.agent.run import AgentError, RunOptions, run
from malla.controlplane.home import ControlPlaneState


def run_agent(options: RunOptions, state: ControlPlaneState, log_path: str) -> None:
    """The body of one agent process: output to ``log_path``, exit with the app's status."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    logging.basicConfig(level=logging.WARNING)
    try:
        code = run(options, state, progress=lambda message: print(f"{time.time():.3f} malla: {message}", flush=True))
    except AgentError as exc:
        print(f"error: {exc}", flush=True)
        code = 1
    sys.exit(code)
