"""Fixtures for CA tests: a settable clock, a CA in a temporary directory, plug-in material."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from malla.ca import material as files
from malla.ca.authority import CertificateAuthority

START = datetime(2030, 1, 1, tzinfo=timezone.utc)


class Clock:
    """A clock tests move by hand (aware UTC datetimes, or epoch seconds)."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        return self.now.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    return tmp_path / "ca"


@pytest.fixture
def ca(ca_dir: Path, clock: Clock) -> CertificateAuthority:
    return CertificateAuthority.open(ca_dir, clock=clock)


def make_intermediate(root_key: ec.EllipticCurvePrivateKey, root: x509.Certificate, *,
                      now: datetime, days: int = 365,
                      name: str = "malla intermediate",
                      path_length: int | None = 0) -> tuple[ec.EllipticCurvePrivateKey,
                                                                 x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                       critical=False)
        .sign(root_key, hashes.SHA256())
    )
    return key, cert


def write_plugin(directory: Path, *, now: datetime) -> tuple[x509.Certificate, x509.Certificate]:
    """Istio-style plug-in files: an intermediate signing under an offline root."""
    root_key, root = files.make_root(trust_domain="cluster.local", now=now)
    key, intermediate = make_intermediate(root_key, root, now=now)
    files.write_signing(directory, key=key, chain=[intermediate, root])
    files.write_file(directory / files.ROOT_CERT_FILE, files.pem_bytes([root]))
    return root, intermediate
