"""Gateway analyzers on small inputs: ports, credentials, conflicts, shared certificates."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.analysis.conftest import findings, pairs

GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: p, protocol: HTTPS}}
    hosts: ["{host}"]
    tls: {{mode: SIMPLE, credentialName: {cred}}}
"""


def gateway(name: str, *, port: int = 443, host: str = "shop.example.com", cred: str = "shop-cert") -> str:
    return "---" + GATEWAY.format(name=name, port=port, host=host, cred=cred)


def secret(name: str, *, not_after: datetime) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shop.example.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(datetime(2024, 1, 1, tzinfo=UTC))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    crt = base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return (
        f"---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: istio-system}}\ntype: kubernetes.io/tls\n"
        f"data: {{tls.crt: {crt}, tls.key: {base64.b64encode(pem_key).decode()}}}\n"
    )


NOW = datetime(2026, 8, 1, tzinfo=UTC)


def test_server_port_must_reach_the_workload_through_its_service() -> None:
    found = findings(gateway("gw", port=8443), "gateway.IngressGatewayPortAnalyzer")
    assert [d.message for d in found] == [
        "The gateway is listening on a target port (port 8443) that is not defined in the Service associated with "
        "its workload instances (Pod selector istio=ingressgateway). If you need to access the gateway port through "
        "the gateway Service, it will not be available."
    ]
    assert findings(gateway("gw", port=443), "gateway.IngressGatewayPortAnalyzer") == []


def test_credential_secret_is_looked_up_in_the_workload_namespace_and_checked() -> None:
    text = gateway("gw") + secret("shop-cert", not_after=datetime(2030, 1, 1, tzinfo=UTC))
    assert findings(text, "gateway.SecretAnalyzer", now=NOW) == []
    missing = findings(gateway("gw", cred="other"), "gateway.SecretAnalyzer", now=NOW)
    assert [d.message for d in missing] == ['Referenced credentialName not found: "other"']
    assert missing[0].field == "spec.servers[0].tls.credentialName"


def test_expired_credential_is_reported_only_when_the_time_is_given() -> None:
    text = gateway("gw") + secret("shop-cert", not_after=datetime(2025, 1, 1, tzinfo=UTC))
    found = findings(text, "gateway.SecretAnalyzer", now=NOW)
    assert [d.message for d in found] == [
        "The credential referenced by the Gateway gw in namespace istio-system is invalid, "
        "which can cause the traffic not to work as expected."
    ]
    assert findings(text, "gateway.SecretAnalyzer") == []


def test_same_host_on_the_same_workload_and_port_conflicts() -> None:
    text = gateway("a") + gateway("b") + gateway("c", port=8443) + gateway("d", host="other.example.com")
    found = findings(text, "gateway.ConflictingGatewayAnalyzer")
    assert pairs(found) == [("IST0145", "Gateway default/a"), ("IST0145", "Gateway default/b")]
    assert found[0].message == (
        "Conflict with gateways default/b (workload selector istio=ingressgateway, port 443, hosts shop.example.com)."
    )


def test_gateways_on_one_workload_sharing_a_credential() -> None:
    text = gateway("a") + gateway("b", host="admin.example.com") + gateway("c", host="x.example.com", cred="x-cert")
    found = findings(text, "gateway.CertificateAnalyzer")
    assert pairs(found) == [("IST0138", "Gateway default/a"), ("IST0138", "Gateway default/b")]
    assert found[0].message == (
        "Duplicate certificate in multiple gateways [default/a default/b] may cause 404s if clients re-use HTTP2 connections."
    )
