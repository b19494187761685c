"""Gateway specs parse as Istio reads them: servers, ports, TLS settings and their enums."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from malla.api.networking.gateway import Gateway

GATEWAY = """
selector: {istio: ingressgateway}
servers:
- port: {number: 80, name: http, protocol: HTTP}
  hosts: [uk.bookinfo.com, eu.bookinfo.com]
  tls: {httpsRedirect: true}
- port: {number: 443, name: https-443, protocol: HTTPS}
  hosts: [ns1/uk.bookinfo.com]
  name: secure
  bind: 0.0.0.0
  tls:
    mode: SIMPLE
    credentialNames: [rsa-cert, ecdsa-cert]
    minProtocolVersion: TLSV1_2
    maxProtocolVersion: 3
    cipherSuites: [ECDHE-RSA-AES128-GCM-SHA256]
    caCertCredentialName: client-ca
- port: {number: 9443, name: https-9443, protocol: HTTPS}
  hosts: ["*"]
  tls:
    mode: MUTUAL
    tlsCertificates:
    - {serverCertificate: /etc/certs/rsa.pem, privateKey: /etc/certs/rsa.key}
    caCertificates: /etc/certs/ca.pem
    subjectAltNames: [spiffe://cluster.local/ns/a/sa/b]
    verifyCertificateSpki: [abc=]
"""


def test_gateway_parses_into_typed_fields():
    gw = Gateway.model_validate(YAML(typ="safe", pure=True).load(GATEWAY))
    assert gw.selector == {"istio": "ingressgateway"}
    assert gw.servers[0].tls.https_redirect is True
    assert gw.servers[0].tls.mode is None  # unset: the proto default applies
    secure = gw.servers[1]
    assert (secure.name, secure.bind, secure.port.number) == ("secure", "0.0.0.0", 443)
    assert secure.tls.credential_names == ["rsa-cert", "ecdsa-cert"]
    assert (secure.tls.min_protocol_version, secure.tls.max_protocol_version) == ("TLSV1_2", "TLSV1_2")
    assert secure.tls.ca_cert_credential_name == "client-ca"
    assert gw.servers[2].tls.tls_certificates[0].private_key == "/etc/certs/rsa.key"


@pytest.mark.parametrize(("given", "kept"), [("AUTO_PASSTHROUGH", "AUTO_PASSTHROUGH"), (3, "AUTO_PASSTHROUGH"), (5, "OPTIONAL_MUTUAL"), (0, "PASSTHROUGH")])
def test_tls_mode_by_name_or_number(given, kept):
    gw = Gateway.model_validate({"servers": [{"tls": {"mode": given}}]})
    assert gw.servers[0].tls.mode == kept


def test_snake_case_keys_give_the_same_gateway():
    camel = Gateway.model_validate({"servers": [{"defaultEndpoint": "127.0.0.1:8080", "tls": {"httpsRedirect": True, "privateKey": "k"}}]})
    snake = Gateway.model_validate({"servers": [{"default_endpoint": "127.0.0.1:8080", "tls": {"https_redirect": True, "private_key": "k"}}]})
    assert camel == snake


def test_unknown_field_is_rejected_with_its_path():
    with pytest.raises(ValidationError) as info:
        Gateway.model_validate({"servers": [{"port": {"number": 80, "protocol": "HTTP", "name": "http", "appProtocol": "h2"}}]})
    assert info.value.errors()[0]["loc"] == ("servers", 0, "port", "appProtocol")


def test_unknown_tls_protocol_version_names_the_allowed_ones():
    with pytest.raises(ValidationError) as info:
        Gateway.model_validate({"servers": [{"tls": {"minProtocolVersion": "TLSV1_4"}}]})
    assert info.value.errors()[0]["loc"] == ("servers", 0, "tls", "minProtocolVersion")
    assert "TLS_AUTO, TLSV1_0, TLSV1_1, TLSV1_2, TLSV1_3" in str(info.value)


def test_port_number_must_be_an_integer():
    with pytest.raises(ValidationError) as info:
        Gateway.model_validate({"servers": [{"port": {"number": "http"}}]})
    assert info.value.errors()[0]["loc"] == ("servers", 0, "port", "number")
