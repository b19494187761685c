"""The signing authority: CSR in, SPIFFE X.509-SVID out (Istio's `pki/ca`; no transport here).

In: a PEM CSR and the caller's identity, which the transport proved (join
token or mTLS certificate) and never read from the CSR. Out: an
`IssuedCertificate` (leaf, intermediates, trust bundle).

Leaf rules, from the SPIFFE X.509-SVID spec: exactly one URI SAN, the SPIFFE
ID, marked critical because the subject is empty; basicConstraints CA=false;
keyUsage digitalSignature (+ keyEncipherment for RSA keys), never keyCertSign
or cRLSign; extendedKeyUsage serverAuth + clientAuth. TTL: 24 h by default,
at most 90 days (longer requests are clamped) and never past the signing
certificate's own expiry. The CSR must be self-signed by the key it carries
and may name no identity other than the caller's.

Root rotation (self-signed mode) happens in three steps so nothing breaks:
`begin_root_rotation` adds a new root to the trust bundle (leaves still come
from the old one; agents pick the bundle up at their next renewal);
`activate_next_root` makes the new root sign; `retire_old_roots` drops the
old root from the bundle once no leaf it signed is still in use.
The clock is injected (`clock() -> aware datetime`).
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from malla.ca import material as files
from malla.ca.material import CAMaterial
from malla.ca.spiffe import DEFAULT_TRUST_DOMAIN, Identity, check_trust_domain

DEFAULT_TTL = timedelta(hours=24)
MAX_TTL = timedelta(days=90)
MIN_TTL = timedelta(seconds=1)
# Tolerates clocks a little behind the CA's (other hosts, other agents).
CLOCK_SKEW = timedelta(minutes=1)

Clock = Callable[[], datetime]
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class CAError(Exception):
    """The CA refuses a request; the message says why and what is allowed."""


class CSRError(CAError):
    """The CSR is malformed, not self-signed, or uses a key type Envoy cannot use."""


class IdentityMismatchError(CAError):
    """The request asks for an identity the caller's credential does not prove."""


@dataclass(frozen=True)
class IssuedCertificate:
    """A signed certificate, the intermediates up to the root, and the trust bundle."""

    certificate: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    trust_bundle: tuple[x509.Certificate, ...]

    def chain_pem(self) -> bytes:
        """Leaf then intermediates: what a TLS endpoint presents."""
        return files.pem_bytes([self.certificate, *self.intermediates])

    def trust_bundle_pem(self) -> bytes:
        return files.pem_bytes(self.trust_bundle)

    def cert_chain(self) -> list[str]:
        """Istio's `IstioCertificateResponse.cert_chain`: leaf, intermediates, bundle last."""
        certs = [files.pem_bytes([cert]).decode() for cert in (self.certificate, *self.intermediates)]
        return [*certs, self.trust_bundle_pem().decode()]


@dataclass(frozen=True)
class RootRotation:
    """Where a root rotation stands: `steady`, `staged` (new root trusted, not signing),
    or `overlap` (new root signing, old root still trusted)."""

    phase: str
    signing_root: x509.Certificate
    roots: tuple[x509.Certificate, ...]


