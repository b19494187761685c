"""Gateway validation: one negative case per rule Istio's webhook applies, plus Istio's own valid YAML."""

from __future__ import annotations

import copy

import pytest
from ruamel.yaml import YAML

from malla.api.networking.gateway import Gateway
from malla.config.validation import Finding, ValidationContext
from malla.config.validation.gateway import validate
from tests.conformance import SAMPLES, VALIDATION_DATASET

HTTP = {"number": 80, "name": "http", "protocol": "HTTP"}
HTTPS = {"number": 443, "name": "https", "protocol": "HTTPS"}
S0 = "spec.servers[0]"


def run(spec: dict, *, name: str = "gw") -> list[Finding]:
    ctx = ValidationContext(kind="Gateway", api_version="networking.istio.io/v1", name=name, namespace="default")
    return list(validate(Gateway.model_validate(spec), ctx))


def gw(*servers: dict) -> dict:
    return {"selector": {"istio": "ingressgateway"}, "servers": [copy.deepcopy(s) for s in servers]}


def server(port: dict | None = None, hosts: list | None = None, **fields) -> dict:
    return {"port": port or HTTP, "hosts": ["*"] if hosts is None else hosts, **fields}


def tls_server(**tls) -> dict:
    return gw(server(HTTPS, tls=tls))


FILES = {"serverCertificate": "/etc/certs/cert.pem", "privateKey": "/etc/certs/key.pem"}

