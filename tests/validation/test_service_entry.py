"""ServiceEntry rules: each broken rule gives a finding at its field path; Istio's own entries give no errors."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from malla.api.networking.service_entry import ServiceEntry
from malla.config.validation import Finding, ValidationContext, validate_spec
from tests.conformance import SAMPLES, VALIDATION_DATASET

HTTP = {"number": 80, "name": "http", "protocol": "HTTP"}
TLS = {"number": 443, "name": "tls", "protocol": "TLS"}
TCP = {"number": 5432, "name": "db", "protocol": "TCP"}


def findings(spec: dict, *, namespace: str = "default", labels: dict | None = None) -> list[Finding]:
    ctx = ValidationContext(kind="ServiceEntry", api_version="networking.istio.io/v1", name="se",
                            namespace=namespace, labels=labels or {})
    return validate_spec(ServiceEntry.model_validate(spec), ctx)


def se(**fields) -> dict:
    """A valid STATIC entry, changed by ``fields``."""
    base = {"hosts": ["api.example.com"], "ports": [HTTP], "resolution": "STATIC",
            "endpoints": [{"address": "10.0.0.1"}]}
    return {**base, **fields}


def dns(**fields) -> dict:
    return {"hosts": ["api.example.com"], "ports": [HTTP], "resolution": "DNS", **fields}


CASES = [
    # workload selector
    (se(endpoints=[], workloadSelector={"labels": {"": "a"}}), "error", "spec.workloadSelector.labels[]", "empty"),
    (se(endpoints=[], workloadSelector={"labels": {"app": "*"}}), "error", "spec.workloadSelector.labels[app]",
     "wildcard"),
    (se(endpoints=[], workloadSelector={"labels": {"app": "a" * 64}}), "error", "spec.workloadSelector.labels[app]",
     "63"),
    (se(endpoints=[], workloadSelector={}), "warning", "spec.workloadSelector", "no labels"),
    (se(workloadSelector={"labels": {"app": "a"}}), "error", "spec.workloadSelector", "only one of"),
    # hosts
    (se(hosts=[]), "error", "spec.hosts", "at least one host"),
    (se(hosts=[f"h{i}.example.com" for i in range(257)]), "error", "spec.hosts", "at most 256"),
    (se(hosts=["*"]), "error", "spec.hosts[0]", "every name"),
    (se(hosts=["api_v1.example.com"]), "error", "spec.hosts[0]", "label 'api_v1'"),
    (se(hosts=["example.123"]), "error", "spec.hosts[0]", "all digits"),
    (se(hosts=["foo.*.com"]), "error", "spec.hosts[0]", "wildcard"),
    (se(hosts=["*foo.example.com"]), "warning", "spec.hosts[0]", "partial wildcard"),
    # addresses
    (se(addresses=[f"10.0.{i // 250}.{i % 250}" for i in range(257)]), "error", "spec.addresses", "at most 256"),
    (se(addresses=["10.0.0.300"]), "error", "spec.addresses[0]", "IP address or a CIDR"),
    (se(addresses=["1.2.3.4/99"]), "error", "spec.addresses[0]", "IP address or a CIDR"),
    (dns(addresses=["10.0.0.0/16"]), "error", "spec.addresses[0]", "NONE or STATIC"),
    # ports
    (se(ports=[{"name": "http"}]), "error", "spec.ports[0].number", "required"),
    (se(ports=[{"name": "http", "number": 70000}]), "error", "spec.ports[0].number", "between 1 and 65535"),
    (se(ports=[{"name": "http", "number": 80, "targetPort": 0}]), "error", "spec.ports[0].targetPort", "65535"),
    (se(ports=[{"number": 80}]), "error", "spec.ports[0].name", "required"),
    (se(ports=[{"number": 80, "name": "http_1"}]), "error", "spec.ports[0].name", "invalid port name"),
    (se(ports=[{"number": 80, "name": "http", "protocol": "SMTP"}]), "error", "spec.ports[0].protocol", "unsupported"),
    (se(ports=[HTTP, {**TLS, "name": "http"}]), "error", "spec.ports[1].name", "unique"),
    (se(ports=[HTTP, {**TLS, "number": 80}]), "error", "spec.ports[1].number", "unique"),
    ({"hosts": ["db.example.com"], "ports": [TCP]}, "warning", "spec.ports[0]", "addresses"),
    (dns(ports=[TCP]), None, "spec.ports[0]", "addresses"),
    (se(ports=[], endpoints=[{"address": "10.0.0.1"}]), "warning", "spec.ports", "no ports"),
    # endpoint shape (the WorkloadEntry schema)
    (se(endpoints=[{"labels": {"app": "a"}}]), "error", "spec.endpoints[0].address", "required"),
    (se(endpoints=[{"address": "unix://relative.sock"}]), "error", "spec.endpoints[0].address", "absolute path"),
    (se(endpoints=[{"address": "unix:///var/run/"}]), "error", "spec.endpoints[0].address", "directory"),
    (se(endpoints=[{"address": "unix:///var/run/a.sock", "ports": {"http": 8080}}]), "error",
     "spec.endpoints[0].ports", "takes no ports"),
    (se(endpoints=[{"address": "10.0.0.1", "ports": {"http": 0}}]), "error", "spec.endpoints[0].ports[http]",
     "between 1 and 65535"),
    (se(ports=[{"number": 80, "name": "h" * 62}, {"number": 81, "name": "h" * 63}],
        endpoints=[{"address": "10.0.0.1", "ports": {"h" * 63: 8080}}]), "error",
     f"spec.endpoints[0].ports[{'h' * 63}]", "at most 62"),
    (se(endpoints=[{"address": "10.0.0.1", "labels": {"app": "a b"}}]), "error", "spec.endpoints[0].labels[app]",
     "invalid label value"),
    (se(endpoints=[{"address": "10.0.0.1", "labels": {"-app": "a"}}]), "error", "spec.endpoints[0].labels[-app]",
     "invalid label key"),
    (se(endpoints=[{"address": "10.0.0.1"}] * 4097), "error", "spec.endpoints", "at most 4096"),
    # resolution NONE
    (se(resolution="NONE"), "error", "spec.endpoints", "resolution NONE takes no endpoints"),
    ({"hosts": ["a.example.com"], "ports": [HTTP], "workloadSelector": {"labels": {"app": "a"}}}, "warning",
     "spec.workloadSelector", "resolution is NONE"),
    # resolution STATIC
    (se(endpoints=[]), "warning", "spec.endpoints", "neither endpoints nor workloadSelector"),
    (se(endpoints=[{"address": "vm1.example.com"}]), "error", "spec.endpoints[0].address", "not an IP address"),
    (se(endpoints=[{"network": "west"}]), "warning", "spec.endpoints[0].address", "network 'west'"),
    (se(ports=[HTTP, TLS], endpoints=[{"address": "unix:///var/run/a.sock"}]), "error",
     "spec.endpoints[0].address", "exactly one service port"),
    (se(endpoints=[{"address": "10.0.0.1", "ports": {"grpc": 9000}}]), "error", "spec.endpoints[0].ports[grpc]",
     "not a port of this service entry"),
    # resolution DNS and DNS_ROUND_ROBIN
    (dns(hosts=["*.example.com"]), "error", "spec.hosts[0]", "without wildcards"),
    (dns(resolution="DNS_ROUND_ROBIN", endpoints=[{"address": "a.example.com"}, {"address": "b.example.com"}]),
     "error", "spec.endpoints", "at most one endpoint"),
    (dns(endpoints=[{"address": "unix:///var/run/a.sock"}]), "error", "spec.endpoints[0].address",
     "unix sockets need resolution STATIC"),
    (dns(endpoints=[{"network": "west"}]), "error", "spec.endpoints[0].address", "IP address or a DNS name"),
    (dns(endpoints=[{"address": "bad_name.example.com"}]), "error", "spec.endpoints[0].address", "valid DNS name"),
    (dns(endpoints=[{"address": "a.example.com", "ports": {"https": 8443}}]), "error",
     "spec.endpoints[0].ports[https]", "not a port"),
    (dns(hosts=["a.example.com", "b.example.com"], addresses=["10.1.1.1"], ports=[TLS]), "warning", "spec.hosts",
     "one host"),
    # resolution DYNAMIC_DNS
    (dns(resolution="DYNAMIC_DNS"), "warning", "spec.hosts[0]", "wildcard hosts"),
    (dns(resolution="DYNAMIC_DNS", hosts=["*.example.com"], endpoints=[{"address": "a.example.com"}]), "warning",
     "spec.endpoints", "ignored"),
    (dns(resolution="DYNAMIC_DNS", hosts=["*.example.com"], ports=[TCP]), "warning", "spec.ports[0].protocol",
     "HTTP or TLS"),
    # several hosts need ports that carry the host name
    (dns(hosts=["a.example.com", "b.example.com"], ports=[HTTP, TCP]), "error", "spec.ports[1].protocol",
     "several hosts"),
    # endpoint weights
    (se(endpoints=[{"address": "10.0.0.1", "weight": 4294967295}, {"address": "10.0.0.2", "weight": 1}]), "error",
     "spec.endpoints", "weights"),
    # exportTo
    (se(exportTo=["ns1", "ns1"]), "error", "spec.exportTo[1]", "duplicate"),
    (se(exportTo=[".", "default"]), "error", "spec.exportTo[1]", "'.' and the current namespace"),
    (se(exportTo=["Not_A_Namespace"]), "error", "spec.exportTo[0]", "namespace name"),
    (se(exportTo=["*", "ns1"]), "error", "spec.exportTo", "'*'"),
    (se(exportTo=["~", "ns1"]), "error", "spec.exportTo", "'~'"),
]


@pytest.mark.parametrize(("spec", "level", "path", "word"), CASES)
def test_each_broken_rule_is_reported_at_its_field(spec, level, path, word):
    found = findings(spec)
    hits = [f for f in found if f.field == path and word in f.message]
    if level is None:
        assert hits == [], found
    else:
        assert [f.level for f in hits] == [level], found


def test_autoallocation_opt_out_needs_addresses_for_tcp():
    spec = dns(ports=[TCP])
    opted_out = findings(spec, labels={"networking.istio.io/enable-autoallocate-ip": "false"})
    assert [(f.level, f.field) for f in opted_out if "addresses" in f.message] == [("warning", "spec.ports[0]")]


@pytest.mark.parametrize("spec", [
    se(),
    se(endpoints=[{"address": "unix:///var/run/example/socket"}]),
    se(endpoints=[{"address": "unix://@abstract"}]),
    se(endpoints=[], workloadSelector={"labels": {"app": "details"}}, location="MESH_INTERNAL"),
    se(addresses=["192.192.192.192/24", "2001:db8::1"], endpoints=[{"address": "2.2.2.2"}, {"address": "::1"}]),
    se(endpoints=[{"address": "10.0.0.1", "ports": {"http": 8080}, "labels": {"app.kubernetes.io/name": "x"},
                   "locality": "us/east", "weight": 10}]),
    dns(),
    dns(hosts=["foo.bar.com."], endpoints=[{"address": "us.foo.bar.com", "ports": {"http": 8080}},
                                           {"address": "10.1.1.1"}]),
    dns(resolution="DNS_ROUND_ROBIN", endpoints=[{"address": "a.example.com"}]),
    dns(resolution="DYNAMIC_DNS", hosts=["*.wikipedia.org"], ports=[TLS], location="MESH_EXTERNAL"),
    {"hosts": ["*.bar.com", "wikipedia.org"], "ports": [HTTP, TLS], "resolution": "NONE"},
    dns(hosts=["a.example.com", "b.example.com"],
        ports=[HTTP, TLS, {"number": 8080, "name": "grpc", "protocol": "grpc"}]),
    se(exportTo=["."]), se(exportTo=["*"]), se(exportTo=["~"]), se(exportTo=["ns1", "ns2"]),
    se(subjectAltNames=["spiffe://cluster.local/ns/httpbin-ns/sa/httpbin"]),
])
def test_valid_entries_have_no_findings(spec):
    assert findings(spec) == []


def test_several_problems_are_all_reported():
    found = findings(se(hosts=["*"], ports=[{"number": 0, "name": "HTTP_X"}], exportTo=["*", "."]))
    assert {f.field for f in found if f.level == "error"} >= {"spec.hosts[0]", "spec.ports[0].number",
                                                               "spec.ports[0].name", "spec.exportTo"}


def _istio_documents():
    yaml = YAML(typ="safe", pure=True)
    for root in (VALIDATION_DATASET, SAMPLES):
        for path in sorted(root.rglob("*.yaml")):
            text = path.read_text()
            if "ServiceEntry" not in text:
                continue  # parsing every sample with the pure-Python loader is slow
            for doc in yaml.load_all(text):
                if isinstance(doc, dict) and doc.get("kind") == "ServiceEntry":
                    yield pytest.param(doc, id=f"{path.name}:{doc['metadata']['name']}")


ISTIO_DOCUMENTS = list(_istio_documents())


def test_istio_has_service_entries_to_check():
    assert len(ISTIO_DOCUMENTS) >= 4


@pytest.mark.parametrize("doc", ISTIO_DOCUMENTS)
def test_istio_service_entries_have_no_errors(doc):
    namespace = doc["metadata"].get("namespace", "default")
    errors = [f for f in findings(doc["spec"], namespace=namespace) if f.level == "error"]
    assert errors == []
