"""CA material on disk, under Istio's file names, and the self-signed root made on first use.

In: a directory. Out: a checked `CAMaterial` (signing certificate and key,
the intermediates up to a root, the trust bundle). Files, as Istio names
them for plug-in CA certificates (`cacerts`):

- `ca-cert.pem`: the certificate that signs workload certificates (a root
  in self-signed mode, an intermediate with plug-in material);
- `ca-key.pem`: its private key (mode 0600);
- `cert-chain.pem`: the chain from `ca-cert.pem` up to the root;
- `root-cert.pem`: the trust bundle, one or more roots. During a root
  rotation it holds the old and the new root.

A root rotation in self-signed mode keeps the staged root beside them in
`next-root-cert.pem` and `next-root-key.pem` until it is activated.
Writes are atomic (temporary file, then rename), keys are written 0600.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

ROOT_CERT_FILE = "root-cert.pem"
CA_CERT_FILE = "ca-cert.pem"
CA_KEY_FILE = "ca-key.pem"
CERT_CHAIN_FILE = "cert-chain.pem"
NEXT_ROOT_CERT_FILE = "next-root-cert.pem"
NEXT_ROOT_KEY_FILE = "next-root-key.pem"

ROOT_TTL = timedelta(days=3650)

CAKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class CAMaterialError(ValueError):
    """CA files are missing, unreadable or do not fit together; the message names the file."""


@dataclass(frozen=True)
class CAMaterial:
    """What signs, what it chains to, and what everyone trusts."""

    ca_cert: x509.Certificate
    ca_key: CAKey
    # From ca_cert (when it is not a root) up to, not including, the root.
    intermediates: tuple[x509.Certificate, ...]
    roots: tuple[x509.Certificate, ...]

    @property
    def self_signed(self) -> bool:
        return not self.intermediates

    @property
    def anchor(self) -> x509.Certificate:
        """The root of the bundle that ca_cert chains to."""
        top = self.intermediates[-1] if self.intermediates else self.ca_cert
        for root in self.roots:
            if _issued_by(top, root):
                return root
        raise CAMaterialError("no root in the trust bundle anchors the CA certificate")


def pem_bytes(certs: Sequence[x509.Certificate]) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def key_pem(key: CAKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_der(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def make_root(*, trust_domain: str, now: datetime,
              ttl: timedelta = ROOT_TTL) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed root: EC P-256, CA=true, keyCertSign + cRLSign, `ttl` long."""
    key = ec.generate_private_key(ec.SECP256R1())
    serial = x509.random_serial_number()
    # A distinct name per root keeps chain building unambiguous during a rotation.
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
        x509.NameAttribute(NameOID.COMMON_NAME, f"malla root CA {serial:032x}"[:64]),
    ])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + ttl)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def load_or_create(directory: Path, *, trust_domain: str, now: datetime,
                   root_ttl: timedelta = ROOT_TTL) -> CAMaterial:
    """Load the CA files; with none there, make and keep a self-signed root."""
    present = [name for name in (CA_CERT_FILE, CA_KEY_FILE, ROOT_CERT_FILE)
               if (directory / name).exists()]
    if not present:
        key, cert = make_root(trust_domain=trust_domain, now=now, ttl=root_ttl)
        write_signing(directory, key=key, chain=[cert])
        write_file(directory / ROOT_CERT_FILE, pem_bytes([cert]))
    return load(directory, now=now)


def load(directory: Path, *, now: datetime) -> CAMaterial:
    """Read and check ca-cert, ca-key, cert-chain (optional) and root-cert."""
    for name in (CA_CERT_FILE, CA_KEY_FILE, ROOT_CERT_FILE):
        if not (directory / name).exists():
            raise CAMaterialError(
                f"{directory / name}: missing; a CA directory holds {CA_CERT_FILE}, "
                f"{CA_KEY_FILE}, {ROOT_CERT_FILE} and optionally {CERT_CHAIN_FILE}")
    ca_cert = read_certs(directory / CA_CERT_FILE)[0]
    ca_key = read_key(directory / CA_KEY_FILE)
    roots = tuple(read_certs(directory / ROOT_CERT_FILE))
    chain_path = directory / CERT_CHAIN_FILE
    chain = read_certs(chain_path) if chain_path.exists() else []
    material = CAMaterial(ca_cert=ca_cert, ca_key=ca_key,
                          intermediates=_intermediates(ca_cert, chain, roots), roots=roots)
    check(material, directory=directory, now=now)
    return material


