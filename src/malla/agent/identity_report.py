"""The agent tells the control plane about its workload's certificate, so ``malla status`` can show it.

In: a ``read()`` that returns the rotator's ``IdentityStatus``, the current
``WorkloadCertificate`` and whether Envoy ACKed it. Out: ``PUT
/api/v1/identities`` with a JSON report (SPIFFE ID, state, serial, validity,
issuer, last error, rotation counts, the roots trusted), sent when anything in it
changes (a rotation, a failed attempt) and at least every ``heartbeat``
seconds, so a restarted control plane learns it again; ``DELETE`` when the
workload stops. The control plane computes the time left itself.

The control plane's API address is read from the home's
``controlplane.json`` each round when a home is given (it may have
restarted on another port). A report that cannot be delivered is logged
once per outage and retried; the workload never stops for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509

from malla.agent.identity import IdentityStatus, WorkloadCertificate
from malla.controlplane.home import ControlPlaneState

log = logging.getLogger(__name__)

Read = Callable[[], tuple[IdentityStatus, WorkloadCertificate | None, bool | None]]
PATH = "/api/v1/identities"
# Fields that change every second on their own: not a reason to report.
_VOLATILE = ("nextRotationIn",)


def report_body(status: IdentityStatus, cert: WorkloadCertificate | None, *,
                envoy_synced: bool | None) -> dict[str, Any]:
    """The report ``PUT /api/v1/identities`` takes (without who sends it)."""
    roots, issuer = [], None
    if cert is not None:
        issuer = x509.load_pem_x509_certificate(cert.chain_pem).issuer.rfc4514_string()
        for root in x509.load_pem_x509_certificates(cert.trust_bundle_pem):
            roots.append({"serial": f"{root.serial_number:x}", "subject": root.subject.rfc4514_string(),
                          "notAfter": root.not_valid_after_utc.timestamp()})
    return {
        "spiffeId": status.spiffe_id, "state": status.state, "serial": status.serial,
        "notBefore": cert.not_before if cert is not None else None,
        "notAfter": status.not_after, "nextRotationIn": status.next_rotation_in, "issuer": issuer,
        "lastError": status.last_error, "rotations": status.rotations, "failures": status.failures,
        "envoySynced": envoy_synced, "roots": roots,
    }


class IdentityReporter:
    """Reports on a daemon thread: on change, and at least every ``heartbeat`` seconds."""

    def __init__(self, read: Read, *, api_url: str, node_id: str, name: str, namespace: str,
                 kind: str = "sidecar", home: Path | None = None, interval: float = 1.0,
                 heartbeat: float = 15.0) -> None:
        self._read = read
        self._api_url = api_url
        self._home = home
        self._who = {"nodeId": node_id, "name": name, "namespace": namespace, "kind": kind}
        self._interval = interval
        self._heartbeat = heartbeat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sent: dict[str, Any] | None = None
        self._sent_at = 0.0
        self._failing = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="malla-identity-report", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reporting and withdraw the report (the workload is leaving)."""
        self._stop.set()
        if self._thread is None:
            return
        self._thread.join(5)
        try:
            httpx.delete(self._url(), params={"node": self._who["nodeId"]}, timeout=5, trust_env=False)
        except httpx.HTTPError:
            pass  # the control plane forgets agents that left anyway

    def _loop(self) -> None:
        while True:
            try:
                self.report_now()
            except Exception:  # reporting must never take the workload down
                log.exception("could not report the workload certificate")
            if self._stop.wait(self._interval):
                return

    def report_now(self) -> None:
        status, cert, synced = self._read()
        body = self._who | report_body(status, cert, envoy_synced=synced)
        steady = {k: v for k, v in body.items() if k not in _VOLATILE}
        if steady == self._sent and time.monotonic() - self._sent_at < self._heartbeat:
            return
        try:
            response = httpx.put(self._url(), json=body, timeout=5, trust_env=False)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            if not self._failing:
                log.warning("could not report the certificate to the control plane: %s", exc)
            self._failing = True
            return
        self._failing = False
        self._sent, self._sent_at = steady, time.monotonic()

    def _url(self) -> str:
        state = ControlPlaneState.read(self._home) if self._home is not None else None
        return (state.api_url if state is not None else self._api_url) + PATH
