"""Self-signed certificates for the gateway tests, and what a TLS client sees."""

from __future__ import annotations

import datetime
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(common_name: str, *hosts: str) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for ``hosts`` (default: the common name)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts or (common_name,)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_pair(folder: Path, cert: bytes, key: bytes, *, cert_name: str = "tls.crt", key_name: str = "tls.key") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / cert_name).write_bytes(cert)
    (folder / key_name).write_bytes(key)


def peer_common_name(host: str, port: int, *, sni: str, timeout: float = 3.0) -> str:
    """The CN of the certificate a TLS server presents for ``sni`` (not verified: self-signed)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=sni) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    subject = x509.load_der_x509_certificate(der).subject
    return str(subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def https_get(host: str, port: int, *, sni: str, path: str, timeout: float = 3.0) -> tuple[int, str, str]:
    """GET over TLS with ``sni`` as SNI and Host: (status, body, the server certificate's CN)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=sni) as tls:
            der = tls.getpeercert(binary_form=True)
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
            chunks = []
            while chunk := tls.recv(65536):
                chunks.append(chunk)
    head, _, body = b"".join(chunks).decode("utf-8", "replace").partition("\r\n\r\n")
    assert der is not None
    subject = x509.load_der_x509_certificate(der).subject
    return int(head.split()[1]), body, str(subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
