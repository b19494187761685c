"""SPIFFE IDs and the SVID rule checker the other CA tests rely on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from malla.ca.spiffe import Identity, parse_spiffe_id
from tests.ca.conftest import START
from tests.ca.spiffe_rules import svid_violations


def test_format_and_parse_round_trip():
    identity = Identity("cluster.local", "default", "bookinfo-reviews")
    assert identity.uri == "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
    assert parse_spiffe_id(identity.uri) == identity


@pytest.mark.parametrize(("uri", "message"), [
    ("https://cluster.local/ns/a/sa/b", "must start with 'spiffe://'"),
    ("spiffe://cluster.local/ns/a", "/ns/<namespace>/sa/<service-account>"),
    ("spiffe://cluster.local/ns/a/sa/b/extra", "/ns/<namespace>/sa/<service-account>"),
    ("spiffe://Cluster.Local/ns/a/sa/b", "trust domain 'Cluster.Local'"),
    ("spiffe://cluster.local/ns/../sa/b", "namespace '..'"),
    ("spiffe://cluster.local/ns/a/sa/b%20c", "service_account 'b%20c'"),
    ("spiffe:///ns/a/sa/b", "trust domain ''"),
])
def test_bad_ids_say_what_is_wrong(uri: str, message: str):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_spiffe_id(uri)


def _cert(*, ca: bool, uris: list[str], key_cert_sign: bool, eku: bool) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(x509.Name([]))
        .public_key(key.public_key()).serial_number(7)
        .not_valid_before(START).not_valid_after(START + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(u) for u in uris]), critical=False))
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False)
    return builder.sign(key, hashes.SHA256())


def test_rule_checker_catches_each_violation():
    bad = _cert(ca=True, key_cert_sign=True, eku=False,
                uris=["spiffe://cluster.local/ns/a/sa/b", "spiffe://cluster.local/ns/a/sa/c"])
    problems = "; ".join(svid_violations(bad))
    for expected in ("2 URI SANs", "SAN extension is not critical", "CA=true",
                     "keyCertSign", "no extendedKeyUsage"):
        assert expected in problems
    assert svid_violations(_cert(ca=False, key_cert_sign=False, eku=True,
                                 uris=["https://example.com/"]))[0].startswith(
        "URI SAN is not a SPIFFE ID")
