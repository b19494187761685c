"""The agent against a real CA server: join with a token, renew with its certificate."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from malla.agent.identity import CertificateRotator, ca_fetcher
from malla.ca.authority import CertificateAuthority
from malla.ca.service import CAServer, CertificateRequestError
from malla.ca.tokens import JoinTokens, load_or_create_secret
from tests.ca.spiffe_rules import assert_svid
from tests.identity.conftest import REVIEWS


async def _serve(tmp_path: Path) -> tuple[CAServer, CertificateAuthority, JoinTokens]:
    ca = CertificateAuthority.open(tmp_path / "ca")
    tokens = JoinTokens(load_or_create_secret(tmp_path / "ca"))
    server = CAServer(ca, tokens=tokens)
    await server.start(port=0, join_port=0)
    return server, ca, tokens


def test_joins_with_a_token_then_renews_over_mtls(tmp_path: Path):
    async def main() -> None:
        server, ca, tokens = await _serve(tmp_path)
        try:
            fetch = ca_fetcher(address=f"127.0.0.1:{server.port}",
                               join_address=f"127.0.0.1:{server.join_port}",
                               ca_bundle=ca.trust_bundle_pem(),
                               token=tokens.create_token("default", "reviews", ttl=600))
            rot = CertificateRotator(spiffe_id=REVIEWS, fetch=fetch, ttl=3600)
            first = await rot.rotate()
            # From now on the CA takes no tokens: only the certificate can renew.
            server.service.tokens = None
            second = await rot.rotate()
            assert second.serial != first.serial
            assert_svid(x509.load_pem_x509_certificate(second.chain_pem), spiffe_id=REVIEWS)
            # Root rotation: the agent follows the bundle the CA sends.
            ca.begin_root_rotation()
            third = await rot.rotate()
            assert len(x509.load_pem_x509_certificates(third.trust_bundle_pem)) == 2
            ca.activate_next_root()
            fourth = await rot.rotate()  # the CA now serves a certificate from the new root
            assert x509.load_pem_x509_certificate(fourth.chain_pem).issuer == ca.material.ca_cert.subject
        finally:
            await server.stop(grace=0)
    asyncio.run(main())


def test_expired_certificate_falls_back_to_the_token_or_says_what_to_do(tmp_path: Path):
    async def main() -> None:
        server, ca, tokens = await _serve(tmp_path)
        later = lambda: time.time() + 10 * 86400  # noqa: E731  the current cert looks expired
        common = dict(address=f"127.0.0.1:{server.port}",
                      join_address=f"127.0.0.1:{server.join_port}",
                      ca_bundle=ca.trust_bundle_pem(), clock=later)
        try:
            token = tokens.create_token("default", "reviews", ttl=600)
            rot = CertificateRotator(spiffe_id=REVIEWS, fetch=ca_fetcher(token=token, **common))
            await rot.rotate()
            await rot.rotate()
            assert rot.status().rotations == 2
            stuck = CertificateRotator(spiffe_id=REVIEWS, fetch=ca_fetcher(**common))
            stuck.current = rot.current
            with pytest.raises(CertificateRequestError, match="holds an expired certificate and no join token") as err:
                await stuck.rotate()
            assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
        finally:
            await server.stop(grace=0)
    asyncio.run(main())


def test_failed_renewal_and_failed_token_are_both_reported(tmp_path: Path):
    async def main() -> None:
        server, ca, tokens = await _serve(tmp_path)
        try:
            token = tokens.create_token("default", "reviews", ttl=600)
            rot = CertificateRotator(spiffe_id=REVIEWS, fetch=ca_fetcher(
                address="127.0.0.1:1", join_address=f"127.0.0.1:{server.join_port}",
                ca_bundle=ca.trust_bundle_pem(), token=token, timeout=2))
            await rot.rotate()  # joined; the mTLS address is wrong
            server.service.tokens = None
            with pytest.raises(CertificateRequestError, match="renewal over mTLS failed .* and so "
                                                              "did the join token"):
                await rot.rotate()
        finally:
            await server.stop(grace=0)
    asyncio.run(main())
