"""The gateway's own workload certificate, served by the gateway's SDS server beside its credentials.

A gateway that routes to sidecars speaks Istio mTLS to them (ISTIO_MUTUAL):
its Envoy asks the agent's one SDS socket (``sds-grpc``) for ``default`` and
``ROOTCA`` as well as for the credentials its Gateways name. ``SecretMerge``
publishes both sets as one snapshot to ``malla.agent.gateway_sds``;
``GatewayIdentity`` keeps the mesh pair current (a ``CertificateRotator`` on
a private event loop, as a sidecar's ``WorkloadIdentityThread`` does, minus
the socket) and reports it like a sidecar (``malla.agent.identity_report``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from malla.agent.identity import CertificateRotator, IdentityStatus, WorkloadCertificate
from malla.agent.identity_report import IdentityReporter
from malla.agent.sds import build_secrets
from malla.agent.workload_identity import IdentityError, IdentityOptions, first_certificate, make_rotator
from malla.controlplane.home import ControlPlaneState
from malla.pilot.names import ROOT_CA_SECRET, WORKLOAD_CERT_SECRET

MESH_SECRETS = frozenset({WORKLOAD_CERT_SECRET, ROOT_CA_SECRET})
Secrets = Mapping[str, secret_pb2.Secret]


class SecretMerge:
    """Credentials from files and the mesh pair, published together (either may change alone)."""

    def __init__(self, publish: Callable[[Secrets], None]) -> None:
        self._publish = publish
        self._lock = threading.Lock()
        self._credentials: dict[str, secret_pb2.Secret] = {}
        self._mesh: dict[str, secret_pb2.Secret] = {}

    def credentials(self, secrets: Secrets) -> None:
        with self._lock:
            self._credentials = {k: v for k, v in secrets.items() if k not in MESH_SECRETS}
            self._publish({**self._credentials, **self._mesh})

    def mesh(self, cert: WorkloadCertificate) -> None:
        with self._lock:
            self._mesh = build_secrets(cert)
            self._publish({**self._credentials, **self._mesh})


class GatewayIdentity:
    """The gateway's certificate: first one now, then rotated on a private loop, and reported."""

    def __init__(self, state: ControlPlaneState, options: IdentityOptions, *,
                 publish: Callable[[WorkloadCertificate], None], node_id: str, name: str,
                 home: Path | None = None) -> None:
        self._state, self._options, self._publish = state, options, publish
        self._node_id, self._name, self._home = node_id, name, home
        self.rotator: CertificateRotator | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._reporter: IdentityReporter | None = None

    def start(self, *, timeout: float = 30.0) -> WorkloadCertificate:
        rotator = self.rotator = make_rotator(self._state, self._options)
        rotator.add_listener(self._publish)
        first_certificate(rotator)
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="malla-gateway-identity", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(rotator.run(), loop)
        cert = self._wait_first(rotator, timeout)
        self._reporter = IdentityReporter(self._read, api_url=self._state.api_url, node_id=self._node_id,
                                          name=self._name, namespace=self._options.namespace, kind="router",
                                          home=self._home)
        self._reporter.start()
        return cert

    def _wait_first(self, rotator: CertificateRotator, timeout: float) -> WorkloadCertificate:
        got = threading.Event()
        rotator.add_listener(lambda _cert: got.set())
        if not got.wait(timeout) or rotator.current is None:
            error = self._status().last_error or "the CA did not answer"
            self.stop()
            raise IdentityError(f"no certificate for {rotator.spiffe_id} within {timeout:.0f} s: {error}")
        return rotator.current

    def _status(self) -> IdentityStatus:
        assert self.rotator is not None
        if self._loop is None or not self._loop.is_running():
            return self.rotator.status()
        return asyncio.run_coroutine_threadsafe(_call(self.rotator.status), self._loop).result(10)

    def _read(self) -> tuple[IdentityStatus, WorkloadCertificate | None, bool | None]:
        assert self.rotator is not None
        return self._status(), self.rotator.current, None  # the gateway's SDS server does not track ACKs

    def stop(self) -> None:
        if self._reporter is not None:
            self._reporter.stop()
            self._reporter = None
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(5)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass  # stopping anyway
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        if not loop.is_running():
            loop.close()


async def _call(fn: Callable[[], IdentityStatus]) -> IdentityStatus:
    return fn()


async def _cancel_all() -> None:
    me = asyncio.current_task()
    for task in asyncio.all_tasks():
        if task is not me:
            task.cancel()
