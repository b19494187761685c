"""The workload's identity on its host: key, CSR, certificate, rotation (Istio's NodeAgent).

Theory of operation: the agent makes an EC P-256 key locally (it never leaves
the host: only Envoy gets it, over the SDS Unix socket), puts the workload's
SPIFFE ID in a CSR and has the CA sign it (`fetch`). Every rotation makes a
new key. A certificate is renewed at half its remaining life at receipt,
with jitter (`renew_ratio` +- `jitter`) so many agents do not renew at once.

When renewal fails the current certificate keeps being served and the
rotator retries with backoff (never later than a quarter of the time left),
and gets louder as expiry nears: WARNING while there is time, ERROR once
less than a quarter of the lifetime is left, ERROR "EXPIRED" after. `status()`
says it all (serial, SPIFFE ID, not-after, seconds left, last error).

Time is injected: `clock()` gives epoch seconds, `sleep()` waits; tests
drive the loop with a fake clock.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from malla.ca.service import CertificateRequestError, request_certificate

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkloadCertificate:
    """What Envoy serves for this workload: key, chain, and the roots it trusts."""

    spiffe_id: str
    key_pem: bytes
    chain_pem: bytes  # leaf, then intermediates
    trust_bundle_pem: bytes
    serial: int
    not_before: float
    not_after: float
    received_at: float

    @property
    def serial_hex(self) -> str:
        return f"{self.serial:x}"

    @property
    def lifetime(self) -> float:
        """Seconds it was valid for when it arrived (notBefore is backdated for clock skew)."""
        return self.not_after - self.received_at


# (csr_pem, requested ttl in seconds or None, current certificate) -> Istio's cert_chain
Fetch = Callable[[bytes, float | None, WorkloadCertificate | None], Awaitable[Sequence[str]]]
Listener = Callable[[WorkloadCertificate], None]


def generate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def build_csr(key: ec.EllipticCurvePrivateKey, spiffe_id: str) -> bytes:
    """A PEM CSR, signed by `key`, naming `spiffe_id` as its only SAN."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
                          critical=True)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def certificate_from_response(cert_chain: Sequence[str], *, key: ec.EllipticCurvePrivateKey,
                              spiffe_id: str, now: float) -> WorkloadCertificate:
    """Check Istio's `cert_chain` (leaf, intermediates, bundle last) against what was asked."""
    if len(cert_chain) < 2:
        raise ValueError("the CA's answer lacks the trust bundle (cert_chain needs the leaf "
                         "first and the roots last)")
    try:
        leaf = x509.load_pem_x509_certificate(cert_chain[0].encode())
        x509.load_pem_x509_certificates(cert_chain[-1].encode())
        for middle in cert_chain[1:-1]:
            x509.load_pem_x509_certificate(middle.encode())
    except ValueError as exc:
        raise ValueError(f"the CA's answer holds an unreadable certificate: {exc}") from None
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(*public) != key.public_key().public_bytes(*public):
        raise ValueError("the CA signed a key other than this agent's")
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    if uris != [spiffe_id]:
        raise ValueError(f"the CA issued {uris}, not {spiffe_id!r}")
    chain = "".join(part if part.endswith("\n") else part + "\n" for part in cert_chain[:-1])
    return WorkloadCertificate(
        spiffe_id=spiffe_id,
        key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
        chain_pem=chain.encode(), trust_bundle_pem=cert_chain[-1].encode(),
        serial=leaf.serial_number, not_before=leaf.not_valid_before_utc.timestamp(),
        not_after=leaf.not_valid_after_utc.timestamp(), received_at=now)


@dataclass(frozen=True)
class IdentityStatus:
    """What `malla status` shows about a workload's certificate."""

    spiffe_id: str
    state: str  # PENDING, VALID, ROTATION FAILING, EXPIRING, EXPIRED
    serial: str | None
    not_after: float | None
    seconds_left: float | None
    next_rotation_in: float | None
    last_error: str | None
    rotations: int
    failures: int


