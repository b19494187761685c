"""Istio's certificate messages, built at run time, speak Istio's wire format."""

from __future__ import annotations

from malla.ca.messages import FULL_METHOD, IstioCertificateRequest, IstioCertificateResponse


def test_request_fields_have_istios_numbers():
    # csr = 1 (string), subject_id = 2, validity_duration = 3 (int64), metadata = 4 (Struct)
    wire = b"\x0a\x03csr" + b"\x12\x02id" + b"\x18\x90\x1c" + b"\x22\x0b\x0a\x09\x0a\x02ns\x12\x03\x1a\x01a"
    request = IstioCertificateRequest.FromString(wire)
    assert request.csr == "csr"
    assert request.subject_id == "id"
    assert request.validity_duration == 3600
    assert request.metadata.fields["ns"].string_value == "a"
    assert request.SerializeToString() == wire
    assert request.DESCRIPTOR.full_name == "istio.v1.auth.IstioCertificateRequest"


def test_response_is_a_repeated_string_chain():
    response = IstioCertificateResponse(cert_chain=["leaf", "root"])
    assert response.SerializeToString() == b"\x0a\x04leaf\x0a\x04root"
    assert FULL_METHOD == "/istio.v1.auth.IstioCertificateService/CreateCertificate"
