"""Keep the sidecar alive: restart a crashed Envoy, give up loudly when it keeps crashing.

A workload without its sidecar is cut off from the mesh, so the agent
watches its Envoy. An unexpected exit is logged with Envoy's status and the
sidecar is started again from the same bootstrap (it reconnects to the
control plane and is configured as before). More than ``max_restarts``
crashes within ``window`` seconds stop the workload as a stop signal would:
withdrawn first, then the app told to stop, with a message saying why.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import TYPE_CHECKING

from malla.envoy.process import EnvoyError

if TYPE_CHECKING:
    from malla.agent.run import Agent

log = logging.getLogger(__name__)


def supervise_sidecar(agent: Agent, *, max_restarts: int = 3, window: float = 60.0, poll: float = 0.5) -> threading.Thread:
    def loop() -> None:
        crashes: list[float] = []
        while not agent.stopping.wait(poll):
            w = agent.workload
            if w is None or w.envoy.running():
                continue
            if agent.stopping.is_set():
                return
            now = time.monotonic()
            crashes = [t for t in crashes if now - t < window] + [now]
            status = w.envoy.returncode
            if len(crashes) > max_restarts:
                message = (f"the sidecar crashed {len(crashes)} times within {window:.0f} s (last exit status {status}); "
                           f"stopping the workload. Envoy's log: {w.envoy.log_path}")
                log.error("%s", message)
                agent.sidecar_failed = message
                agent.on_signal(signal.SIGTERM)
                return
            log.warning("the sidecar exited unexpectedly (status %s); restarting it", status)
            replacement = w.envoy.fresh()
            try:
                replacement.start()
                replacement.wait_ready(timeout=agent.options.startup_timeout)
            except (EnvoyError, OSError) as exc:
                log.error("the sidecar did not come back: %s", exc)
            w.envoy = replacement

    thread = threading.Thread(target=loop, name="malla-sidecar-supervisor", daemon=True)
    thread.start()
    return thread