class CertificateRotator:
    """Keeps a current certificate for one SPIFFE ID; `run()` rotates it forever."""

    def __init__(self, *, spiffe_id: str, fetch: Fetch, ttl: float | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 rng: random.Random | None = None, renew_ratio: float = 0.5,
                 jitter: float = 0.05, retry_base: float = 1.0, retry_max: float = 30.0,
                 fetch_timeout: float = 30.0) -> None:
        if not (0 < renew_ratio - jitter and renew_ratio + jitter < 1):
            raise ValueError("renew_ratio +- jitter must stay inside (0, 1)")
        self.spiffe_id = spiffe_id
        self._fetch = fetch
        self._ttl = ttl
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._ratio = renew_ratio
        self._jitter = jitter
        self._retry = (retry_base, retry_max)
        self._fetch_timeout = fetch_timeout
        self._listeners: list[Listener] = []
        self.current: WorkloadCertificate | None = None
        self._renew_at: float | None = None
        self._rotations = 0
        self._failures = 0
        self._last_error: str | None = None

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(cert)` after each new certificate (and now, if there is one)."""
        self._listeners.append(listener)
        if self.current is not None:
            listener(self.current)

    async def rotate(self) -> WorkloadCertificate:
        """Get a new certificate now (new key, new CSR); raises when the CA refuses."""
        key = generate_key()
        csr = build_csr(key, self.spiffe_id)
        chain = await asyncio.wait_for(self._fetch(csr, self._ttl, self.current),
                                       timeout=self._fetch_timeout)
        now = self._clock()
        cert = certificate_from_response(chain, key=key, spiffe_id=self.spiffe_id, now=now)
        ratio = self._ratio + self._rng.uniform(-self._jitter, self._jitter)
        self.current = cert
        self._renew_at = now + max(0.0, cert.not_after - now) * ratio
        self._rotations += 1
        self._failures = 0
        self._last_error = None
        _log.info("certificate for %s: serial %s, valid %.0f s, next rotation in %.0f s",
                  self.spiffe_id, cert.serial_hex, cert.not_after - now, self._renew_at - now)
        for listener in self._listeners:
            listener(cert)
        return cert

    async def run(self) -> None:
        """Rotate forever: at the planned time, or on retry after a failure."""
        while True:
            delay = self.next_attempt_in()
            if delay > 0:
                await self._sleep(delay)
            try:
                await self.rotate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # anything: keep serving the current certificate
                self._failed(exc)

    def next_attempt_in(self) -> float:
        now = self._clock()
        if self._failures:
            base, cap = self._retry
            backoff = min(cap, base * 2 ** (self._failures - 1))
            if self.current is not None and self.current.not_after > now:
                backoff = min(backoff, max(base, (self.current.not_after - now) / 4))
            return backoff
        if self._renew_at is None:
            return 0.0
        return max(0.0, self._renew_at - now)

    def _failed(self, exc: BaseException) -> None:
        self._failures += 1
        message = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            message = f"the CA did not answer within {self._fetch_timeout} s"
        self._last_error = message
        retry = self.next_attempt_in()
        cert = self.current
        if cert is None:
            _log.error("no certificate yet for %s (attempt %d): %s; retrying in %.1f s",
                       self.spiffe_id, self._failures, message, retry)
            return
        left = cert.not_after - self._clock()
        if left <= 0:
            _log.error("certificate for %s EXPIRED %.0f s ago (serial %s); mTLS to and from "
                       "this workload fails until rotation succeeds: %s; retrying in %.1f s",
                       self.spiffe_id, -left, cert.serial_hex, message, retry)
        elif left < cert.lifetime / 4:
            _log.error("certificate for %s expires in %.0f s (serial %s) and rotation keeps "
                       "failing: %s; retrying in %.1f s",
                       self.spiffe_id, left, cert.serial_hex, message, retry)
        else:
            _log.warning("certificate rotation for %s failed (attempt %d): %s; the current "
                         "certificate (serial %s) stays in use for %.0f s more; retrying in "
                         "%.1f s", self.spiffe_id, self._failures, message, cert.serial_hex,
                         left, retry)

    def status(self) -> IdentityStatus:
        cert = self.current
        now = self._clock()
        if cert is None:
            return IdentityStatus(self.spiffe_id, "PENDING", None, None, None, None,
                                  self._last_error, self._rotations, self._failures)
        left = cert.not_after - now
        if left <= 0:
            state = "EXPIRED"
        elif self._failures and left < cert.lifetime / 4:
            state = "EXPIRING"
        elif self._failures:
            state = "ROTATION FAILING"
        else:
            state = "VALID"
        return IdentityStatus(self.spiffe_id, state, cert.serial_hex, cert.not_after, left,
                              self.next_attempt_in(), self._last_error, self._rotations,
                              self._failures)


def ca_fetcher(*, address: str, join_address: str | None, ca_bundle: bytes,
               token: str | None = None, namespace: str | None = None,
               service_account: str | None = None, server_name: str | None = None,
               clock: Callable[[], float] = time.time, timeout: float = 10.0) -> Fetch:
    """A `Fetch` that renews over mTLS at `address` and joins with `token` at `join_address`.

    With a still-valid certificate it authenticates with that certificate; with
    none (first start), or when that fails and a token is at hand, it uses the
    token. The CA's serving certificate is checked against the newest trust
    bundle the CA sent (`ca_bundle` until the first answer).
    """
    async def fetch(csr: bytes, ttl: float | None,
                    current: WorkloadCertificate | None) -> Sequence[str]:
        bundle = current.trust_bundle_pem if current is not None else ca_bundle
        renew_error: CertificateRequestError | None = None
        if current is not None and current.not_after > clock():
            try:
                return await request_certificate(
                    address, csr, ca_bundle=bundle, cert_chain=current.chain_pem,
                    key=current.key_pem, ttl=ttl, server_name=server_name, timeout=timeout)
            except CertificateRequestError as exc:
                renew_error = exc
        if token is None or join_address is None:
            if renew_error is not None:
                raise renew_error
            why = "has no certificate yet" if current is None else "holds an expired certificate"
            raise CertificateRequestError(
                f"the agent {why} and no join token; give it a join token for its identity",
                code=grpc.StatusCode.UNAUTHENTICATED)
        try:
            return await request_certificate(
                join_address, csr, ca_bundle=bundle, token=token, ttl=ttl, namespace=namespace,
                service_account=service_account, server_name=server_name, timeout=timeout)
        except CertificateRequestError as exc:
            if renew_error is None:
                raise
            raise CertificateRequestError(f"renewal over mTLS failed ({renew_error}), and so did "
                                          f"the join token ({exc})", code=exc.code) from None
    return fetch

