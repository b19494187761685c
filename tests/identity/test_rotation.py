"""The agent's key, CSR and rotation, driven by a fake clock (no real waiting)."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from malla.agent.identity import (
    CertificateRotator,
    build_csr,
    certificate_from_response,
    generate_key,
)
from malla.ca.authority import CertificateAuthority
from malla.ca.spiffe import parse_spiffe_id
from tests.ca.spiffe_rules import assert_svid
from tests.identity.conftest import REVIEWS, FakeTime, SigningFetch, Stop


def rotator(fetch: SigningFetch, fake_time: FakeTime, **kwargs: object) -> CertificateRotator:
    return CertificateRotator(spiffe_id=REVIEWS, fetch=fetch, clock=fake_time,
                              sleep=fake_time.sleep, rng=random.Random(7), **kwargs)


def test_csr_carries_the_spiffe_id_and_a_local_p256_key():
    key = generate_key()
    csr = x509.load_pem_x509_csr(build_csr(key, REVIEWS))
    assert csr.is_signature_valid
    assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey)
    assert csr.public_key().curve.name == "secp256r1"
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [REVIEWS]


def test_response_is_checked_against_what_was_asked(fake_ca: CertificateAuthority,
                                                    fake_time: FakeTime):
    key = generate_key()
    chain = fake_ca.sign_csr(build_csr(key, REVIEWS), identity=parse_spiffe_id(REVIEWS)).cert_chain()
    cert = certificate_from_response(chain, key=key, spiffe_id=REVIEWS, now=fake_time())
    assert_svid(x509.load_pem_x509_certificate(cert.chain_pem), spiffe_id=REVIEWS)
    assert cert.trust_bundle_pem == fake_ca.trust_bundle_pem()
    assert cert.not_after - fake_time() == 24 * 3600
    with pytest.raises(ValueError, match="a key other than this agent's"):
        certificate_from_response(chain, key=generate_key(), spiffe_id=REVIEWS, now=0)
    with pytest.raises(ValueError, match="not 'spiffe://cluster.local/ns/default/sa/other'"):
        certificate_from_response(chain, key=key, spiffe_id=REVIEWS.replace("reviews", "other"),
                                  now=0)
    with pytest.raises(ValueError, match="lacks the trust bundle"):
        certificate_from_response(chain[:1], key=key, spiffe_id=REVIEWS, now=0)


def test_rotates_at_half_life_with_jitter_for_many_rounds(signing_fetch: SigningFetch,
                                                          fake_time: FakeTime):
    rot = rotator(signing_fetch, fake_time, ttl=100)
    seen: list[tuple[float, str]] = []
    rot.add_listener(lambda cert: seen.append((fake_time(), cert.serial_hex)))
    fake_time.stop_after = 12
    with pytest.raises(Stop):
        asyncio.run(rot.run())
    assert len(seen) == 13  # the first certificate, then one per sleep
    gaps = [b[0] - a[0] for a, b in zip(seen, seen[1:])]
    assert all(45 <= gap <= 55 for gap in gaps), gaps
    assert len(set(round(gap, 6) for gap in gaps)) > 1  # jittered, not lock-step
    assert len({serial for _, serial in seen}) == 13
    assert signing_fetch.ttls == [100] * 13
    status = rot.status()
    assert (status.state, status.rotations, status.failures) == ("VALID", 13, 0)
    assert 45 <= status.next_rotation_in <= 55


def test_each_rotation_uses_a_new_key(signing_fetch: SigningFetch, fake_time: FakeTime):
    rot = rotator(signing_fetch, fake_time)
    first = asyncio.run(rot.rotate())
    second = asyncio.run(rot.rotate())
    assert first.key_pem != second.key_pem


def test_failing_rotation_keeps_the_current_certificate_and_gets_louder(
        signing_fetch: SigningFetch, fake_time: FakeTime, caplog: pytest.LogCaptureFixture):
    rot = rotator(signing_fetch, fake_time, ttl=400, retry_base=1, retry_max=30)
    served: list[str] = []
    rot.add_listener(lambda cert: served.append(cert.serial_hex))
    asyncio.run(rot.rotate())
    signing_fetch.failing = ConnectionError("CA unreachable")
    caplog.set_level(logging.WARNING, logger="malla.agent.identity")
    fake_time.stop_after = 40
    with pytest.raises(Stop):
        asyncio.run(rot.run())
    assert served == [rot.current.serial_hex]  # nothing new served, the old one kept
    status = rot.status()
    assert status.state == "EXPIRED" and status.last_error == "CA unreachable"
    assert status.seconds_left < 0 and status.serial == served[0]
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert any(level == "WARNING" and "stays in use" in text for level, text in levels)
    assert any(level == "ERROR" and "expires in" in text for level, text in levels)
    assert any(level == "ERROR" and "EXPIRED" in text for level, text in levels)
    retries = fake_time.sleeps[1:]
    assert retries[:3] == [1, 2, 4] and max(retries) <= 30

    signing_fetch.failing = None
    asyncio.run(rot.rotate())
    assert rot.status().state == "VALID" and rot.status().last_error is None
    assert len(served) == 2


def test_retries_come_sooner_as_expiry_nears(signing_fetch: SigningFetch, fake_time: FakeTime):
    rot = rotator(signing_fetch, fake_time, ttl=40, retry_base=1, retry_max=30)
    asyncio.run(rot.rotate())
    signing_fetch.failing = ConnectionError("down")
    fake_time.now += 30  # 10 s left
    fake_time.stop_after = 5
    with pytest.raises(Stop):
        asyncio.run(rot.run())
    # Backoff doubles (1, 2, 4, 8) but a quarter of the time left caps it: 10 s left,
    # then 9, 7, 5.25.
    assert fake_time.sleeps == pytest.approx([1, 2, 1.75, 1.3125, 1])


def test_no_certificate_yet_is_pending(signing_fetch: SigningFetch, fake_time: FakeTime):
    signing_fetch.failing = PermissionError("token refused")
    rot = rotator(signing_fetch, fake_time)
    fake_time.stop_after = 7
    with pytest.raises(Stop):
        asyncio.run(rot.run())
    status = rot.status()
    assert (status.state, status.serial, status.last_error) == ("PENDING", None, "token refused")
    assert fake_time.sleeps == [1, 2, 4, 8, 16, 30, 30]


def test_a_ca_that_never_answers_is_a_failure_not_a_hang(fake_time: FakeTime):
    async def hang(*_args: object) -> list[str]:
        await asyncio.Event().wait()
        return []
    rot = CertificateRotator(spiffe_id=REVIEWS, fetch=hang, clock=fake_time,
                             sleep=fake_time.sleep, fetch_timeout=0.05)
    fake_time.stop_after = 1
    with pytest.raises(Stop):
        asyncio.run(rot.run())
    status = rot.status()
    assert (status.state, status.failures) == ("PENDING", 2)
    assert status.last_error == "the CA did not answer within 0.05 s"


def test_ratio_and_jitter_are_checked(signing_fetch: SigningFetch):
    with pytest.raises(ValueError, match="inside"):
        CertificateRotator(spiffe_id=REVIEWS, fetch=signing_fetch, renew_ratio=0.98, jitter=0.05)
