"""A checker for the SPIFFE X.509-SVID rules every workload certificate must meet.

From the SPIFFE X.509-SVID spec (sections 4 and 5) and RFC 5280: exactly one
URI SAN holding a valid SPIFFE ID; basicConstraints CA=false; keyUsage
critical with digitalSignature and never keyCertSign/cRLSign; a critical SAN
when the subject is empty; plus malla's own rule, EKU serverAuth+clientAuth.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from malla.ca.spiffe import parse_spiffe_id


def svid_violations(cert: x509.Certificate, *, spiffe_id: str | None = None) -> list[str]:
    """Every rule `cert` breaks, as readable lines (empty: a valid SVID)."""
    problems: list[str] = []
    ext = cert.extensions
    try:
        san = ext.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ["no subjectAltName extension"]
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        problems.append(f"{len(uris)} URI SANs, need exactly one")
    for uri in uris:
        try:
            parse_spiffe_id(uri)
        except ValueError as exc:
            problems.append(f"URI SAN is not a SPIFFE ID: {exc}")
    if spiffe_id is not None and uris != [spiffe_id]:
        problems.append(f"URI SANs {uris}, expected [{spiffe_id!r}]")
    if not list(cert.subject) and not san.critical:
        problems.append("empty subject but the SAN extension is not critical")
    problems += _constraint_problems(ext)
    if cert.not_valid_before_utc >= cert.not_valid_after_utc:
        problems.append("notBefore is not before notAfter")
    if not 0 < cert.serial_number < 2 ** 159:
        problems.append("serial number must be positive and at most 20 octets")
    return problems


def _constraint_problems(ext: x509.Extensions) -> list[str]:
    problems = []
    try:
        basic = ext.get_extension_for_class(x509.BasicConstraints).value
        if basic.ca:
            problems.append("basicConstraints CA=true on a leaf")
    except x509.ExtensionNotFound:
        problems.append("no basicConstraints")
    try:
        usage = ext.get_extension_for_class(x509.KeyUsage)
        if not usage.critical:
            problems.append("keyUsage is not critical")
        if not usage.value.digital_signature:
            problems.append("keyUsage lacks digitalSignature")
        if usage.value.key_cert_sign or usage.value.crl_sign:
            problems.append("keyUsage allows keyCertSign or cRLSign on a leaf")
    except x509.ExtensionNotFound:
        problems.append("no keyUsage")
    try:
        eku = set(ext.get_extension_for_class(x509.ExtendedKeyUsage).value)
        if not {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= eku:
            problems.append("extendedKeyUsage lacks serverAuth or clientAuth")
    except x509.ExtensionNotFound:
        problems.append("no extendedKeyUsage")
    return problems


def assert_svid(cert: x509.Certificate, *, spiffe_id: str | None = None) -> None:
    problems = svid_violations(cert, spiffe_id=spiffe_id)
    assert not problems, "not a valid X.509-SVID: " + "; ".join(problems)
