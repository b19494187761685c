"""A workload's identity inside ``malla run`` and ``malla gateway``: join the CA, rotate, serve, report.

Theory of operation. The workload's SPIFFE ID is
``spiffe://<trust domain>/ns/<namespace>/sa/<service account>``. Its first
certificate comes from the CA's join port with a join token: one given
(``--join-token``, made by ``malla token create`` where the control plane
runs), or, on the control plane's own host, one the agent mints from the
home's token secret for each join (so a certificate that expired while the
CA was away can still be replaced). Renewals go over mTLS with the current
certificate. The CA's serving certificate is checked against the trust
bundle in the control plane's state (``ca_root_cert``) until the CA sends
a newer one. The first request is made at once: a refusal (a forged or
expired token, an identity it does not cover) ends the start with the CA's
reason; an unreachable CA is retried until the start-up timeout.

A sidecar's identity (``SidecarIdentity``) is a ``WorkloadIdentityThread``:
the rotator and an SDS server on a Unix socket in a private directory of
its own (``malla.agent.sds_dirs``: short, as socket paths are limited to
107 bytes; those of killed agents are swept), started before Envoy so that
Envoy's first request finds the certificate. Its status goes to the control
plane (``malla.agent.identity_report``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from malla.agent.identity import CertificateRotator, Fetch, IdentityStatus, WorkloadCertificate, ca_fetcher
from malla.agent.identity_report import IdentityReporter
from malla.agent.sds import WorkloadIdentityThread
from malla.agent.sds_dirs import make_socket_dir
from malla.ca.runner import ca_dir
from malla.ca.service import CertificateRequestError
from malla.ca.spiffe import Identity
from malla.ca.tokens import SECRET_FILE, JoinTokens
from malla.controlplane.home import ControlPlaneState

# A token minted on the control plane's host is used at once: a short life is enough.
_MINTED_TOKEN_TTL = 300.0
_REFUSALS = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
             grpc.StatusCode.INVALID_ARGUMENT)


class IdentityError(RuntimeError):
    """The workload cannot get a certificate; the message says why and what to do."""


@dataclass(frozen=True)
class IdentityOptions:
    namespace: str
    service_account: str
    cert_ttl: float | None = None  # None: the CA's default (24 h)
    join_token: str | None = None  # None: mint one from the home's token secret


def spiffe_id(state: ControlPlaneState, *, namespace: str, service_account: str) -> str:
    try:
        return Identity(state.trust_domain, namespace, service_account).uri
    except ValueError as exc:
        raise IdentityError(f"the workload's identity (--namespace, --service-account): {exc}") from None


def make_fetch(state: ControlPlaneState, options: IdentityOptions) -> Fetch:
    """How this agent asks the control plane's CA for certificates."""
    if not state.ca_address:
        raise IdentityError("the control plane serves no CA (its state names no CA address); "
                            "restart it with this version of malla ('malla down', then 'malla up')")
    bundle = _trust_bundle(state)

    def fetcher(token: str) -> Fetch:
        return ca_fetcher(address=state.ca_address, join_address=state.ca_join_address, ca_bundle=bundle,
                          token=token, namespace=options.namespace,
                          service_account=options.service_account, server_name=state.ca_server_name or None)

    if options.join_token:
        return fetcher(options.join_token)
    tokens = JoinTokens(_token_secret(state))

    async def fetch(csr: bytes, ttl: float | None, current: WorkloadCertificate | None) -> Sequence[str]:
        token = tokens.create_token(options.namespace, options.service_account, ttl=_MINTED_TOKEN_TTL)
        return await fetcher(token)(csr, ttl, current)

    return fetch


def _trust_bundle(state: ControlPlaneState) -> bytes:
    path = Path(state.ca_root_cert)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"cannot read the mesh's trust bundle {path} ({exc.strerror}); the agent "
                            "checks the CA's certificate against it") from None


def _token_secret(state: ControlPlaneState) -> bytes:
    path = ca_dir(Path(state.home)) / SECRET_FILE
    try:
        secret = path.read_bytes()
    except OSError as exc:
        raise IdentityError(
            f"no join token, and the control plane's token secret {path} cannot be read "
            f"({exc.strerror}); create a token where the control plane runs ('malla token create "
            "--namespace NS --service-account SA') and pass it with --join-token") from None
    if len(secret) < 16:
        raise IdentityError(f"{path}: too short to be a token secret; pass --join-token instead")
    return secret


def make_rotator(state: ControlPlaneState, options: IdentityOptions) -> CertificateRotator:
    return CertificateRotator(
        spiffe_id=spiffe_id(state, namespace=options.namespace, service_account=options.service_account),
        fetch=make_fetch(state, options), ttl=options.cert_ttl)


def first_certificate(rotator: CertificateRotator) -> WorkloadCertificate | None:
    """Try once, now; raise IdentityError when the CA refuses, None when it could not be reached.

    A refusal (bad or expired token, an identity the token does not cover)
    will not heal by retrying: say so at once rather than after the start-up
    timeout. An unreachable CA is retried by the rotator until the timeout.
    """
    try:
        return asyncio.run(rotator.rotate())
    except CertificateRequestError as exc:
        if exc.code in _REFUSALS:
            raise IdentityError(f"the CA refused a certificate for {rotator.spiffe_id}: {exc}") from None
        return None
    except (TimeoutError, OSError, ValueError):
        return None


class SidecarIdentity:
    """The rotator and SDS server of one sidecar, and its reports to the control plane.

    Nothing happens until ``start()``; ``socket_path`` is known before, for
    Envoy's bootstrap.
    """

    def __init__(self, state: ControlPlaneState, options: IdentityOptions, *, node_id: str,
                 name: str, home: Path | None = None) -> None:
        self._state, self._options = state, options
        self._node_id, self._name, self._home = node_id, name, home
        self._dir = make_socket_dir()  # mode 0700: the key goes through it
        self.socket_path = str(self._dir / "sds.sock")
        self.thread: WorkloadIdentityThread | None = None
        self.reporter: IdentityReporter | None = None

    def start(self, *, timeout: float = 30.0, owner: tuple[int, int] | None = None) -> WorkloadCertificate:
        """Get the first certificate, serve it over SDS, and start reporting it.

        ``owner``: the uid and gid of an Envoy that does not run as the agent's
        user; the socket and its directory are handed to them.
        """
        rotator = make_rotator(self._state, self._options)
        first_certificate(rotator)
        self.thread = WorkloadIdentityThread(rotator, socket_path=self.socket_path)
        try:
            cert = self.thread.start(timeout=timeout)
            if owner is not None:
                for path in (self._dir, Path(self.socket_path)):
                    os.chown(path, *owner)
        except (TimeoutError, OSError, ValueError) as exc:
            raise IdentityError(f"no certificate for {rotator.spiffe_id}: {exc}") from None
        self.reporter = IdentityReporter(self._read, api_url=self._state.api_url, node_id=self._node_id,
                                         name=self._name, namespace=self._options.namespace,
                                         home=self._home)
        self.reporter.start()
        return cert

    def _read(self) -> tuple[IdentityStatus, WorkloadCertificate | None, bool | None]:
        assert self.thread is not None
        return self.thread.status(), self.thread.rotator.current, self.thread.synced()

    def stop(self) -> None:
        if self.reporter is not None:
            self.reporter.stop()
        if self.thread is not None:
            self.thread.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
