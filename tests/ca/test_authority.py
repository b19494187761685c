"""The signing authority: self-signed root, SPIFFE leaves, TTLs, CSR checks, plug-in CA."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.verification import PolicyBuilder, Store

from malla.ca import material as files
from malla.ca.authority import (
    CertificateAuthority,
    CSRError,
    IdentityMismatchError,
)
from malla.ca.material import CAMaterialError
from malla.ca.spiffe import Identity
from tests.ca.conftest import Clock, make_intermediate, write_plugin
from tests.ca.csr import make_csr, tampered, uri
from tests.ca.spiffe_rules import assert_svid

REVIEWS = Identity("cluster.local", "default", "reviews")


def verify_chain(ca: CertificateAuthority, issued, clock: Clock) -> list[x509.Certificate]:
    """Chain building as a TLS client would do it; returns the verified chain."""
    verifier = (PolicyBuilder().store(Store(list(issued.trust_bundle)))
                .time(clock.now).build_client_verifier())
    return verifier.verify(issued.certificate, list(issued.intermediates)).chain


def test_first_use_makes_a_self_signed_root_with_istio_file_names(ca: CertificateAuthority,
                                                                  ca_dir: Path, clock: Clock):
    for name in ("root-cert.pem", "ca-cert.pem", "ca-key.pem", "cert-chain.pem"):
        assert (ca_dir / name).is_file(), name
    assert stat.S_IMODE((ca_dir / "ca-key.pem").stat().st_mode) == 0o600
    root = files.read_certs(ca_dir / "root-cert.pem")
    assert root == [ca.material.ca_cert]
    cert = root[0]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    lifetime = cert.not_valid_after_utc - clock.now
    assert timedelta(days=3649) < lifetime <= timedelta(days=3650)


def test_reopening_the_directory_keeps_the_same_root(ca: CertificateAuthority, ca_dir: Path,
                                                     clock: Clock):
    again = CertificateAuthority.open(ca_dir, clock=clock)
    assert again.trust_bundle == ca.trust_bundle
    issued = again.sign_csr(make_csr(), identity=REVIEWS)
    assert verify_chain(ca, issued, clock)[-1] == ca.trust_bundle[0]


def test_leaf_is_a_spiffe_svid_for_the_caller(ca: CertificateAuthority, clock: Clock):
    issued = ca.sign_csr(make_csr(sans=[uri(REVIEWS.uri)]), identity=REVIEWS)
    assert_svid(issued.certificate, spiffe_id="spiffe://cluster.local/ns/default/sa/reviews")
    assert issued.intermediates == ()
    assert verify_chain(ca, issued, clock)[-1] == ca.trust_bundle[0]


def test_rsa_leaf_may_have_key_encipherment(ca: CertificateAuthority):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issued = ca.sign_csr(make_csr(key), identity=REVIEWS)
    assert_svid(issued.certificate, spiffe_id=REVIEWS.uri)
    assert issued.certificate.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment


def test_identity_comes_from_the_caller_not_from_the_csr(ca: CertificateAuthority):
    hostile = make_csr(sans=[uri("spiffe://cluster.local/ns/istio-system/sa/admin")])
    with pytest.raises(IdentityMismatchError, match="ns/istio-system/sa/admin"):
        ca.sign_csr(hostile, identity=REVIEWS)
    with pytest.raises(IdentityMismatchError, match="evil.example"):
        ca.sign_csr(make_csr(sans=[x509.DNSName("evil.example")]), identity=REVIEWS)
    # A subject naming someone else is not copied: the leaf's subject is empty.
    issued = ca.sign_csr(make_csr(common_name="admin"), identity=REVIEWS)
    assert list(issued.certificate.subject) == []
    assert_svid(issued.certificate, spiffe_id=REVIEWS.uri)


def test_other_trust_domains_are_refused(ca: CertificateAuthority):
    with pytest.raises(IdentityMismatchError, match="trust domain 'cluster.local'"):
        ca.sign_csr(make_csr(), identity=Identity("other.mesh", "default", "reviews"))


@pytest.mark.parametrize(("asked", "expected"), [
    (None, timedelta(hours=24)),
    (0, timedelta(hours=24)),
    (-5, timedelta(hours=24)),
    (3600, timedelta(hours=1)),
    (timedelta(days=30), timedelta(days=30)),
    (timedelta(days=365), timedelta(days=90)),
    (0.2, timedelta(seconds=1)),
])
def test_ttl_default_and_clamping(ca: CertificateAuthority, clock: Clock, asked, expected):
    cert = ca.sign_csr(make_csr(), identity=REVIEWS, ttl=asked).certificate
    assert cert.not_valid_after_utc - clock.now == expected


def test_leaf_never_outlives_its_signing_certificate(ca_dir: Path, clock: Clock):
    short = CertificateAuthority.open(ca_dir, clock=clock, root_ttl=timedelta(hours=2))
    cert = short.sign_csr(make_csr(), identity=REVIEWS).certificate
    assert cert.not_valid_after_utc == short.material.ca_cert.not_valid_after_utc


def test_csr_whose_signature_does_not_verify_is_refused(ca: CertificateAuthority):
    with pytest.raises(CSRError, match="signature does not verify"):
        ca.sign_csr(tampered(make_csr()), identity=REVIEWS)


@pytest.mark.parametrize(("key", "message"), [
    (ed25519.Ed25519PrivateKey.generate(), "Ed25519PublicKey keys are not allowed"),
    (ec.generate_private_key(ec.SECP521R1()), "curve secp521r1 is not allowed"),
])
def test_key_types_envoy_cannot_use_are_refused(ca: CertificateAuthority, key, message):
    with pytest.raises(CSRError, match=message):
        ca.sign_csr(make_csr(key), identity=REVIEWS)


def test_garbage_is_not_a_csr(ca: CertificateAuthority):
    with pytest.raises(CSRError, match="not a PEM certificate signing request"):
        ca.sign_csr("hello", identity=REVIEWS)


# -- plug-in CA material ----------------------------------------------------------


def test_plugin_intermediate_signs_and_its_chain_is_served(ca_dir: Path, clock: Clock):
    root, intermediate = write_plugin(ca_dir, now=clock.now)
    ca = CertificateAuthority.open(ca_dir, clock=clock)
    issued = ca.sign_csr(make_csr(), identity=REVIEWS)
    assert_svid(issued.certificate, spiffe_id=REVIEWS.uri)
    assert issued.certificate.issuer == intermediate.subject
    assert issued.intermediates == (intermediate,)
    assert issued.trust_bundle == (root,)
    assert verify_chain(ca, issued, clock) == [issued.certificate, intermediate, root]
    chain = issued.cert_chain()
    assert len(chain) == 3 and x509.load_pem_x509_certificates(chain[-1].encode()) == [root]


def test_plugin_files_are_checked(ca_dir: Path, clock: Clock):
    write_plugin(ca_dir, now=clock.now)
    other_key = ec.generate_private_key(ec.SECP256R1())
    files.write_file(ca_dir / "ca-key.pem", files.key_pem(other_key), private=True)
    with pytest.raises(CAMaterialError, match=r"ca-key\.pem: this key does not belong"):
        CertificateAuthority.open(ca_dir, clock=clock)


def test_plugin_root_that_did_not_issue_the_chain_is_refused(ca_dir: Path, clock: Clock):
    write_plugin(ca_dir, now=clock.now)
    _, stranger = files.make_root(trust_domain="cluster.local", now=clock.now)
    files.write_file(ca_dir / "root-cert.pem", files.pem_bytes([stranger]))
    with pytest.raises(CAMaterialError, match=r"root-cert\.pem: no root in it issued"):
        CertificateAuthority.open(ca_dir, clock=clock)


def test_plugin_chain_with_a_wrong_link_is_refused(ca_dir: Path, clock: Clock):
    root_key, root = files.make_root(trust_domain="cluster.local", now=clock.now)
    mid_key, mid = make_intermediate(root_key, root, now=clock.now, name="mid",
                                     path_length=None)
    _, sibling = make_intermediate(root_key, root, now=clock.now, name="sibling")
    key, low = make_intermediate(mid_key, mid, now=clock.now, name="low")
    files.write_signing(ca_dir, key=key, chain=[low, sibling, root])
    files.write_file(ca_dir / "root-cert.pem", files.pem_bytes([root]))
    with pytest.raises(CAMaterialError, match=r"cert-chain\.pem: CN=sibling did not issue CN=low"):
        CertificateAuthority.open(ca_dir, clock=clock)
    files.write_signing(ca_dir, key=key, chain=[low, mid, root])
    issued = CertificateAuthority.open(ca_dir, clock=clock).sign_csr(make_csr(), identity=REVIEWS)
    assert [c.subject for c in verify_chain(None, issued, clock)] == [
        issued.certificate.subject, low.subject, mid.subject, root.subject]


def test_missing_file_names_what_a_ca_directory_holds(ca_dir: Path, clock: Clock):
    write_plugin(ca_dir, now=clock.now)
    (ca_dir / "root-cert.pem").unlink()
    with pytest.raises(CAMaterialError, match=r"root-cert\.pem: missing; a CA directory holds"):
        CertificateAuthority.open(ca_dir, clock=clock)


def test_expired_ca_material_is_refused(ca_dir: Path, clock: Clock):
    write_plugin(ca_dir, now=clock.now)
    clock.advance(366 * 86400)
    with pytest.raises(CAMaterialError, match=r"ca-cert\.pem: not valid now"):
        CertificateAuthority.open(ca_dir, clock=clock)
