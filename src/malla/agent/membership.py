"""Keep a running workload registered, even across a control plane restart.

The control plane keeps workloads in memory. When it restarts (same home,
same ports), Envoy reconnects by itself, but the new control plane knows
nothing of the workload: this loop notices (its key is missing) and
registers it again, so the service keeps receiving traffic. It reads the
home's ``controlplane.json`` each round, so a control plane that came back
with another API port is found too; one whose xDS address changed cannot
be followed by a running Envoy, and that is said loudly. An agent on
another host has no such file (``home=None``): its control plane stays at
the address it was given.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from malla.controlplane.home import ControlPlaneState

if TYPE_CHECKING:
    from malla.agent.run import Agent

log = logging.getLogger(__name__)


def keep_registered(agent: Agent, *, home: Path | None, interval: float = 2.0) -> threading.Thread:
    """Start the loop on a daemon thread; it ends when the agent starts stopping."""

    def loop() -> None:
        warned_xds = False
        while not agent.stopping.wait(interval):
            state = ControlPlaneState.read(home) if home is not None else agent.state
            if state is None:
                continue
            if state.xds_address != agent.state.xds_address and not warned_xds:
                log.error(
                    "the control plane now serves xDS on %s, not %s: restart this workload to follow it",
                    state.xds_address, agent.state.xds_address,
                )
                warned_xds = True
            agent.state = state
            try:
                keys = {w["key"] for w in httpx.get(state.api_url + "/api/v1/workloads", timeout=5, trust_env=False).json()["items"]}
            except (httpx.HTTPError, ValueError, KeyError):
                continue  # the control plane is down or restarting: try again next round
            w = agent.workload
            if w is None or w.registered_key is None or w.registered_key in keys or agent.stopping.is_set():
                continue
            try:
                agent.register()
                log.warning("registered again with the restarted control plane (pid %s)", state.pid)
            except Exception as exc:  # keep the loop alive: the next round tries again
                log.warning("could not register again: %s", exc)

    thread = threading.Thread(target=loop, name="malla-membership", daemon=True)
    thread.start()
    return thread