ERRORS = [
    ("gateway name with dots", gw(server()), "metadata.name", "DNS-1123", "my.gateway"),
    ("no servers", {"servers": []}, "spec.servers", "at least one server", "gw"),
    ("no hosts", gw(server(hosts=[])), f"{S0}.hosts", "at least one host", "gw"),
    ("short host", gw(server(hosts=["reviews"])), f"{S0}.hosts[0]", "short name", "gw"),
    ("partial wildcard", gw(server(hosts=["ns/*foo.com"])), f"{S0}.hosts[0]", "partial wildcard", "gw"),
    ("bad host label", gw(server(hosts=["foo..com"])), f"{S0}.hosts[0]", "invalid host", "gw"),
    ("host namespace", gw(server(hosts=["Bad_NS/foo.com"])), f"{S0}.hosts[0]", "namespace", "gw"),
    ("tilde namespace", gw(server(hosts=["~/foo.com"])), f"{S0}.hosts[0]", "namespace", "gw"),
    ("empty namespace", gw(server(hosts=["/foo.com"])), f"{S0}.hosts[0]", "empty", "gw"),
    ("no port", {"servers": [{"hosts": ["*"]}]}, f"{S0}.port", "port is required", "gw"),
    ("protocol", gw(server({"number": 80, "name": "http", "protocol": "SPDY"})), f"{S0}.port.protocol", "HTTP, HTTPS", "gw"),
    ("port number", gw(server({"number": 0, "name": "http", "protocol": "HTTP"})), f"{S0}.port.number", "65535", "gw"),
    ("target port", gw(server({**HTTP, "targetPort": 8080})), f"{S0}.port.targetPort", "no effect", "gw"),
    ("port name", gw(server({"number": 80, "protocol": "HTTP"})), f"{S0}.port.name", "must be set", "gw"),
    ("duplicate port names", gw(server(), server({"number": 81, "name": "http", "protocol": "HTTP"})),
     "spec.servers[1].port.name", "duplicate", "gw"),
    ("bind address", gw(server(bind="localhost")), f"{S0}.bind", "IP address", "gw"),
    ("unix bind path", gw(server({"number": 0, "name": "u", "protocol": "HTTP"}, bind="unix://relative.sock")), f"{S0}.bind", "absolute", "gw"),
    ("unix bind with port", gw(server(bind="unix:///var/run/gw.sock")), f"{S0}.bind", "port number must be 0", "gw"),
    # protocol and TLS pairing
    ("https without tls", gw(server(HTTPS)), f"{S0}.tls", "TLS settings", "gw"),
    ("tcp with tls", gw(server({"number": 31400, "name": "tcp", "protocol": "TCP"}, tls={"mode": "SIMPLE", "credentialName": "c"})),
     f"{S0}.tls", "HTTPS and TLS ports", "gw"),
    ("http terminating tls", gw(server(tls={"mode": "SIMPLE", "credentialName": "c"})), f"{S0}.tls", "plain-text", "gw"),
    ("http passthrough with certs", gw(server(tls={"httpsRedirect": True, "serverCertificate": "/c.pem"})), f"{S0}.tls", "plain-text", "gw"),
    # server TLS settings
    ("istio mutual with cert", tls_server(mode="ISTIO_MUTUAL", serverCertificate="/c.pem"), f"{S0}.tls.serverCertificate", "ISTIO_MUTUAL", "gw"),
    ("istio mutual with credential", tls_server(mode="ISTIO_MUTUAL", credentialNames=["a"]), f"{S0}.tls.credentialNames", "ISTIO_MUTUAL", "gw"),
    ("two certificate sources", tls_server(mode="SIMPLE", credentialName="c", **FILES), f"{S0}.tls", "only one", "gw"),
    ("simple without key", tls_server(mode="SIMPLE", serverCertificate="/c.pem"), f"{S0}.tls.privateKey", "privateKey", "gw"),
    ("simple without cert", tls_server(mode="SIMPLE", privateKey="/k.pem"), f"{S0}.tls.serverCertificate", "serverCertificate", "gw"),
    ("mutual without ca", tls_server(mode="MUTUAL", **FILES), f"{S0}.tls.caCertificates", "client CA", "gw"),
    ("optional mutual without ca", tls_server(mode="OPTIONAL_MUTUAL", **FILES), f"{S0}.tls.caCertificates", "client CA", "gw"),
    ("certificate without key", tls_server(mode="SIMPLE", tlsCertificates=[{"serverCertificate": "/c.pem"}]),
     f"{S0}.tls.tlsCertificates[0].privateKey", "private key", "gw"),
    ("crl with simple", tls_server(mode="SIMPLE", caCrl="/crl.pem", **FILES), f"{S0}.tls.caCrl", "SIMPLE", "gw"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "field", "word", "name"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_rule_violation_is_an_error_at_its_field(spec, field, word, name):
    errors = [f for f in run(spec, name=name) if f.level == "error"]
    assert [f.field for f in errors] == [field], errors
    assert word in errors[0].message


WARNINGS = [
    ("passthrough ignores certificates", tls_server(mode="PASSTHROUGH", **FILES), f"{S0}.tls.mode", "ignored"),
    ("redirect on https", tls_server(mode="SIMPLE", credentialName="c", httpsRedirect=True), f"{S0}.tls.httpsRedirect", "HTTP servers"),
    ("old tls without ciphers", tls_server(mode="SIMPLE", credentialName="c", minProtocolVersion="TLSV1_0"), f"{S0}.tls.minProtocolVersion", "cipherSuites"),
    ("unknown cipher", tls_server(mode="SIMPLE", credentialName="c", cipherSuites=["RC4-MD5"]), f"{S0}.tls.cipherSuites[0]", "unknown"),
    ("duplicate cipher", tls_server(mode="SIMPLE", credentialName="c", cipherSuites=["AES128-SHA", "AES128-SHA"]),
     f"{S0}.tls.cipherSuites[1]", "duplicate"),
    ("three certificates", tls_server(mode="SIMPLE", tlsCertificates=[FILES, FILES, FILES]), f"{S0}.tls.tlsCertificates", "at most 2"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "field", "word"), [c[1:] for c in WARNINGS], ids=[c[0] for c in WARNINGS])
def test_questionable_config_is_a_warning_at_its_field(spec, field, word):
    findings = run(spec)
    assert not [f for f in findings if f.level == "error"], findings
    assert any(f.level == "warning" and f.field == field and word in f.message for f in findings), findings


VALID = [
    ("https redirect on http", gw(server(tls={"httpsRedirect": True}))),
    ("simple with credential", tls_server(mode="SIMPLE", credentialName="bookinfo-secret")),
    ("mutual with files", tls_server(mode="MUTUAL", caCertificates="/ca.pem", **FILES)),
    ("two key types", tls_server(mode="SIMPLE", credentialNames=["rsa", "ecdsa"])),
    ("istio mutual", gw(server({"number": 15443, "name": "tls", "protocol": "TLS"}, hosts=["*.local"], tls={"mode": "ISTIO_MUTUAL"}))),
    ("auto passthrough", gw(server({"number": 15443, "name": "tls", "protocol": "TLS"}, hosts=["*.local"], tls={"mode": "AUTO_PASSTHROUGH"}))),
    ("namespaced and ip hosts", gw(server(hosts=["ns1/*.example.com", "./foo.example.com", "*/bar.example.com", "10.0.0.1"]))),
    ("unix domain socket", gw(server({"number": 0, "name": "uds", "protocol": "HTTP"}, bind="unix:///var/run/gw.sock"))),
    ("lower-case protocol", gw(server({"number": 8080, "name": "grpc-web", "protocol": "grpc-web"}))),
]  # fmt: skip


@pytest.mark.parametrize("spec", [c[1] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_config_has_no_findings(spec):
    assert run(spec) == []


def _istio_documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted([*VALIDATION_DATASET.glob("*.yaml"), *SAMPLES.rglob("*.yaml")]):
        text = path.read_text()
        if "kind: Gateway" not in text:
            continue  # parsing YAML in pure Python is slow: skip files without the kind
        for doc in YAML(typ="safe", pure=True).load_all(text):
            # Gateway API's Gateway (gateway.networking.k8s.io) shares the kind name: not ours.
            if isinstance(doc, dict) and doc.get("kind") == "Gateway" and str(doc.get("apiVersion")).startswith("networking.istio.io/"):
                docs.append((f"{path.name}:{doc['metadata']['name']}", doc))
    return docs


ISTIO_DOCS = _istio_documents()


def test_istio_corpus_has_gateways():
    assert len(ISTIO_DOCS) >= 5


@pytest.mark.parametrize("doc", [d for _, d in ISTIO_DOCS], ids=[n for n, _ in ISTIO_DOCS])
def test_istio_yaml_parses_and_validates_without_errors(doc):
    findings = run(doc["spec"], name=doc["metadata"]["name"])
    assert [f for f in findings if f.level == "error"] == []
