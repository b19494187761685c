"""VirtualService validation: one negative case per rule Istio's webhook applies, plus Istio's own valid YAML."""

from __future__ import annotations

import base64
import copy

import pytest
from ruamel.yaml import YAML

from malla.api.networking.virtual_service import VirtualService
from malla.config.validation import Finding, ValidationContext
from malla.config.validation.virtual_service import validate
from tests.conformance import SAMPLES, VALIDATION_DATASET

DEST = {"destination": {"host": "reviews"}}


def run(spec: dict, *, namespace: str = "default") -> list[Finding]:
    ctx = ValidationContext(kind="VirtualService", api_version="networking.istio.io/v1", name="vs", namespace=namespace)
    return list(validate(VirtualService.model_validate(spec), ctx))


def vs(route: dict | None = None, **top) -> dict:
    """A valid VirtualService with one HTTP route, updated with ``route`` fields and top-level fields."""
    spec = {"hosts": ["reviews"], "http": [{"route": [copy.deepcopy(DEST)], **(route or {})}]}
    spec.update(top)
    return spec


def match(**fields) -> dict:
    return vs({"match": [fields]})


ERRORS = [
    # hosts, gateways, delegation
    ("delegate with gateways", {"gateways": ["gw"], "http": [{"route": [DEST]}]}, "spec.gateways", "delegate"),
    ("delegate with tcp", {"tcp": [{"route": [DEST]}]}, "spec.tcp", "delegate"),
    ("gateway namespace", vs(gateways=["Bad_ns/gw"]), "spec.gateways[0]", "namespace"),
    ("gateway name", vs(gateways=["ns/gw_1"]), "spec.gateways[0]", "gateway name"),
    ("gateway empty part", vs(gateways=["ns/"]), "spec.gateways[0]", "empty"),
    ("gateway not a name", vs(gateways=["gw!"]), "spec.gateways[0]", "label"),
    ("bad host", vs(hosts=["re views"]), "spec.hosts[0]", "invalid host"),
    ("numeric top-level domain", vs(hosts=["foo.123"]), "spec.hosts[0]", "digits"),
    ("wildcard in the middle", vs(hosts=["foo.*.com"]), "spec.hosts[0]", "label"),
    ("star host on the mesh", vs(hosts=["*"]), "spec.hosts[0]", "wildcard host"),
    ("duplicate hosts", vs(hosts=["*.foo.com", "bar.foo.com"]), "spec.hosts[0]", "duplicate"),
    ("no routes", {"hosts": ["reviews"]}, "spec", "at least one of http, tcp or tls"),
    ("jwt claim on the mesh", match(headers={"@request.auth.claims.group": {"exact": "a"}}),
     "spec.http[0].match[0].headers.@request.auth.claims.group", "JWT"),
    ("exportTo entry", vs(exportTo=["Not_A_Namespace"]), "spec.exportTo[0]", "exportTo"),
    ("exportTo none", vs(exportTo=["~"]), "spec.exportTo[0]", "ServiceEntry"),
    ("exportTo duplicate", vs(exportTo=["a", "a"]), "spec.exportTo[1]", "duplicate"),
    ("exportTo star and more", vs(exportTo=["*", "a"]), "spec.exportTo", "'*'"),
    # route kind conflicts
    ("redirect and route", vs({"redirect": {"uri": "/x"}}), "spec.http[0].route", "redirect"),
    ("redirect and fault", {"hosts": ["a"], "http": [{"redirect": {"uri": "/x"}, "fault": {"abort": {"httpStatus": 500}}}]},
     "spec.http[0].fault", "redirect"),
    ("redirect and rewrite", {"hosts": ["a"], "http": [{"redirect": {"uri": "/x"}, "rewrite": {"uri": "/y"}}]},
     "spec.http[0].rewrite", "redirect"),
    ("redirect and direct response", {"hosts": ["a"], "http": [{"redirect": {"uri": "/x"}, "directResponse": {"status": 200}}]},
     "spec.http[0].directResponse", "redirect"),
    ("direct response and route", vs({"directResponse": {"status": 200}}), "spec.http[0].route", "directResponse"),
    ("direct response and rewrite", {"hosts": ["a"], "http": [{"directResponse": {"status": 200}, "rewrite": {"uri": "/y"}}]},
     "spec.http[0].rewrite", "directResponse"),
    ("no action", {"hosts": ["a"], "http": [{"timeout": "1s"}]}, "spec.http[0]", "route, redirect or directResponse"),
    ("delegating route with route", vs({"delegate": {"name": "d", "namespace": "n"}}), "spec.http[0].route", "delegates"),
    ("delegate inside delegate", {"http": [{"route": [DEST], "delegate": {"name": "d"}}]}, "spec.http[0].delegate", "delegate"),
    ("mirror and mirrors", vs({"mirror": {"host": "a"}, "mirrors": [{"destination": {"host": "b"}}]}), "spec.http[0].mirrors", "only one"),
    # matches
    ("two match kinds", match(uri={"exact": "/a", "prefix": "/a"}), "spec.http[0].match[0].uri", "only one"),
    ("empty method prefix", match(method={"prefix": ""}), "spec.http[0].match[0].method.prefix", "empty"),
    ("bad regex", match(uri={"regex": "(?=lookahead)"}), "spec.http[0].match[0].uri.regex", "RE2"),
    ("empty regex", match(headers={"x-a": {"regex": ""}}), "spec.http[0].match[0].headers.x-a.regex", "empty"),
    ("long regex", match(authority={"regex": "a" * 1025}), "spec.http[0].match[0].authority.regex", "too long"),
    ("bad query param regex", match(queryParams={"q": {"regex": "("}}), "spec.http[0].match[0].queryParams.q.regex", "regex"),
    ("header name", match(headers={"bad header": {"exact": "a"}}), "spec.http[0].match[0].headers.bad header", "header name"),
    ("without header name", match(withoutHeaders={"": {}}), "spec.http[0].match[0].withoutHeaders.", "empty"),
    ("match port", match(port=70000), "spec.http[0].match[0].port", "65535"),
    ("source label key", match(sourceLabels={"-bad": "a"}), "spec.http[0].match[0].sourceLabels[-bad]", "label key"),
    ("source label value", match(sourceLabels={"app": "a b"}), "spec.http[0].match[0].sourceLabels[app]", "label value"),
    ("match gateway", match(gateways=["ns/Bad_Name"]), "spec.http[0].match[0].gateways[0]", "gateway name"),
    ("source namespace", match(sourceNamespace="Bad_NS"), "spec.http[0].match[0].sourceNamespace", "namespace"),
    # header operations
    ("set pseudo header", vs({"headers": {"request": {"set": {":path": "/x"}}}}), "spec.http[0].headers.request.set.:path", "pseudo"),
    ("response host", vs({"headers": {"response": {"add": {"Host": "a"}}}}), "spec.http[0].headers.response.add.Host", "Host"),
    ("remove authority", vs({"headers": {"request": {"remove": [":authority"]}}}), "spec.http[0].headers.request.remove[0]", "pseudo"),
    ("empty header name", vs({"headers": {"request": {"set": {"": "a"}}}}), "spec.http[0].headers.request.set.", "empty"),
    ("unterminated variable", vs({"headers": {"response": {"set": {"x-a": "%START_TIME"}}}}),
     "spec.http[0].headers.response.set.x-a", "unterminated"),
    ("control character", vs({"headers": {"request": {"add": {"x-a": "a\nb"}}}}), "spec.http[0].headers.request.add.x-a", "control"),
    ("destination header", vs({"route": [{**DEST, "headers": {"request": {"set": {":method": "GET"}}}}]}),
     "spec.http[0].route[0].headers.request.set.:method", "pseudo"),
    ("authority set twice", vs({"rewrite": {"authority": "a"}, "headers": {"request": {"set": {"host": "b"}}}}),
     "spec.http[0].headers.request.set.host", "twice"),
    # CORS
    ("empty origin", vs({"corsPolicy": {"allowOrigins": [{}]}}), "spec.http[0].corsPolicy.allowOrigins[0]", "non-empty"),
    ("origin regex", vs({"corsPolicy": {"allowOrigins": [{"regex": "*.com"}]}}), "spec.http[0].corsPolicy.allowOrigins[0].regex", "regex"),
    ("cors method", vs({"corsPolicy": {"allowMethods": ["FETCH"]}}), "spec.http[0].corsPolicy.allowMethods[0]", "method"),
    ("cors header", vs({"corsPolicy": {"allowHeaders": ["x a"]}}), "spec.http[0].corsPolicy.allowHeaders[0]", "header name"),
    ("cors expose header", vs({"corsPolicy": {"exposeHeaders": [""]}}), "spec.http[0].corsPolicy.exposeHeaders[0]", "header name"),
    ("cors max age precision", vs({"corsPolicy": {"maxAge": "1500ms"}}), "spec.http[0].corsPolicy.maxAge", "seconds"),
    ("cors max age zero", vs({"corsPolicy": {"maxAge": "0s"}}), "spec.http[0].corsPolicy.maxAge", "1ms"),
    # fault injection
    ("empty fault", vs({"fault": {}}), "spec.http[0].fault", "abort, a delay"),
    ("abort percentage", vs({"fault": {"abort": {"httpStatus": 500, "percentage": {"value": 150}}}}),
     "spec.http[0].fault.abort.percentage.value", "100"),
    ("tiny percentage", vs({"fault": {"delay": {"fixedDelay": "1s", "percentage": {"value": 0.00001}}}}),
     "spec.http[0].fault.delay.percentage.value", "0.0001"),
    ("two abort kinds", vs({"fault": {"abort": {"httpStatus": 500, "grpcStatus": "UNAVAILABLE"}}}), "spec.http[0].fault.abort", "only one"),
    ("grpc status", vs({"fault": {"abort": {"grpcStatus": "BROKEN"}}}), "spec.http[0].fault.abort.grpcStatus", "gRPC status"),
    ("http2 error", vs({"fault": {"abort": {"http2Error": "REFUSED_STREAM"}}}), "spec.http[0].fault.abort.http2Error", "not supported"),
    ("abort status", vs({"fault": {"abort": {"httpStatus": 600}}}), "spec.http[0].fault.abort.httpStatus", "200 and 599"),
    ("fixed delay", vs({"fault": {"delay": {"fixedDelay": "0s"}}}), "spec.http[0].fault.delay.fixedDelay", "1ms"),
    ("exponential delay", vs({"fault": {"delay": {"exponentialDelay": "1s"}}}), "spec.http[0].fault.delay.exponentialDelay", "not supported"),
    ("delay percent", vs({"fault": {"delay": {"fixedDelay": "1s", "percent": 101}}}), "spec.http[0].fault.delay.percent", "100"),
    # mirroring
    ("mirror percent", vs({"mirror": {"host": "a"}, "mirror_percent": 101}), "spec.http[0].mirrorPercent", "100"),
    ("mirror percentage", vs({"mirror": {"host": "a"}, "mirrorPercentage": {"value": 100.5}}), "spec.http[0].mirrorPercentage.value", "100"),
    ("mirrors percentage", vs({"mirrors": [{"destination": {"host": "a"}, "percentage": {"value": -1}}]}),
     "spec.http[0].mirrors[0].percentage.value", "0 and 100"),
    ("mirrors destination", vs({"mirrors": [{"percentage": {"value": 5}}]}), "spec.http[0].mirrors[0].destination", "destination"),
    ("mirror host", vs({"mirror": {"host": "a b"}}), "spec.http[0].mirror.host", "invalid host"),
    # redirect and direct response
    ("empty redirect", {"hosts": ["a"], "http": [{"redirect": {}}]}, "spec.http[0].redirect", "at least one"),
    ("redirect ports", {"hosts": ["a"], "http": [{"redirect": {"port": 8080, "derivePort": "FROM_REQUEST_PORT"}}]},
     "spec.http[0].redirect", "only one"),
    ("redirect code", {"hosts": ["a"], "http": [{"redirect": {"uri": "/a", "redirectCode": 200}}]}, "spec.http[0].redirect.redirectCode", "3xx"),
    ("redirect scheme", {"hosts": ["a"], "http": [{"redirect": {"scheme": "ftp"}}]}, "spec.http[0].redirect.scheme", "http"),
    ("redirect port", {"hosts": ["a"], "http": [{"redirect": {"port": 70000}}]}, "spec.http[0].redirect.port", "65535"),
    ("direct status", {"hosts": ["a"], "http": [{"directResponse": {"status": 99}}]}, "spec.http[0].directResponse.status", "200 and 599"),
    ("direct body kinds", {"hosts": ["a"], "http": [{"directResponse": {"status": 200, "body": {"string": "a", "bytes": "YQ=="}}}]},
     "spec.http[0].directResponse.body", "only one"),
    ("direct body size", {"hosts": ["a"], "http": [{"directResponse": {"status": 200, "body": {"string": "a" * (1024 * 1024 + 1)}}}]},
     "spec.http[0].directResponse.body", "1MB"),
    # retries, rewrite, timeout
    ("negative attempts", vs({"retries": {"attempts": -1}}), "spec.http[0].retries.attempts", "negative"),
    ("disabled retries", vs({"retries": {"retryOn": "5xx"}}), "spec.http[0].retries.attempts", "disabled"),
    ("per try timeout", vs({"retries": {"attempts": 2, "perTryTimeout": "500us"}}), "spec.http[0].retries.perTryTimeout", "1ms"),
    ("backoff precision", vs({"retries": {"attempts": 2, "backoff": "1500us"}}), "spec.http[0].retries.backoff", "milliseconds"),
    ("retry on", vs({"retries": {"attempts": 2, "retryOn": "5xx,bogus"}}), "spec.http[0].retries.retryOn", "'bogus'"),
    ("retry on status", vs({"retries": {"attempts": 2, "retryOn": "999"}}), "spec.http[0].retries.retryOn", "'999'"),
    ("rewrite both uris", vs({"rewrite": {"uri": "/a", "uriRegexRewrite": {"match": "a", "rewrite": "b"}}}),
     "spec.http[0].rewrite", "only one"),
    ("empty rewrite", vs({"rewrite": {}}), "spec.http[0].rewrite", "uri, uriRegexRewrite or authority"),
    ("regex rewrite half", vs({"rewrite": {"uriRegexRewrite": {"match": "^/a"}}}), "spec.http[0].rewrite.uriRegexRewrite", "both"),
    ("regex rewrite regex", vs({"rewrite": {"uriRegexRewrite": {"match": "(", "rewrite": "/"}}}),
     "spec.http[0].rewrite.uriRegexRewrite.match", "regex"),
    ("timeout", vs({"timeout": "0s"}), "spec.http[0].timeout", "1ms"),
    ("timeout precision", vs({"timeout": "1500us"}), "spec.http[0].timeout", "milliseconds"),
    # destinations and weights
    ("no destination", vs({"route": [{"weight": 100}]}), "spec.http[0].route[0].destination", "required"),
    ("star destination", vs({"route": [{"destination": {"host": "*"}}]}), "spec.http[0].route[0].destination.host", "'*'"),
    ("empty destination host", vs({"route": [{"destination": {"subset": "v1"}}]}), "spec.http[0].route[0].destination.host", "empty"),
    ("subset name", vs({"route": [{"destination": {"host": "a", "subset": "v_1"}}]}), "spec.http[0].route[0].destination.subset", "subset"),
    ("destination port", vs({"route": [{"destination": {"host": "a", "port": {"number": 0}}}]}),
     "spec.http[0].route[0].destination.port.number", "65535"),
    ("negative weight", vs({"route": [{**DEST, "weight": -1}]}), "spec.http[0].route[0].weight", "negative"),
    ("zero total weight", vs({"route": [{**DEST, "weight": 0}, {"destination": {"host": "b"}, "weight": 0}]}), "spec.http[0].route", "0"),
    # TLS and TCP routes
    ("tls without match", {"hosts": ["a.com"], "tls": [{"route": [DEST]}]}, "spec.tls[0].match", "sniHosts"),
    ("tls match without sni", {"hosts": ["a.com"], "tls": [{"match": [{"port": 443}], "route": [DEST]}]},
     "spec.tls[0].match[0].sniHosts", "SNI host"),
    ("sni outside hosts", {"hosts": ["*.a.com"], "tls": [{"match": [{"sniHosts": ["b.com"]}], "route": [DEST]}]},
     "spec.tls[0].match[0].sniHosts[0]", "not covered"),
    ("bad sni", {"hosts": ["*"], "gateways": ["gw"], "tls": [{"match": [{"sniHosts": ["a..com"]}], "route": [DEST]}]},
     "spec.tls[0].match[0].sniHosts[0]", "invalid host"),
    ("tls subnet", {"hosts": ["a.com"], "tls": [{"match": [{"sniHosts": ["a.com"], "destinationSubnets": ["10.0.0.0/33"]}], "route": [DEST]}]},
     "spec.tls[0].match[0].destinationSubnets[0]", "CIDR"),
    ("tls without route", {"hosts": ["a.com"], "tls": [{"match": [{"sniHosts": ["a.com"]}]}]}, "spec.tls[0].route", "destination"),
    ("tcp without route", {"hosts": ["a"], "tcp": [{"match": [{"port": 80}]}]}, "spec.tcp[0].route", "destination"),
    ("tcp port", {"hosts": ["a"], "tcp": [{"match": [{"port": 65536}], "route": [DEST]}]}, "spec.tcp[0].match[0].port", "65535"),
    ("tcp weights", {"hosts": ["a"], "tcp": [{"route": [{**DEST, "weight": -5}]}]}, "spec.tcp[0].route[0].weight", "negative"),
    ("tcp source labels", {"hosts": ["a"], "tcp": [{"match": [{"sourceLabels": {"a/b/c": "x"}}], "route": [DEST]}]},
     "spec.tcp[0].match[0].sourceLabels[a/b/c]", "label key"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "field", "word"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_rule_violation_is_an_error_at_its_field(spec, field, word):
    errors = [f for f in run(spec) if f.level == "error"]
    assert [f.field for f in errors] == [field], errors
    assert word in errors[0].message


WARNINGS = [
    ("legacy gateway name", vs(gateways=["gw.istio-system"]), "spec.gateways[0]", "istio-system/gw"),
    ("deprecated allowOrigin", vs({"corsPolicy": {"allowOrigin": ["*"]}}), "spec.http[0].corsPolicy.allowOrigin", "deprecated"),
    ("abort without type", vs({"fault": {"abort": {"percentage": {"value": 1}}}}), "spec.http[0].fault.abort", "httpStatus"),
    ("deprecated mirrorPercent", vs({"mirror": {"host": "a"}, "mirrorPercent": 5}), "spec.http[0].mirrorPercent", "deprecated"),
    ("large direct response", {"hosts": ["a"], "http": [{"directResponse": {"status": 200, "body": {"bytes": base64.b64encode(b"x" * 200_000).decode()}}}]},
     "spec.http[0].directResponse.body", "large"),
    ("sni is an IP", {"hosts": ["a.com"], "tls": [{"match": [{"sniHosts": ["10.0.0.1"]}], "route": [DEST]}]},
     "spec.tls[0].match[0].sniHosts[0]", "IP address"),
    ("rule after a catch-all", {"hosts": ["a"], "http": [{"route": [DEST]}, {"match": [{"uri": {"prefix": "/a"}}], "route": [DEST]}]},
     "spec.http[1]", "never used"),
    ("two catch-alls", {"hosts": ["a"], "tcp": [{"route": [DEST]}, {"route": [DEST]}]}, "spec.tcp[1]", "only the last rule"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "field", "word"), [c[1:] for c in WARNINGS], ids=[c[0] for c in WARNINGS])
def test_questionable_config_is_a_warning_at_its_field(spec, field, word):
    findings = run(spec)
    assert not [f for f in findings if f.level == "error"], findings
    assert any(f.level == "warning" and f.field == field and word in f.message for f in findings), findings


def test_repeated_match_warns_at_the_match_and_the_rule():
    same = {"uri": {"prefix": "/api"}, "headers": {"x-a": {"exact": "1"}}}
    spec = {"hosts": ["a"], "http": [{"match": [same], "route": [DEST]}, {"name": "again", "match": [{**same, "name": "m"}], "route": [DEST]}]}
    warnings = {(f.field, f.level) for f in run(spec)}
    assert warnings == {("spec.http[1].match[0]", "warning"), ("spec.http[1]", "warning")}


VALID = [
    ("istio's bookinfo rule", vs({"match": [{"headers": {"end-user": {"exact": "jason"}}}], "timeout": "10s",
                                   "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "gateway-error,503,retriable-4xx"}})),
    ("weights need not sum to 100", vs({"route": [{**DEST, "weight": 150}, {"destination": {"host": "b"}, "weight": 50}]})),
    ("star host bound to a gateway", vs(hosts=["*"], gateways=["istio-system/ingress"])),
    ("ip host", vs(hosts=["10.1.2.3"], gateways=["gw"])),
    ("mesh and namespace/name gateways", vs(gateways=["mesh", "istio-system/ingress", "gw"])),
    ("jwt claim routing on a gateway", vs({"match": [{"headers": {"@request.auth.claims.group": {"exact": "a"}}}]}, gateways=["gw"])),
    ("empty uri prefix", vs({"match": [{"uri": {"prefix": ""}}]})),
    ("without header present", vs({"match": [{"withoutHeaders": {"x-a": {"regex": "*"}}}]})),
    ("header variables", vs({"headers": {"request": {"set": {"x-a": "%DOWNSTREAM_REMOTE_ADDRESS% 100%%",
                                                                "x-b": '%REQ(x-c)%', "host": "b"}}}})),
    ("redirect alone", {"hosts": ["a"], "http": [{"redirect": {"uri": "/b", "redirectCode": 301, "derivePort": "FROM_REQUEST_PORT"}}]}),
    ("delegating root route", {"hosts": ["a"], "http": [{"match": [{"uri": {"prefix": "/p"}}], "delegate": {"name": "d", "namespace": "n"}}]}),
    ("delegate virtual service", {"http": [{"route": [DEST]}]}),
    ("tcp with subnets", {"hosts": ["a"], "tcp": [{"match": [{"destinationSubnets": ["10.0.0.0/8", "10.1.1.1"]}], "route": [DEST]}]}),
    ("auto passthrough sni", {"hosts": ["*.mesh"], "gateways": ["gw"],
                              "tls": [{"match": [{"sniHosts": ["outbound_.80_._.e2e.foo.mesh"]}], "route": [DEST]}]}),
    ("export to self and a namespace", vs(exportTo=[".", "other"])),
]  # fmt: skip


@pytest.mark.parametrize("spec", [c[1] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_config_has_no_findings(spec):
    assert run(spec) == []


def _istio_documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted([*VALIDATION_DATASET.glob("*.yaml"), *SAMPLES.rglob("*.yaml")]):
        text = path.read_text()
        if "kind: VirtualService" not in text:
            continue  # parsing YAML in pure Python is slow: skip files without the kind
        for doc in YAML(typ="safe", pure=True).load_all(text):
            if isinstance(doc, dict) and doc.get("kind") == "VirtualService" and str(doc.get("apiVersion")).startswith("networking.istio.io/"):
                docs.append((f"{path.name}:{doc['metadata']['name']}", doc))
    return docs


ISTIO_DOCS = _istio_documents()


def test_istio_corpus_has_virtual_services():
    assert len(ISTIO_DOCS) >= 15


@pytest.mark.parametrize("doc", [d for _, d in ISTIO_DOCS], ids=[n for n, _ in ISTIO_DOCS])
def test_istio_yaml_parses_and_validates_without_errors(doc):
    findings = run(doc["spec"], namespace=doc["metadata"].get("namespace", "default"))
    assert [f for f in findings if f.level == "error"] == []
