"""DestinationRule validation: one negative case per rule Istio's webhook applies, plus Istio's own valid YAML."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from malla.api.networking.destination_rule import DestinationRule
from malla.config.validation import Finding, ValidationContext
from malla.config.validation.destination_rule import validate
from tests.conformance import SAMPLES, VALIDATION_DATASET

TP = "spec.trafficPolicy"
OUTLIER = {"consecutive5xxErrors": 5}


def run(spec: dict, *, namespace: str = "default") -> list[Finding]:
    ctx = ValidationContext(kind="DestinationRule", api_version="networking.istio.io/v1", name="dr", namespace=namespace)
    return list(validate(DestinationRule.model_validate(spec), ctx))


def dr(**policy) -> dict:
    return {"host": "reviews", "trafficPolicy": policy}


def lb(**settings) -> dict:
    return dr(loadBalancer=settings, outlierDetection=OUTLIER)


def locality(**setting) -> dict:
    return lb(localityLbSetting=setting)


def pool(**settings) -> dict:
    return dr(connectionPool=settings)


ERRORS = [
    ("no host", {"subsets": [{"name": "v1"}]}, "spec.host", "empty"),
    ("bad host", {"host": "re views"}, "spec.host", "invalid host"),
    ("empty policy", dr(), TP, "at least one field"),
    ("tunnel and proxy protocol", dr(tunnel={"targetHost": "a.com", "targetPort": 80}, proxyProtocol={}), TP, "only one"),
    # outlier detection
    ("ejection time", dr(outlierDetection={"baseEjectionTime": "0s"}), f"{TP}.outlierDetection.baseEjectionTime", "1ms"),
    ("interval precision", dr(outlierDetection={"interval": "1500us"}), f"{TP}.outlierDetection.interval", "milliseconds"),
    ("local origin failures", dr(outlierDetection={"consecutiveLocalOriginFailures": 3}),
     f"{TP}.outlierDetection.consecutiveLocalOriginFailures", "splitExternalLocalOriginErrors"),
    ("max ejection percent", dr(outlierDetection={"maxEjectionPercent": 101}), f"{TP}.outlierDetection.maxEjectionPercent", "100"),
    ("min health percent", dr(outlierDetection={"minHealthPercent": -1}), f"{TP}.outlierDetection.minHealthPercent", "0 and 100"),
    # connection pools
    ("empty pool", pool(), f"{TP}.connectionPool", "tcp or http"),
    ("pending requests", pool(http={"http1MaxPendingRequests": -1}), f"{TP}.connectionPool.http.http1MaxPendingRequests", "negative"),
    ("max retries", pool(http={"maxRetries": -3}), f"{TP}.connectionPool.http.maxRetries", "negative"),
    ("concurrent streams", pool(http={"maxConcurrentStreams": -1}), f"{TP}.connectionPool.http.maxConcurrentStreams", "negative"),
    ("http idle timeout", pool(http={"idleTimeout": "0s"}), f"{TP}.connectionPool.http.idleTimeout", "1ms"),
    ("upgrade and client protocol", pool(http={"h2UpgradePolicy": "UPGRADE", "useClientProtocol": True}),
     f"{TP}.connectionPool.http.useClientProtocol", "UPGRADE"),
    ("max connections", pool(tcp={"maxConnections": -1}), f"{TP}.connectionPool.tcp.maxConnections", "negative"),
    ("connect timeout", pool(tcp={"connectTimeout": "0s"}), f"{TP}.connectionPool.tcp.connectTimeout", "1ms"),
    ("connection duration", pool(tcp={"maxConnectionDuration": "100us"}), f"{TP}.connectionPool.tcp.maxConnectionDuration", "1ms"),
    ("tcp idle timeout", pool(tcp={"idleTimeout": "500us"}), f"{TP}.connectionPool.tcp.idleTimeout", "1ms"),
    ("keepalive", pool(tcp={"tcpKeepalive": {"interval": "0.5ms"}}), f"{TP}.connectionPool.tcp.tcpKeepalive.interval", "1ms"),
    # load balancing
    ("simple and consistent hash", lb(simple="RANDOM", consistentHash={"useSourceIp": True}), f"{TP}.loadBalancer", "only one"),
    ("two hash keys", lb(consistentHash={"useSourceIp": True, "httpHeaderName": "x-user"}),
     f"{TP}.loadBalancer.consistentHash", "only one hash key"),
    ("cookie name", lb(consistentHash={"httpCookie": {"ttl": "10s"}}), f"{TP}.loadBalancer.consistentHash.httpCookie.name", "name"),
    ("cookie attribute", lb(consistentHash={"httpCookie": {"name": "u", "attributes": [{"value": "x"}]}}),
     f"{TP}.loadBalancer.consistentHash.httpCookie.attributes[0].name", "name"),
    ("two hash algorithms", lb(consistentHash={"useSourceIp": True, "ringHash": {}, "maglev": {"tableSize": 65537}}),
     f"{TP}.loadBalancer.consistentHash", "hash algorithm"),
    ("maglev size unset", lb(consistentHash={"useSourceIp": True, "maglev": {}}),
     f"{TP}.loadBalancer.consistentHash.maglev.tableSize", "must be set"),
    ("maglev size large", lb(consistentHash={"useSourceIp": True, "maglev": {"tableSize": 5000011}}),
     f"{TP}.loadBalancer.consistentHash.maglev.tableSize", "less than"),
    ("maglev size not prime", lb(consistentHash={"useSourceIp": True, "maglev": {"tableSize": 65536}}),
     f"{TP}.loadBalancer.consistentHash.maglev.tableSize", "prime"),
    ("distribute and failover", locality(distribute=[{"from": "a", "to": {"b": 100}}], failover=[{"from": "a", "to": "b"}]),
     f"{TP}.loadBalancer.localityLbSetting", "only one"),
    ("failover priority topology", locality(failover=[{"from": "a", "to": "b"}], failoverPriority=["topology.kubernetes.io/zone"]),
     f"{TP}.loadBalancer.localityLbSetting.failoverPriority", "topology"),
    ("locality weight", locality(distribute=[{"from": "a", "to": {"b": 0, "c": 100}}]),
     f"{TP}.loadBalancer.localityLbSetting.distribute[0].to", "between 1 and 100"),
    ("locality total", locality(distribute=[{"from": "a", "to": {"b": 60, "c": 30}}]),
     f"{TP}.loadBalancer.localityLbSetting.distribute[0].to", "sum to 100"),
    ("locality wildcard", locality(distribute=[{"from": "a/*/c", "to": {"b": 100}}]),
     f"{TP}.loadBalancer.localityLbSetting.distribute", "wildcard"),
    ("locality overlap", locality(distribute=[{"from": "us/*", "to": {"b": 100}}, {"from": "us/zone1", "to": {"b": 100}}]),
     f"{TP}.loadBalancer.localityLbSetting.distribute", "overlaps"),
    ("locality empty zone", locality(distribute=[{"from": "us//z", "to": {"b": 100}}]),
     f"{TP}.loadBalancer.localityLbSetting.distribute", "empty"),
    ("failover same region", locality(failover=[{"from": "us", "to": "us"}]),
     f"{TP}.loadBalancer.localityLbSetting.failover[0]", "different"),
    ("failover zone", locality(failover=[{"from": "us/z1", "to": "eu"}]), f"{TP}.loadBalancer.localityLbSetting.failover[0]", "regions only"),
    ("failover wildcard", locality(failover=[{"from": "us", "to": "*"}]), f"{TP}.loadBalancer.localityLbSetting.failover[0]", "wildcard"),
    ("warmup twice", lb(warmupDurationSecs="10s", warmup={"duration": "10s"}), f"{TP}.loadBalancer", "only one"),
    ("warmup duration", lb(warmup={"minimumPercent": 10}), f"{TP}.loadBalancer.warmup.duration", "required"),
    ("warmup percent", lb(warmup={"duration": "10s", "minimumPercent": 120}), f"{TP}.loadBalancer.warmup.minimumPercent", "100"),
    ("warmup aggression", lb(warmup={"duration": "10s", "aggression": 0.5}), f"{TP}.loadBalancer.warmup.aggression", "at least 1"),
    ("warmup secs", lb(warmupDurationSecs="0s"), f"{TP}.loadBalancer.warmupDurationSecs", "1ms"),
    # TLS
    ("mutual without key", dr(tls={"mode": "MUTUAL", "clientCertificate": "/c.pem"}), f"{TP}.tls.privateKey", "privateKey"),
    ("mutual without cert", dr(tls={"mode": "MUTUAL", "privateKey": "/k.pem"}), f"{TP}.tls.clientCertificate", "clientCertificate"),
    ("credential and files", dr(tls={"mode": "SIMPLE", "credentialName": "c", "caCertificates": "/ca.pem"}), f"{TP}.tls", "credentialName"),
    ("skip verify with ca", dr(tls={"mode": "SIMPLE", "insecureSkipVerify": True, "caCertificates": "/ca.pem"}), f"{TP}.tls", "insecureSkipVerify"),
    ("configmap elsewhere", dr(tls={"mode": "SIMPLE", "credentialName": "configmap://other/ca"}), f"{TP}.tls.credentialName", "namespace"),
    ("configmap form", dr(tls={"mode": "SIMPLE", "credentialName": "configmap://a/b/c"}), f"{TP}.tls.credentialName", "configmap://"),
    # tunnels, ports, retry budget
    ("tunnel protocol", dr(tunnel={"protocol": "GET", "targetHost": "a.com", "targetPort": 80}), f"{TP}.tunnel.protocol", "CONNECT or POST"),
    ("tunnel host", dr(tunnel={"targetHost": "a b", "targetPort": 80}), f"{TP}.tunnel.targetHost", "IP address"),
    ("tunnel port", dr(tunnel={"targetHost": "10.0.0.1"}), f"{TP}.tunnel.targetPort", "65535"),
    ("port policy without port", dr(portLevelSettings=[{"tls": {"mode": "ISTIO_MUTUAL"}}]), f"{TP}.portLevelSettings[0].port", "port"),
    ("port policy port", dr(portLevelSettings=[{"port": {"number": 0}, "tls": {"mode": "ISTIO_MUTUAL"}}]),
     f"{TP}.portLevelSettings[0].port.number", "65535"),
    ("empty port policy", dr(portLevelSettings=[{"port": {"number": 80}}]), f"{TP}.portLevelSettings[0]", "at least one"),
    ("port policy contents", dr(portLevelSettings=[{"port": {"number": 80}, "connectionPool": {"tcp": {"maxConnections": -1}}}]),
     f"{TP}.portLevelSettings[0].connectionPool.tcp.maxConnections", "negative"),
    ("retry budget", dr(retryBudget={"percent": 150}), f"{TP}.retryBudget.percent", "100"),
    # subsets, exportTo, selector
    ("duplicate subsets", {"host": "a", "subsets": [{"name": "v1"}, {"name": "v1"}]}, "spec.subsets[1].name", "duplicate"),
    ("subset without name", {"host": "a", "subsets": [{"labels": {"v": "1"}}]}, "spec.subsets[0].name", "empty"),
    ("subset name", {"host": "a", "subsets": [{"name": "v1.0"}]}, "spec.subsets[0].name", "DNS-1123"),
    ("subset label key", {"host": "a", "subsets": [{"name": "v1", "labels": {"bad key": "1"}}]}, "spec.subsets[0].labels[bad key]", "label key"),
    ("subset label value", {"host": "a", "subsets": [{"name": "v1", "labels": {"v": "*"}}]}, "spec.subsets[0].labels[v]", "label value"),
    ("subset policy", {"host": "a", "subsets": [{"name": "v1", "trafficPolicy": {}}]}, "spec.subsets[0].trafficPolicy", "at least one"),
    ("exportTo entry", {"host": "a", "exportTo": ["a.b"]}, "spec.exportTo[0]", "namespace name"),
    ("exportTo with selector", {"host": "a", "exportTo": ["*"], "workloadSelector": {"matchLabels": {"app": "a"}}}, "spec.exportTo", "own namespace"),
    ("exportTo two with selector", {"host": "a", "exportTo": [".", "other"], "workloadSelector": {"matchLabels": {"app": "a"}}},
     "spec.exportTo", "more than one"),
    ("selector wildcard", {"host": "a", "workloadSelector": {"matchLabels": {"app": "rev*"}}}, "spec.workloadSelector.matchLabels[app]", "wildcard"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "field", "word"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_rule_violation_is_an_error_at_its_field(spec, field, word):
    errors = [f for f in run(spec) if f.level == "error"]
    assert [f.field for f in errors] == [field], errors
    assert word in errors[0].message


WARNINGS = [
    ("deprecated consecutive errors", dr(outlierDetection={"consecutiveErrors": 5}), f"{TP}.outlierDetection.consecutiveErrors", "deprecated"),
    ("no hash key", lb(consistentHash={"ringHash": {"minimumRingSize": 1024}}), f"{TP}.loadBalancer.consistentHash", "hash key"),
    ("deprecated ring size", lb(consistentHash={"useSourceIp": True, "minimumRingSize": 1024}),
     f"{TP}.loadBalancer.consistentHash.minimumRingSize", "deprecated"),
    ("failover without outlier detection", dr(loadBalancer={"localityLbSetting": {"failover": [{"from": "us", "to": "eu"}]}}),
     f"{TP}.loadBalancer.localityLbSetting", "outlierDetection"),
    ("selector without labels", {"host": "a", "workloadSelector": {}}, "spec.workloadSelector", "every workload"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "field", "word"), [c[1:] for c in WARNINGS], ids=[c[0] for c in WARNINGS])
def test_questionable_config_is_a_warning_at_its_field(spec, field, word):
    findings = run(spec)
    assert not [f for f in findings if f.level == "error"], findings
    assert any(f.level == "warning" and f.field == field and word in f.message for f in findings), findings


VALID = [
    ("wildcard host", {"host": "*.example.com", "trafficPolicy": {"tls": {"mode": "SIMPLE"}}}),
    ("mutual with credential", dr(tls={"mode": "MUTUAL", "credentialName": "client-cred", "sni": "a.example.com"})),
    ("mutual with files", dr(tls={"mode": "MUTUAL", "clientCertificate": "/c.pem", "privateKey": "/k.pem", "caCertificates": "/ca.pem"})),
    ("configmap in namespace", dr(tls={"mode": "SIMPLE", "credentialName": "configmap://default/ca"})),
    ("tcp idle timeout disabled", pool(tcp={"idleTimeout": "0s", "maxConnections": 10})),
    ("maglev with prime table", lb(consistentHash={"httpQueryParameterName": "u", "maglev": {"tableSize": 65537}})),
    ("cookie with attributes", lb(consistentHash={"httpCookie": {"name": "u", "ttl": "0s", "attributes": [{"name": "Secure"}]}})),
    ("locality distribute", locality(distribute=[{"from": "us-west/zone1/*", "to": {"us-west/zone1/*": 80, "us-west/zone2/*": 20}}])),
    ("locality failover", locality(failover=[{"from": "us-east", "to": "eu-west"}], failoverPriority=["topology.istio.io/network"])),
    ("warmup", lb(simple="ROUND_ROBIN", warmup={"duration": "60s", "minimumPercent": 10, "aggression": 2})),
    ("tunnel", dr(tunnel={"protocol": "POST", "targetHost": "egress.example.com", "targetPort": 8443})),
    ("retry budget alone", dr(retryBudget={"percent": 20, "minRetryConcurrency": 5})),
    ("selector exported to its namespace", {"host": "a", "exportTo": ["."], "workloadSelector": {"matchLabels": {"app": "a"}}}),
    ("upper-case subset name", {"host": "a", "subsets": [{"name": "V1", "labels": {"example.com/version": "v1"}}]}),
]  # fmt: skip


@pytest.mark.parametrize("spec", [c[1] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_config_has_no_findings(spec):
    assert run(spec) == []


def _istio_documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted([*VALIDATION_DATASET.glob("*.yaml"), *SAMPLES.rglob("*.yaml")]):
        text = path.read_text()
        if "kind: DestinationRule" not in text:
            continue  # parsing YAML in pure Python is slow: skip files without the kind
        for doc in YAML(typ="safe", pure=True).load_all(text):
            if isinstance(doc, dict) and doc.get("kind") == "DestinationRule" and str(doc.get("apiVersion")).startswith("networking.istio.io/"):
                docs.append((f"{path.name}:{doc['metadata']['name']}", doc))
    return docs


ISTIO_DOCS = _istio_documents()


def test_istio_corpus_has_destination_rules():
    assert len(ISTIO_DOCS) >= 5


@pytest.mark.parametrize("doc", [d for _, d in ISTIO_DOCS], ids=[n for n, _ in ISTIO_DOCS])
def test_istio_yaml_parses_and_validates_without_errors(doc):
    findings = run(doc["spec"], namespace=doc["metadata"].get("namespace", "default"))
    assert [f for f in findings if f.level == "error"] == []