class CertificateAuthority:
    """Signs workload certificates with the material of one CA directory (or given material)."""

    def __init__(self, material: CAMaterial, *, trust_domain: str = DEFAULT_TRUST_DOMAIN,
                 clock: Clock = utc_now, default_ttl: timedelta = DEFAULT_TTL,
                 max_ttl: timedelta = MAX_TTL, directory: Path | None = None) -> None:
        if not MIN_TTL <= default_ttl <= max_ttl:
            raise ValueError(f"default_ttl: {default_ttl} must lie between {MIN_TTL} and "
                             f"max_ttl ({max_ttl})")
        self.trust_domain = check_trust_domain(trust_domain)
        self.clock = clock
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl
        self.directory = directory
        self._material = material
        self._lock = threading.Lock()

    @classmethod
    def open(cls, directory: Path | str, *, trust_domain: str = DEFAULT_TRUST_DOMAIN,
             clock: Clock = utc_now, root_ttl: timedelta = files.ROOT_TTL,
             default_ttl: timedelta = DEFAULT_TTL,
             max_ttl: timedelta = MAX_TTL) -> CertificateAuthority:
        """The CA kept in `directory`: its plug-in files, or a self-signed root made now."""
        directory = Path(directory)
        check_trust_domain(trust_domain)
        material = files.load_or_create(directory, trust_domain=trust_domain, now=clock(),
                                        root_ttl=root_ttl)
        return cls(material, trust_domain=trust_domain, clock=clock, default_ttl=default_ttl,
                   max_ttl=max_ttl, directory=directory)

    # -- what it holds -------------------------------------------------------

    @property
    def material(self) -> CAMaterial:
        return self._material

    @property
    def trust_bundle(self) -> tuple[x509.Certificate, ...]:
        return self._material.roots

    def trust_bundle_pem(self) -> bytes:
        return files.pem_bytes(self._material.roots)

    def reload(self) -> CAMaterial:
        """Re-read the directory (plug-in files replaced); the old material stays on error."""
        directory = self._need_directory("reload")
        material = files.load(directory, now=self.clock())
        self._material = material
        return material

    def swap_material(self, decide: Callable[[CAMaterial], CAMaterial]) -> CAMaterial:
        """Install `decide(current)`, never half-way through a root-rotation step; what
        `decide` raises (a refused new set) leaves the current material signing."""
        with self._lock:
            self._material = decide(self._material)
            return self._material

    # -- signing -------------------------------------------------------------

    def clamp_ttl(self, ttl: timedelta | float | None) -> timedelta:
        """None or <= 0: the default; beyond the maximum: the maximum."""
        if ttl is None:
            return self.default_ttl
        if not isinstance(ttl, timedelta):
            ttl = timedelta(seconds=float(ttl))
        if ttl <= timedelta(0):
            return self.default_ttl
        return min(max(ttl, MIN_TTL), self.max_ttl)

    def sign_csr(self, csr_pem: bytes | str, *, identity: Identity,
                 ttl: timedelta | float | None = None) -> IssuedCertificate:
        """Sign a workload certificate for `identity` (proven by the caller's credential)."""
        if identity.trust_domain != self.trust_domain:
            raise IdentityMismatchError(
                f"identity {identity.uri}: this CA signs only for trust domain "
                f"{self.trust_domain!r}")
        csr = parse_csr(csr_pem)
        check_csr_names(csr, identity)
        san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)])
        key = csr.public_key()
        usage = _key_usage(key_encipherment=isinstance(key, rsa.RSAPublicKey))
        return self._issue(key, subject=x509.Name([]), san=san, usage=usage,
                           eku=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                           ttl=self.clamp_ttl(ttl))

    def issue_server_certificate(self, public_key: PublicKey, *, hosts: Sequence[str],
                                 ttl: timedelta = DEFAULT_TTL) -> IssuedCertificate:
        """A serving certificate for the CA's own TLS port (DNS names and IPs in `hosts`)."""
        if not hosts:
            raise ValueError("hosts: name at least one DNS name or IP address")
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64])])
        return self._issue(public_key, subject=subject, san=x509.SubjectAlternativeName(names),
                           usage=_key_usage(key_encipherment=False),
                           eku=[ExtendedKeyUsageOID.SERVER_AUTH], ttl=self.clamp_ttl(ttl))

    def _issue(self, public_key: PublicKey, *, subject: x509.Name,
               san: x509.SubjectAlternativeName, usage: x509.KeyUsage,
               eku: list[x509.ObjectIdentifier], ttl: timedelta) -> IssuedCertificate:
        material = self._material
        issuer = material.ca_cert
        now = self.clock()
        not_after = min(now + ttl, issuer.not_valid_after_utc)
        if not_after <= now:
            raise CAError("the signing CA certificate has expired; install new CA material")
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(max(now - CLOCK_SKEW, issuer.not_valid_before_utc))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
            # An empty subject makes the SAN the only name: RFC 5280 wants it critical.
            .add_extension(san, critical=not list(subject))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(_authority_key_id(issuer), critical=False)
        )
        cert = builder.sign(material.ca_key, hashes.SHA256())
        return IssuedCertificate(certificate=cert, intermediates=material.intermediates,
                                 trust_bundle=material.roots)

    # -- root rotation (self-signed mode) --------------------------------------

    def rotation(self) -> RootRotation:
        directory = self.directory
        staged = directory is not None and (directory / files.NEXT_ROOT_CERT_FILE).exists()
        material = self._material
        phase = "staged" if staged else ("overlap" if len(material.roots) > 1 else "steady")
        return RootRotation(phase=phase, signing_root=material.anchor, roots=material.roots)

    def begin_root_rotation(self, *, root_ttl: timedelta = files.ROOT_TTL) -> x509.Certificate:
        """Make a new root and trust it beside the old one; the old one keeps signing."""
        with self._lock:
            directory = self._need_self_signed("begin_root_rotation")
            if (directory / files.NEXT_ROOT_CERT_FILE).exists():
                raise CAError(f"{directory / files.NEXT_ROOT_CERT_FILE}: a new root is already "
                              "staged; activate it (activate_next_root) first")
            key, root = files.make_root(trust_domain=self.trust_domain, now=self.clock(),
                                        ttl=root_ttl)
            files.write_file(directory / files.NEXT_ROOT_KEY_FILE, files.key_pem(key), private=True)
            files.write_file(directory / files.NEXT_ROOT_CERT_FILE, files.pem_bytes([root]))
            bundle = [*self._material.roots, root]
            files.write_file(directory / files.ROOT_CERT_FILE, files.pem_bytes(bundle))
            self.reload()
            return root

    def activate_next_root(self) -> x509.Certificate:
        """Sign with the staged root from now on; both roots stay trusted."""
        with self._lock:
            directory = self._need_self_signed("activate_next_root")
            cert_path = directory / files.NEXT_ROOT_CERT_FILE
            if not cert_path.exists():
                raise CAError(f"{cert_path}: no new root is staged; call begin_root_rotation "
                              "first")
            root = files.read_certs(cert_path)[0]
            key = files.read_key(directory / files.NEXT_ROOT_KEY_FILE)
            files.write_signing(directory, key=key, chain=[root])
            self.reload()
            cert_path.unlink()
            (directory / files.NEXT_ROOT_KEY_FILE).unlink()
            return root

    def retire_old_roots(self) -> tuple[x509.Certificate, ...]:
        """Trust only the signing root; returns the roots dropped from the bundle.

        Call once every leaf signed by an old root has been renewed (after one
        leaf TTL, or when every agent reports a certificate from the new root).
        """
        with self._lock:
            directory = self._need_directory("retire_old_roots")
            if (directory / files.NEXT_ROOT_CERT_FILE).exists():
                raise CAError(f"{directory / files.NEXT_ROOT_CERT_FILE}: a staged root is "
                              "not active yet; activate_next_root first")
            keep = self._material.anchor
            dropped = tuple(root for root in self._material.roots if root != keep)
            files.write_file(directory / files.ROOT_CERT_FILE, files.pem_bytes([keep]))
            self.reload()
            return dropped

    def _need_directory(self, what: str) -> Path:
        if self.directory is None:
            raise CAError(f"{what}: this CA was built from material in memory; open it from a "
                          "directory (CertificateAuthority.open)")
        return self.directory

    def _need_self_signed(self, what: str) -> Path:
        directory = self._need_directory(what)
        if not self._material.self_signed:
            raise CAError(f"{what}: {directory} holds plug-in CA material; rotate it by "
                          f"replacing the files (both roots in {files.ROOT_CERT_FILE} first, "
                          "then the new intermediate); a running control plane picks them up")
        return directory


