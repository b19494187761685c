"""A workload's telemetry, as its agent runs it (``malla run`` and ``malla gateway``).

Theory of operation, in the order the agent calls it:

1. ``prepare()`` before Envoy starts: the access-log socket's path and the
   metrics endpoint's address, bound now on the workload's own address,
   port 15020 (or a free port there when that one is taken). The agent
   puts both in the proxy's node metadata: Pilot gives the proxy access
   logs to the socket (``proxy_config``), and the control plane lists every
   connected proxy's metrics address as a Prometheus scrape target
   (``targets``), so a restarted control plane finds them again with the
   proxies' reconnection.
2. ``start(envoy)`` once the agent has forked Envoy and the app (a gRPC
   server must not run across a fork): serve access logs and metrics,
   Istio's merged with Envoy's own ``/stats/prometheus``.
3. ``stop()``.

Peers that send no metadata (TCP, workloads without a sidecar) are named
from the control plane's list of registered workloads, fetched again at
most every ``refresh_s`` seconds when an address is not known yet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from malla.telemetry.als import AccessLogServer
from malla.telemetry.endpoint import METRICS_PATH, METRICS_PORT, MetricsEndpoint
from malla.telemetry.metrics import IstioMetrics
from malla.telemetry.peer_metadata import PeerInfo
from malla.telemetry.recorder import Recorder

log = logging.getLogger(__name__)


class WorkloadDirectory:
    """Registered workloads by address, from the control plane's API, refreshed on a miss."""

    def __init__(self, api_url: str, *, refresh_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.api_url = api_url
        self.refresh_s = refresh_s
        self._clock = clock
        self._by_address: dict[str, PeerInfo] = {}
        self._fetched = float("-inf")
        self._lock = threading.Lock()

    def __call__(self, address: str) -> PeerInfo | None:
        if not address:
            return None
        with self._lock:
            found = self._by_address.get(address)
            if found is None and self._clock() - self._fetched >= self.refresh_s:
                self._fetched = self._clock()
                self._by_address = self._fetch() or self._by_address
                found = self._by_address.get(address)
        return found

    def _fetch(self) -> dict[str, PeerInfo] | None:
        try:
            items = httpx.get(self.api_url + "/api/v1/workloads", timeout=1.0, trust_env=False).json()["items"]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            log.debug("could not list workloads: %s", exc)
            return None
        return {
            str(w["address"]): PeerInfo.of(
                workload=str(w["name"]), namespace=str(w["namespace"]), labels=dict(w.get("labels") or {}),
                service_account=str(w.get("serviceAccount") or ""),
            )
            for w in items
        }


class WorkloadTelemetry:
    def __init__(
        self,
        *,
        name: str,
        namespace: str,
        labels: Mapping[str, str],
        service_account: str,
        address: str,
        api_url: str,
        metrics_port: int = METRICS_PORT,
    ) -> None:
        self.metrics = IstioMetrics()
        me = PeerInfo.of(workload=name, namespace=namespace, labels=labels, service_account=service_account)
        self.recorder = Recorder(self.metrics, me=me, directory=WorkloadDirectory(api_url))
        self.als = AccessLogServer(self.recorder)
        self._envoy: Any = None
        self.endpoint = MetricsEndpoint(self.metrics, address=address, envoy_stats=self._envoy_stats,
                                        port=metrics_port)

    def prepare(self) -> dict[str, str]:
        """Before Envoy starts: the ``Proxy`` fields that announce the access-log socket and the metrics address."""
        try:
            metrics = self.endpoint.bind()
        except OSError as exc:
            # The workload runs without its metrics endpoint rather than not at all.
            log.warning("cannot serve metrics on %s: %s", self.endpoint.host, exc.strerror or exc)
            metrics = ""
        return {"access_log_service": str(self.als.prepare()), "metrics_address": metrics}

    def start(self, *, envoy: Any) -> str:
        """Serve access logs and metrics; returns the metrics URL."""
        self._envoy = envoy
        self.als.start()
        if self.endpoint.bound:
            self.endpoint.start()
        return self.metrics_url

    @property
    def metrics_url(self) -> str:
        return f"http://{self.endpoint.address}{METRICS_PATH}" if self.endpoint.bound else "(no metrics endpoint)"

    def _envoy_stats(self) -> bytes:
        if self._envoy is None:
            return b""
        try:
            status, text = self._envoy.admin_get("/stats/prometheus")
        except Exception as exc:  # Envoy stopping or gone: serve the Istio metrics alone
            log.debug("could not read Envoy's stats: %s", exc)
            return b""
        return text.encode() if status == 200 else b""

    def stop(self) -> None:
        self.endpoint.stop()
        self.als.stop()
