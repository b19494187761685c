"""The CA over real gRPC on loopback: join with a token, renew over mTLS, refusals."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from malla.ca import material as files
from malla.ca.authority import CertificateAuthority
from malla.ca.service import (
    AuthenticationError,
    CAServer,
    CertificateRequestError,
    identity_from_certificate,
    request_certificate,
)
from malla.ca.spiffe import parse_spiffe_id
from malla.ca.tokens import JoinTokens, load_or_create_secret
from tests.ca.csr import make_csr, uri
from tests.ca.spiffe_rules import assert_svid

REVIEWS = "spiffe://cluster.local/ns/default/sa/reviews"


class Fixture:
    def __init__(self, tmp_path: Path) -> None:
        self.ca = CertificateAuthority.open(tmp_path / "ca")
        self.tokens = JoinTokens(load_or_create_secret(tmp_path / "ca"))
        self.server = CAServer(self.ca, tokens=self.tokens)

    @property
    def mtls(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def join(self) -> str:
        return f"127.0.0.1:{self.server.join_port}"

    def bundle(self) -> bytes:
        return self.ca.trust_bundle_pem()

    async def join_as(self, namespace: str = "default", sa: str = "reviews",
                      **kwargs: Any) -> tuple[list[str], bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        token = self.tokens.create_token(namespace, sa, ttl=600)
        chain = await request_certificate(self.join, make_csr(key), ca_bundle=self.bundle(),
                                          token=token, **kwargs)
        return chain, files.key_pem(key)


def run(tmp_path: Path, body: Callable[[Fixture], Awaitable[None]]) -> None:
    async def main() -> None:
        fixture = Fixture(tmp_path)
        await fixture.server.start(port=0, join_port=0)
        try:
            await body(fixture)
        finally:
            await fixture.server.stop(grace=0)
    asyncio.run(main())


def leaf(chain: list[str]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(chain[0].encode())


async def refused(code: grpc.StatusCode, call: Awaitable[object]) -> str:
    with pytest.raises(CertificateRequestError) as caught:
        await call
    assert caught.value.code == code, str(caught.value)
    return str(caught.value)


def test_join_with_a_token_then_renew_over_mtls(tmp_path: Path):
    async def body(f: Fixture) -> None:
        chain, key = await f.join_as(ttl=3600)
        first = leaf(chain)
        assert_svid(first, spiffe_id=REVIEWS)
        lifetime = first.not_valid_after_utc - first.not_valid_before_utc
        assert 3600 <= lifetime.total_seconds() <= 3600 + 120
        assert x509.load_pem_x509_certificates(chain[-1].encode()) == list(f.ca.trust_bundle)
        # Renewal: the current certificate is the credential; no token.
        renewed = await request_certificate(
            f.mtls, make_csr(sans=[uri(REVIEWS)]), ca_bundle=chain[-1].encode(),
            cert_chain="".join(chain[:-1]).encode(), key=key)
        assert_svid(leaf(renewed), spiffe_id=REVIEWS)
        assert leaf(renewed).serial_number != first.serial_number
    run(tmp_path, body)


def test_renewal_cannot_ask_for_another_identity(tmp_path: Path):
    async def body(f: Fixture) -> None:
        chain, key = await f.join_as()
        creds: dict[str, Any] = dict(ca_bundle=f.bundle(), cert_chain=chain[0].encode(), key=key)
        message = await refused(grpc.StatusCode.PERMISSION_DENIED, request_certificate(
            f.mtls, make_csr(), service_account="admin", **creds))
        assert "proves spiffe://cluster.local/ns/default/sa/reviews" in message
        await refused(grpc.StatusCode.PERMISSION_DENIED, request_certificate(
            f.mtls, make_csr(sans=[uri("spiffe://cluster.local/ns/default/sa/admin")]), **creds))
    run(tmp_path, body)


def test_token_callers_get_the_tokens_identity_only(tmp_path: Path):
    async def body(f: Fixture) -> None:
        token = f.tokens.create_token("default", "reviews", ttl=600)
        hostile = make_csr(sans=[uri("spiffe://cluster.local/ns/istio-system/sa/istiod")])
        await refused(grpc.StatusCode.PERMISSION_DENIED, request_certificate(
            f.join, hostile, ca_bundle=f.bundle(), token=token))
        await refused(grpc.StatusCode.UNAUTHENTICATED, request_certificate(
            f.join, make_csr(), ca_bundle=f.bundle(), token=token, service_account="istiod"))
        # A token for any account in the namespace names the account in metadata.
        wildcard = f.tokens.create_token("default", ttl=600)
        chain = await request_certificate(f.join, make_csr(), ca_bundle=f.bundle(),
                                          token=wildcard, service_account="ratings")
        assert_svid(leaf(chain), spiffe_id="spiffe://cluster.local/ns/default/sa/ratings")
        await refused(grpc.StatusCode.UNAUTHENTICATED, request_certificate(
            f.join, make_csr(), ca_bundle=f.bundle(), token=wildcard))
    run(tmp_path, body)


def test_forged_and_expired_tokens_are_refused(tmp_path: Path):
    async def body(f: Fixture) -> None:
        forged = JoinTokens(b"k" * 32).create_token("default", "reviews", ttl=600)
        message = await refused(grpc.StatusCode.UNAUTHENTICATED, request_certificate(
            f.join, make_csr(), ca_bundle=f.bundle(), token=forged))
        assert "forged" in message
        secret = load_or_create_secret(tmp_path / "ca")
        past = JoinTokens(secret, clock=lambda: 1_000_000.0).create_token("default", ttl=60)
        message = await refused(grpc.StatusCode.UNAUTHENTICATED, request_certificate(
            f.join, make_csr(), ca_bundle=f.bundle(), token=past, service_account="reviews"))
        assert "expired" in message
    run(tmp_path, body)


def test_callers_without_a_usable_credential_are_refused(tmp_path: Path):
    async def body(f: Fixture) -> None:
        # On the join port with no token: told what to send.
        creds = grpc.ssl_channel_credentials(f.bundle())
        async with grpc.aio.secure_channel(f.join, creds) as channel:
            call = channel.unary_unary("/istio.v1.auth.IstioCertificateService/CreateCertificate")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(b"", timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "Bearer <join token>" in caught.value.details()
        # The mTLS port refuses a token alone, a certificate from another CA, and plaintext.
        token = f.tokens.create_token("default", "reviews", ttl=600)
        await refused(grpc.StatusCode.UNAVAILABLE, request_certificate(
            f.mtls, make_csr(), ca_bundle=f.bundle(), token=token, timeout=3))
        stranger = CertificateAuthority.open(tmp_path / "stranger")
        key = ec.generate_private_key(ec.SECP256R1())
        foreign = stranger.sign_csr(make_csr(key), identity=parse_spiffe_id(REVIEWS))
        await refused(grpc.StatusCode.UNAVAILABLE, request_certificate(
            f.mtls, make_csr(), ca_bundle=f.bundle(), cert_chain=foreign.chain_pem(),
            key=files.key_pem(key), timeout=3))
        async with grpc.aio.insecure_channel(f.join) as channel:
            call = channel.unary_unary("/istio.v1.auth.IstioCertificateService/CreateCertificate")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(b"", timeout=3)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    run(tmp_path, body)


def _client_cert(ca: CertificateAuthority, key: ec.EllipticCurvePrivateKey,
                 names: list[x509.GeneralName], *, trust_ca: bool = False) -> bytes:
    """A client certificate signed by the mesh CA but outside the SVID rules."""
    issuer = ca.material.ca_cert
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")]))
            .issuer_name(issuer.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=trust_ca, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca.material.ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(("names", "message"), [
    ([x509.DNSName("reviews.default")], "carries 0 SPIFFE IDs"),
    ([uri(REVIEWS), uri("spiffe://cluster.local/ns/default/sa/b")], "carries 2 SPIFFE IDs"),
    ([uri("spiffe://other.mesh/ns/default/sa/reviews")], "trust domain 'other.mesh'"),
])
def test_mesh_signed_client_certificates_outside_the_svid_rules_prove_nothing(
        tmp_path: Path, names: list[x509.GeneralName], message: str):
    async def body(f: Fixture) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        text = await refused(grpc.StatusCode.UNAUTHENTICATED, request_certificate(
            f.mtls, make_csr(), ca_bundle=f.bundle(), cert_chain=_client_cert(f.ca, key, names),
            key=files.key_pem(key)))
        assert message in text
    run(tmp_path, body)


def test_a_ca_certificate_cannot_act_as_a_workload(tmp_path: Path):
    ca = CertificateAuthority.open(tmp_path / "ca")
    pem = _client_cert(ca, ec.generate_private_key(ec.SECP256R1()), [uri(REVIEWS)], trust_ca=True)
    with pytest.raises(AuthenticationError, match="CA certificate cannot act as a workload"):
        identity_from_certificate(pem, trust_domain="cluster.local")


def test_bad_csr_is_an_invalid_argument(tmp_path: Path):
    async def body(f: Fixture) -> None:
        token = f.tokens.create_token("default", "reviews", ttl=600)
        message = await refused(grpc.StatusCode.INVALID_ARGUMENT, request_certificate(
            f.join, "not a csr", ca_bundle=f.bundle(), token=token))
        assert "csr: not a PEM certificate signing request" in message
    run(tmp_path, body)


def test_serving_certificate_names_localhost_and_loopback(tmp_path: Path):
    async def body(f: Fixture) -> None:
        chain, _ = await f.join_as(server_name="localhost")
        assert_svid(leaf(chain), spiffe_id=REVIEWS)
        await f.join_as()  # by IP: 127.0.0.1 is an IP SAN
        with pytest.raises(CertificateRequestError):
            await f.join_as(server_name="istiod.example", timeout=3)
    run(tmp_path, body)


def test_serving_certificate_follows_a_root_rotation(tmp_path: Path):
    async def body(f: Fixture) -> None:
        old_bundle = f.bundle()
        new_root = f.ca.begin_root_rotation()
        f.ca.activate_next_root()
        only_new = new_root.public_bytes(serialization.Encoding.PEM)
        # New handshakes get a serving certificate from the new root.
        token = f.tokens.create_token("default", "reviews", ttl=600)
        chain = await request_certificate(f.join, make_csr(), ca_bundle=only_new, token=token)
        assert leaf(chain).issuer == new_root.subject
        assert len(x509.load_pem_x509_certificates(chain[-1].encode())) == 2
        with pytest.raises(CertificateRequestError):
            await request_certificate(f.join, make_csr(), ca_bundle=old_bundle, token=token,
                                      timeout=3)
    run(tmp_path, body)
