"""The metrics poller: scrape every registered workload's Istio metrics every few seconds.

Runs as one task on the HTTP API's event loop (started by the first request
the API serves, so it lives and dies with the API server). Each round reads
the scrape targets the proxies announced and the workload registry through
the API's views, scrapes every metrics endpoint concurrently (Istio's merged
endpoint, ``http://<address>:15020/stats/prometheus``) and records the
counters in the ``MetricsStore``. A target that does not answer is noted,
not fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from malla.console.istio_metrics import parse_istio_metrics
from malla.console.timeseries import MetricsStore

log = logging.getLogger(__name__)

METRICS_PORT = 15020  # Istio's merged metrics port (pilot-agent); the agent serves Istio's metrics there
METRICS_PATH = "/stats/prometheus"


def metrics_url(workload: Mapping[str, Any]) -> str:
    address = str(workload["address"])
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{METRICS_PORT}{METRICS_PATH}"


def _host(target: str) -> str:
    return target.rsplit(":", 1)[0].strip("[]")


def scrape_urls(workloads: Sequence[Mapping[str, Any]], groups: Sequence[Mapping[str, Any]]) -> list[str]:
    """Where to scrape: every target the proxies announced (Prometheus http_sd groups), and Istio's
    ``<address>:15020`` for registered workloads with a sidecar whose address announced none
    (a guess at an address that announced one could hit a neighbour's endpoint and count it twice)."""
    urls = set()
    announced = set()
    for group in groups:
        path = str((group.get("labels") or {}).get("__metrics_path__") or METRICS_PATH)
        for target in group.get("targets") or ():
            urls.add(f"http://{target}{path}")
            announced.add(_host(str(target)))
    for w in workloads:
        if w.get("sidecar", True) and str(w["address"]) not in announced:
            urls.add(metrics_url(w))
    return sorted(urls)


class MetricsPoller:
    def __init__(self, workloads: Callable[[], list[dict[str, Any]]], *, store: MetricsStore,
                 targets: Callable[[], list[dict[str, Any]]] = list, interval: float = 5.0, timeout: float = 3.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.workloads = workloads
        self.targets = targets
        self.store = store
        self.interval = interval
        self.timeout = timeout
        self.clock = clock
        self.errors: dict[str, str] = {}  # target -> why its last scrape failed
        self.rounds = 0
        self._task: asyncio.Task[None] | None = None

    def ensure_started(self) -> None:
        """Start polling on the running loop, once (called on every request; cheap after the first)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="malla-console-metrics")

    async def run(self) -> None:
        # The API's loop never has a proxy between it and the workloads.
        async with httpx.AsyncClient(timeout=self.timeout, trust_env=False) as client:
            while True:
                try:
                    await self.scrape_once(client)
                except Exception:  # one bad round must not end polling for the control plane's lifetime
                    log.exception("metrics scrape round failed")
                await asyncio.sleep(self.interval)

    async def scrape_once(self, client: httpx.AsyncClient) -> None:
        targets = scrape_urls(self.workloads(), self.targets())
        await asyncio.gather(*(self._scrape(client, url) for url in targets))
        self.store.retain(targets, now=self.clock())
        self.errors = {t: e for t, e in self.errors.items() if t in targets}
        self.rounds += 1

    async def _scrape(self, client: httpx.AsyncClient, url: str) -> None:
        try:
            response = await client.get(url)
            response.raise_for_status()
            # Parsing is pure Python: off the loop, so the API answers while a large scrape is read.
            counters = await asyncio.to_thread(parse_istio_metrics, response.text)
        except (httpx.HTTPError, ValueError) as exc:
            self.errors[url] = f"{type(exc).__name__}: {exc}"
            self.store.missed(url, now=self.clock())
            return
        self.errors.pop(url, None)
        self.store.record(url, counters, now=self.clock())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
