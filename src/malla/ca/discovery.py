"""How an agent on another host learns the mesh's roots before it trusts anything (kubeadm's discovery).

Theory of operation. A join token carries the hash of each root in the
trust bundle (``sha256:<hex>`` of the root's SubjectPublicKeyInfo, the
format of kubeadm's ``--discovery-token-ca-cert-hash``). The control plane
serves its trust bundle to anyone who asks (``malla.v1.TrustBundle/Get`` on
the join port; roots are public). The agent:

1. opens TLS to the join port without verifying it, only to learn the
   certificate the server presents (``_presented_certificate``);
2. asks that server for the bundle over gRPC, trusting exactly that
   certificate (gRPC accepts a leaf as its own trust anchor): nothing secret
   is sent, and nothing is believed yet;
3. keeps only the roots whose hash the token names (``pinned_roots``). A
   bundle with no such root is refused: someone else answered. Roots the
   token does not name are dropped, so a bundle padded with an attacker's
   root gains nothing.

Only then does the token itself leave the host, to a server verified
against the pinned roots (``malla.ca.service.request_certificate``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

SERVICE = "malla.v1.TrustBundle"
METHOD = "Get"
FULL_METHOD = f"/{SERVICE}/{METHOD}"
HASH_PREFIX = "sha256:"


class TrustBundleError(RuntimeError):
    """The roots could not be fetched, or none of them is the one the token names."""


def root_hash(root: x509.Certificate) -> str:
    """``sha256:<hex>`` of the certificate's SubjectPublicKeyInfo (kubeadm's CA cert hash)."""
    spki = root.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return HASH_PREFIX + hashlib.sha256(spki).hexdigest()


def root_hashes(bundle_pem: bytes) -> tuple[str, ...]:
    """The hash of every root in a PEM trust bundle, in the bundle's order."""
    return tuple(root_hash(root) for root in x509.load_pem_x509_certificates(bundle_pem))


def check_hashes(hashes: Iterable[str]) -> tuple[str, ...]:
    """The hashes, each checked to be ``sha256:`` and 64 hex digits (ValueError says which is not)."""
    checked = []
    for value in hashes:
        digest = value.strip().lower()
        hex_part = digest.removeprefix(HASH_PREFIX)
        if not digest.startswith(HASH_PREFIX) or len(hex_part) != 64 or any(
                c not in "0123456789abcdef" for c in hex_part):
            raise ValueError(f"CA hash {value!r}: expected 'sha256:' and 64 hex digits")
        checked.append(digest)
    return tuple(checked)


def pinned_roots(bundle_pem: bytes, hashes: Sequence[str], *, source: str, advice: str) -> bytes:
    """The roots of `bundle_pem` that `hashes` name, as PEM; TrustBundleError (ending in `advice`) when none."""
    wanted = set(check_hashes(hashes))
    try:
        roots = x509.load_pem_x509_certificates(bundle_pem)
    except ValueError:
        raise TrustBundleError(f"{source} holds no PEM certificates") from None
    kept = [root for root in roots if root_hash(root) in wanted]
    if not kept:
        found = ", ".join(root_hash(root) for root in roots) or "none"
        raise TrustBundleError(
            f"none of the roots of {source} has the hash the join token names "
            f"({', '.join(sorted(wanted))}; found {found}): {advice}")
    return b"".join(root.public_bytes(serialization.Encoding.PEM) for root in kept)


def trust_bundle_handler(bundle: Callable[[], bytes]) -> grpc.GenericRpcHandler:
    """``malla.v1.TrustBundle/Get``: the current trust bundle (PEM) to any caller, as raw bytes."""
    async def get(_request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        return bundle()

    return grpc.method_handlers_generic_handler(SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(get)})


def fetch_trust_bundle(address: str, *, hashes: Sequence[str], timeout: float = 10.0) -> bytes:
    """The roots the control plane at `address` (its join port) serves that `hashes` name (PEM)."""
    host, port = split_address(address)
    try:
        presented = _presented_certificate(host, port, timeout=timeout)
    except (OSError, ssl.SSLError) as exc:
        raise TrustBundleError(f"cannot reach the control plane's join port {address}: "
                               f"{getattr(exc, 'strerror', None) or exc}") from None
    credentials = grpc.ssl_channel_credentials(root_certificates=presented)
    options = [("grpc.ssl_target_name_override", _a_name_of(presented))]
    with grpc.secure_channel(address, credentials, options=options) as channel:
        try:
            bundle = channel.unary_unary(FULL_METHOD)(b"", timeout=timeout)
        except grpc.RpcError as exc:
            raise TrustBundleError(f"the control plane at {address} did not give its trust bundle: "
                                   f"{exc.code().name}: {exc.details()}") from None
    return pinned_roots(bundle, hashes, source=f"the trust bundle served at {address}",
                        advice="this is not the control plane that made the token, or something sits in "
                               "between; check the address")


def split_address(address: str, *, default_port: int | None = None) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or (with a default port) a bare host; ValueError says what is wrong."""
    text = address.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":") if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"{address!r}: give HOST or HOST:PORT")
    if not port_text:
        if default_port is None:
            raise ValueError(f"{address!r}: give HOST:PORT")
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{address!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _presented_certificate(host: str, port: int, *, timeout: float) -> bytes:
    """The certificate the server presents (PEM), unverified: only a name and an anchor for step 2."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=None) as tls:
            der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server presented no certificate")
    return ssl.DER_cert_to_PEM_cert(der).encode()


def _a_name_of(pem: bytes) -> str:
    """A DNS name or IP address of the certificate, for gRPC's host name check."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    names: list[str] = list(sans.get_values_for_type(x509.DNSName))
    names += [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)
              if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)]
    if not names:
        raise TrustBundleError("the join port's certificate names no host; is this a malla control plane?")
    return names[0]