def check(material: CAMaterial, *, directory: Path, now: datetime) -> None:
    """Every rule a signing CA must meet; errors name the file and the rule."""
    cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    if not _is_ca(material.ca_cert):
        raise CAMaterialError(f"{cert_path}: not a CA certificate; it needs basicConstraints "
                              "CA:TRUE and keyUsage keyCertSign")
    if public_der(material.ca_key.public_key()) != public_der(material.ca_cert.public_key()):
        raise CAMaterialError(f"{key_path}: this key does not belong to {cert_path}")
    if not (material.ca_cert.not_valid_before_utc <= now < material.ca_cert.not_valid_after_utc):
        raise CAMaterialError(
            f"{cert_path}: not valid now (valid from {material.ca_cert.not_valid_before_utc} "
            f"to {material.ca_cert.not_valid_after_utc}); install current CA material")
    for root in material.roots:
        if not _is_ca(root) or not _issued_by(root, root):
            raise CAMaterialError(f"{directory / ROOT_CERT_FILE}: every certificate in it must "
                                  "be a self-signed CA certificate (a root)")
    chain = list(material.intermediates) or [material.ca_cert]
    for child, parent in zip(chain, chain[1:]):
        if not _is_ca(parent) or not _issued_by(child, parent):
            raise CAMaterialError(f"{directory / CERT_CHAIN_FILE}: {parent.subject.rfc4514_string()}"
                                  f" did not issue {child.subject.rfc4514_string()}; list the "
                                  "chain from ca-cert.pem up to the root, in order")
    try:
        material.anchor
    except CAMaterialError:
        raise CAMaterialError(
            f"{directory / ROOT_CERT_FILE}: no root in it issued "
            f"{chain[-1].subject.rfc4514_string()}; add the root that anchors ca-cert.pem") from None


def _intermediates(ca_cert: x509.Certificate, chain: list[x509.Certificate],
                   roots: Sequence[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """Certificates from ca_cert upward that are not roots (cert-chain.pem may repeat either)."""
    if _issued_by(ca_cert, ca_cert):
        return ()
    found = [ca_cert]
    for cert in chain:
        if cert == ca_cert or cert in roots or _issued_by(cert, cert):
            continue
        found.append(cert)
    return tuple(found)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return basic.ca and usage.key_cert_sign


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


# -- files --------------------------------------------------------------------


def read_certs(path: Path) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CAMaterialError(f"{path}: cannot read it ({exc.strerror})") from exc
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise CAMaterialError(f"{path}: holds no PEM certificate (expected "
                              "'-----BEGIN CERTIFICATE-----' blocks)")
    return certs


def read_key(path: Path) -> CAKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise CAMaterialError(f"{path}: cannot read it ({exc.strerror})") from exc
    except (ValueError, TypeError) as exc:
        raise CAMaterialError(f"{path}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CAMaterialError(f"{path}: {type(key).__name__} keys cannot sign here; "
                              "use an EC (P-256/P-384) or RSA key")
    return key


def write_file(path: Path, data: bytes, *, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def write_signing(directory: Path, *, key: CAKey, chain: Sequence[x509.Certificate]) -> None:
    """Write ca-key, ca-cert (chain[0]) and cert-chain (the whole chain)."""
    write_file(directory / CA_KEY_FILE, key_pem(key), private=True)
    write_file(directory / CA_CERT_FILE, pem_bytes(chain[:1]))
    write_file(directory / CERT_CHAIN_FILE, pem_bytes(chain))