# -- CSRs -----------------------------------------------------------------------


def parse_csr(csr_pem: bytes | str) -> x509.CertificateSigningRequest:
    """A PEM CSR whose self-signature verifies and whose key Envoy can use."""
    data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise CSRError("csr: not a PEM certificate signing request (expected a "
                       "'-----BEGIN CERTIFICATE REQUEST-----' block)") from exc
    if not csr.is_signature_valid:
        raise CSRError("csr: its signature does not verify; it was altered or signed with a "
                       "key other than the one it carries")
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1):
            raise CSRError(f"csr: EC curve {key.curve.name} is not allowed; use P-256 or P-384")
    elif isinstance(key, rsa.RSAPublicKey):
        if not 2048 <= key.key_size <= 4096:
            raise CSRError(f"csr: RSA key of {key.key_size} bits is not allowed; use 2048-4096")
    else:
        raise CSRError(f"csr: {type(key).__name__} keys are not allowed; use EC P-256 "
                       "(recommended), P-384 or RSA 2048-4096")
    return csr


def check_csr_names(csr: x509.CertificateSigningRequest, identity: Identity) -> None:
    """The CSR may name the caller's SPIFFE ID, or nothing; the certificate never copies it."""
    try:
        names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return
    others = [str(getattr(name, "value", name)) for name in names
              if not (isinstance(name, x509.UniformResourceIdentifier)
                      and name.value == identity.uri)]
    if others:
        raise IdentityMismatchError(
            f"csr: asks for {', '.join(others)}, but the caller's credential proves only "
            f"{identity.uri}; put that SPIFFE ID (or no SAN) in the CSR")


def _key_usage(*, key_encipherment: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False,
                         key_encipherment=key_encipherment, data_encipherment=False,
                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)


def _authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
