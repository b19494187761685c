"""Sidecar validation: one negative case per rule Istio's webhook applies, plus Istio's own valid YAML."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from malla.api.networking.sidecar import Sidecar
from malla.config.validation import Finding, ValidationContext
from malla.config.validation.sidecar import validate
from tests.conformance import SAMPLES, VALIDATION_DATASET

ALL = {"hosts": ["./*"]}
HTTP_PORT = {"number": 9080, "protocol": "HTTP", "name": "http"}
TLS_PORT = {"number": 9443, "protocol": "HTTPS", "name": "https"}
CERTS = {"mode": "SIMPLE", "serverCertificate": "/etc/certs/cert.pem", "privateKey": "/etc/certs/key.pem"}
I0, E0 = "spec.ingress[0]", "spec.egress[0]"


def run(spec: dict, *, namespace: str = "default") -> list[Finding]:
    ctx = ValidationContext(kind="Sidecar", api_version="networking.istio.io/v1", name="sc", namespace=namespace)
    return list(validate(Sidecar.model_validate(spec), ctx))


def ingress(**fields) -> dict:
    return {"ingress": [{"port": HTTP_PORT, **fields}]}


def egress(*listeners: dict) -> dict:
    return {"egress": list(listeners)}


ERRORS = [
    ("selector wildcard", {"workloadSelector": {"labels": {"app": "*"}}, **egress(ALL)}, "spec.workloadSelector.labels[app]", "wildcard"),
    ("empty sidecar", {"workloadSelector": {"labels": {"app": "a"}}}, "spec", "empty Sidecar"),
    # ingress
    ("ingress without port", {"ingress": [{"defaultEndpoint": "127.0.0.1:8080"}]}, f"{I0}.port", "need a port"),
    ("ingress port name", {"ingress": [{"port": {**HTTP_PORT, "name": "Bad_Name"}}]}, f"{I0}.port.name", "DNS-1123"),
    ("ingress protocol", {"ingress": [{"port": {**HTTP_PORT, "protocol": "QUIC"}}]}, f"{I0}.port.protocol", "unsupported protocol"),
    ("ingress port number", {"ingress": [{"port": {"protocol": "HTTP", "name": "http"}}]}, f"{I0}.port.number", "65535"),
    ("ingress target port", {"ingress": [{"port": {**HTTP_PORT, "targetPort": 80}}]}, f"{I0}.port.targetPort", "no effect"),
    ("ingress bind", ingress(bind="unix:///var/run/a.sock"), f"{I0}.bind", "IP address"),
    ("ingress duplicate ports", {"ingress": [{"port": HTTP_PORT}, {"port": {**HTTP_PORT, "name": "other"}}]},
     "spec.ingress[1].port.number", "unique"),
    ("endpoint host", ingress(defaultEndpoint="10.0.0.1:8080"), f"{I0}.defaultEndpoint", "loopback"),
    ("endpoint port", ingress(defaultEndpoint="127.0.0.1:http"), f"{I0}.defaultEndpoint", "not a number"),
    ("endpoint port range", ingress(defaultEndpoint="[::1]:70000"), f"{I0}.defaultEndpoint", "65535"),
    ("endpoint form", ingress(defaultEndpoint="localhost"), f"{I0}.defaultEndpoint", "invalid defaultEndpoint"),
    ("endpoint socket", ingress(defaultEndpoint="unix://relative.sock"), f"{I0}.defaultEndpoint", "absolute"),
    ("tls on http port", ingress(tls=CERTS), f"{I0}.tls", "HTTPS or TLS"),
    ("tls subject alt names", {"ingress": [{"port": TLS_PORT, "tls": {**CERTS, "subjectAltNames": ["a"]}}]},
     f"{I0}.tls.subjectAltNames", "not supported"),
    ("tls https redirect", {"ingress": [{"port": TLS_PORT, "tls": {**CERTS, "httpsRedirect": True}}]}, f"{I0}.tls.httpsRedirect", "not supported"),
    ("tls credential", {"ingress": [{"port": TLS_PORT, "tls": {"mode": "SIMPLE", "credentialName": "c"}}]},
     f"{I0}.tls.credentialName", "not supported"),
    ("tls istio mutual", {"ingress": [{"port": TLS_PORT, "tls": {"mode": "ISTIO_MUTUAL"}}]}, f"{I0}.tls.mode", "ISTIO_MUTUAL"),
    ("tls without key", {"ingress": [{"port": TLS_PORT, "tls": {"mode": "SIMPLE", "serverCertificate": "/c.pem"}}]},
     f"{I0}.tls.privateKey", "privateKey"),
    ("ingress empty pool", ingress(connectionPool={}), f"{I0}.connectionPool", "tcp or http"),
    ("ingress pool value", ingress(connectionPool={"http": {"maxRetries": -1}}), f"{I0}.connectionPool.http.maxRetries", "negative"),
    ("inbound pool", {"inboundConnectionPool": {"tcp": {"connectTimeout": "0s"}}}, "spec.inboundConnectionPool.tcp.connectTimeout", "1ms"),
    # egress
    ("catch-all not last", egress(ALL, {"port": HTTP_PORT, **ALL}), E0, "last"),
    ("two catch-alls", egress({"port": HTTP_PORT, **ALL}, ALL, ALL), "spec.egress[2]", "only one"),
    ("egress port number", egress({"port": {"number": 70000, "protocol": "HTTP"}, **ALL}), f"{E0}.port.number", "65535"),
    ("egress protocol", egress({"port": {"number": 80, "protocol": "FTP"}, **ALL}), f"{E0}.port.protocol", "unsupported protocol"),
    ("egress target port", egress({"port": {"number": 80, "targetPort": 8080}, **ALL}), f"{E0}.port.targetPort", "no effect"),
    ("port zero without socket", egress({"port": {"number": 0, "protocol": "HTTP"}, **ALL}), f"{E0}.bind", "unix domain socket"),
    ("socket path", egress({"port": {"protocol": "HTTP"}, "bind": "unix://a.sock", **ALL}), f"{E0}.bind", "absolute"),
    ("socket capture mode", egress({"port": {"protocol": "HTTP"}, "bind": "unix:///a.sock", "captureMode": "IPTABLES", **ALL}),
     f"{E0}.captureMode", "DEFAULT or NONE"),
    ("duplicate sockets", egress({"port": {"protocol": "HTTP"}, "bind": "unix:///a.sock", **ALL},
                                 {"port": {"protocol": "TCP"}, "bind": "unix:///a.sock", **ALL}), "spec.egress[1].bind", "another"),
    ("duplicate egress ports", egress({"port": HTTP_PORT, **ALL}, {"port": HTTP_PORT, **ALL}), "spec.egress[1].port.number", "unique"),
    ("egress bind", egress({"port": HTTP_PORT, "bind": "my-host", **ALL}), f"{E0}.bind", "IP address"),
    ("no hosts", egress({"port": HTTP_PORT}), f"{E0}.hosts", "at least one host"),
    ("host without namespace", egress({"hosts": ["foo.example.com"]}), f"{E0}.hosts[0]", "namespace/dnsName"),
    ("host namespace", egress({"hosts": ["Bad_NS/*"]}), f"{E0}.hosts[0]", "namespace"),
    ("short host", egress({"hosts": ["ns/reviews"]}), f"{E0}.hosts[0]", "short name"),
    ("ip host", egress({"hosts": ["ns/10.0.0.1"]}), f"{E0}.hosts[0]", "digits"),
    ("partial wildcard", egress({"hosts": ["ns/*foo.com"]}), f"{E0}.hosts[0]", "partial wildcard"),
    # outbound traffic policy
    ("egress proxy in registry mode", {"outboundTrafficPolicy": {"egressProxy": {"host": "proxy.example.com", "port": {"number": 3128}}}},
     "spec.outboundTrafficPolicy.egressProxy", "ALLOW_ANY"),
    ("egress proxy host", {"outboundTrafficPolicy": {"mode": "ALLOW_ANY", "egressProxy": {"host": "*.example.com", "port": {"number": 3128}}}},
     "spec.outboundTrafficPolicy.egressProxy.host", "label"),
    ("egress proxy port", {"outboundTrafficPolicy": {"mode": "ALLOW_ANY", "egressProxy": {"host": "proxy.example.com"}}},
     "spec.outboundTrafficPolicy.egressProxy.port", "port"),
    ("egress proxy port number", {"outboundTrafficPolicy": {"mode": "ALLOW_ANY", "egressProxy": {"host": "proxy.example.com", "port": {}}}},
     "spec.outboundTrafficPolicy.egressProxy.port.number", "65535"),
    ("egress proxy subset", {"outboundTrafficPolicy": {"mode": "ALLOW_ANY", "egressProxy": {"host": "p.example.com", "subset": "v.1", "port": {"number": 80}}}},
     "spec.outboundTrafficPolicy.egressProxy.subset", "subset"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "field", "word"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_rule_violation_is_an_error_at_its_field(spec, field, word):
    errors = [f for f in run(spec) if f.level == "error"]
    assert [f.field for f in errors] == [field], errors
    assert word in errors[0].message


WARNINGS = [
    ("selector without labels", {"workloadSelector": {}, **egress(ALL)}, "spec.workloadSelector", "every workload"),
    ("http pool on tcp port", {"ingress": [{"port": {"number": 3306, "protocol": "TCP"}, "connectionPool": {"http": {"maxRetries": 3}}}]},
     f"{I0}.connectionPool.http", "only the tcp settings"),
    ("duplicate host", egress({"hosts": ["ns/a.example.com", "ns/a.example.com"]}), f"{E0}.hosts[1]", "duplicated"),
    ("host under a wildcard", egress({"hosts": ["ns/*", "ns/a.example.com"]}), f"{E0}.hosts[1]", "duplicated"),
    ("dot is this namespace", egress({"hosts": ["./*", "default/a.example.com"]}), f"{E0}.hosts[1]", "duplicated"),
    ("star star with more", egress({"hosts": ["*/*", "ns/a.example.com"]}), f"{E0}.hosts", "'*/*'"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "field", "word"), [c[1:] for c in WARNINGS], ids=[c[0] for c in WARNINGS])
def test_questionable_config_is_a_warning_at_its_field(spec, field, word):
    findings = run(spec)
    assert not [f for f in findings if f.level == "error"], findings
    assert any(f.level == "warning" and f.field == field and word in f.message for f in findings), findings


VALID = [
    ("namespace scoped", egress({"hosts": ["./*", "istio-system/*", "~/*", "*/*.example.com"]})),
    ("listeners with catch-all last", egress({"port": {"number": 3306, "protocol": "MYSQL", "name": "mysql"}, "bind": "127.0.0.1",
                                              "hosts": ["*/mysql.foo.com"]}, ALL)),
    ("unix socket listener", egress({"port": {"protocol": "HTTP", "name": "uds"}, "bind": "unix:///var/run/a.sock", "captureMode": "NONE", **ALL})),
    ("ingress with tls", {"ingress": [{"port": TLS_PORT, "defaultEndpoint": "[::1]:8443", "tls": CERTS,
                                       "connectionPool": {"tcp": {"idleTimeout": "0s"}}}]}),
    ("ingress endpoints", {"ingress": [{"port": HTTP_PORT, "defaultEndpoint": ":8080"},
                                       {"port": {**HTTP_PORT, "number": 9081}, "defaultEndpoint": "unix:///var/run/app.sock"}]}),
    ("outbound policy only", {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}),
    ("egress proxy", {"outboundTrafficPolicy": {"mode": "ALLOW_ANY", "egressProxy": {"host": "proxy.example.com", "port": {"number": 3128}}}}),
    ("inbound pool only", {"inboundConnectionPool": {"http": {"http1MaxPendingRequests": 1024}}}),
]  # fmt: skip


@pytest.mark.parametrize("spec", [c[1] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_config_has_no_findings(spec):
    assert run(spec) == []


def _istio_documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted([*VALIDATION_DATASET.glob("*.yaml"), *SAMPLES.rglob("*.yaml")]):
        text = path.read_text()
        if "kind: Sidecar" not in text:
            continue  # parsing YAML in pure Python is slow: skip files without the kind
        for doc in YAML(typ="safe", pure=True).load_all(text):
            if isinstance(doc, dict) and doc.get("kind") == "Sidecar" and str(doc.get("apiVersion")).startswith("networking.istio.io/"):
                docs.append((f"{path.name}:{doc['metadata']['name']}", doc))
    return docs


ISTIO_DOCS = _istio_documents()


def test_istio_corpus_has_sidecars():
    assert len(ISTIO_DOCS) >= 3


@pytest.mark.parametrize("doc", [d for _, d in ISTIO_DOCS], ids=[n for n, _ in ISTIO_DOCS])
def test_istio_yaml_parses_and_validates_without_errors(doc):
    findings = run(doc["spec"], namespace=doc["metadata"].get("namespace", "default"))
    assert [f for f in findings if f.level == "error"] == []
