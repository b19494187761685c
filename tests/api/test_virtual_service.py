"""VirtualService specs parse as Istio reads them: camelCase or snake_case keys, durations, enums, strict fields."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from malla.api.networking.virtual_service import VirtualService

REVIEWS = """
hosts: [reviews.prod.svc.cluster.local]
gateways: [mesh, istio-system/ingress]
http:
- name: reviews-v2-routes
  match:
  - uri: {prefix: /wpcatalog}
    headers:
      end-user: {exact: jason}
    queryParams:
      debug: {regex: "^(1|true)$"}
    ignoreUriCase: true
    sourceLabels: {app: productpage}
    withoutHeaders:
      x-canary: {}
  rewrite:
    uri: /newcatalog
  route:
  - destination: {host: reviews.prod.svc.cluster.local, subset: v2, port: {number: 9080}}
    weight: 75
    headers:
      request:
        set: {x-route: v2}
        remove: [x-debug]
  - destination: {host: reviews.prod.svc.cluster.local, subset: v1}
    weight: 25
  timeout: 1.5s
  retries: {attempts: 3, perTryTimeout: 100ms, retryOn: "5xx,connect-failure", backoff: 25ms,
            retryRemoteLocalities: true, retryIgnorePreviousHosts: false}
  fault:
    delay: {fixedDelay: 7s, percentage: {value: 10}}
    abort: {httpStatus: 503, percentage: {value: 0.5}}
  mirrors:
  - destination: {host: shadow}
    percentage: {value: 20}
  corsPolicy:
    allowOrigins: [{exact: "https://example.com"}]
    allowMethods: [GET, POST]
    maxAge: 24h
    allowCredentials: true
    unmatchedPreflights: IGNORE
tcp:
- match: [{port: 27017, destinationSubnets: [10.0.0.0/8]}]
  route: [{destination: {host: mongo.backup.svc.cluster.local, port: {number: 5555}}}]
tls:
- match: [{port: 443, sniHosts: [login.bookinfo.com]}]
  route: [{destination: {host: login.prod.svc.cluster.local}}]
exportTo: ["."]
"""


def _load(text: str) -> dict:
    return YAML(typ="safe", pure=True).load(text)


def test_full_spec_parses_into_typed_fields():
    vs = VirtualService.model_validate(_load(REVIEWS))
    route = vs.http[0]
    assert vs.gateways == ["mesh", "istio-system/ingress"]
    assert route.match[0].uri.prefix == "/wpcatalog"
    assert route.match[0].headers["end-user"].exact == "jason"
    assert route.match[0].without_headers["x-canary"].exact is None
    assert route.route[0].destination.port.number == 9080
    assert route.route[0].headers.request.set == {"x-route": "v2"}
    assert [d.weight for d in route.route] == [75, 25]
    assert route.timeout.millis == 1500
    assert route.retries.per_try_timeout.millis == 100
    assert route.retries.backoff.millis == 25
    assert route.fault.delay.fixed_delay.seconds == 7
    assert route.fault.abort.percentage.value == 0.5
    assert route.cors_policy.max_age.seconds == 86400
    assert route.cors_policy.unmatched_preflights == "IGNORE"
    assert vs.tcp[0].match[0].destination_subnets == ["10.0.0.0/8"]
    assert vs.tls[0].match[0].sni_hosts == ["login.bookinfo.com"]


def test_unset_fields_stay_unset():
    vs = VirtualService.model_validate({"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a"}}]}]})
    route = vs.http[0]
    assert route.timeout is None and route.retries is None and route.route[0].weight is None
    assert vs.to_dict() == {
        "hosts": ["a"], "gateways": [], "http": [{"match": [], "route": [{"destination": {"host": "a"}}], "mirrors": []}],
        "tls": [], "tcp": [], "exportTo": [],
    }  # fmt: skip


def test_snake_case_keys_give_the_same_spec():
    camel = VirtualService.model_validate(
        {"http": [{"match": [{"queryParams": {"a": {"exact": "b"}}}], "corsPolicy": {"allowMethods": ["GET"]},
                   "directResponse": {"status": 200, "body": {"string": "ok"}}}], "exportTo": ["*"]}
    )  # fmt: skip
    snake = VirtualService.model_validate(
        {"http": [{"match": [{"query_params": {"a": {"exact": "b"}}}], "cors_policy": {"allow_methods": ["GET"]},
                   "direct_response": {"status": 200, "body": {"string": "ok"}}}], "export_to": ["*"]}
    )  # fmt: skip
    assert camel == snake
    assert camel.http[0].direct_response.body.string_ == "ok"


def test_mirror_percent_accepts_the_protojson_and_camel_case_keys():
    for key in ("mirror_percent", "mirrorPercent"):
        vs = VirtualService.model_validate({"http": [{key: 40}]})
        assert vs.http[0].mirror_percent == 40


def test_direct_response_bytes_are_base64():
    vs = VirtualService.model_validate({"http": [{"directResponse": {"status": 200, "body": {"bytes": "aGVsbG8="}}}]})
    assert vs.http[0].direct_response.body.bytes_ == "aGVsbG8="
    with pytest.raises(ValidationError) as info:
        VirtualService.model_validate({"http": [{"directResponse": {"body": {"bytes": "not base64!"}}}]})
    assert info.value.errors()[0]["loc"] == ("http", 0, "directResponse", "body", "bytes")
    assert "base64" in str(info.value)


@pytest.mark.parametrize(("given", "kept"), [("FROM_REQUEST_PORT", "FROM_REQUEST_PORT"), (1, "FROM_REQUEST_PORT"), (0, "FROM_PROTOCOL_DEFAULT")])
def test_redirect_derive_port_by_name_or_number(given, kept):
    vs = VirtualService.model_validate({"http": [{"redirect": {"derivePort": given}}]})
    assert vs.http[0].redirect.derive_port == kept


def test_unknown_enum_value_names_the_allowed_ones():
    with pytest.raises(ValidationError) as info:
        VirtualService.model_validate({"http": [{"corsPolicy": {"unmatchedPreflights": "DROP"}}]})
    assert info.value.errors()[0]["loc"] == ("http", 0, "corsPolicy", "unmatchedPreflights")
    assert "UNSPECIFIED, FORWARD, IGNORE" in str(info.value)


def test_unknown_field_is_rejected_with_its_path():
    with pytest.raises(ValidationError) as info:
        VirtualService.model_validate({"http": [{"route": [{"destination": {"host": "a", "version": "v1"}}]}]})
    assert info.value.errors()[0]["loc"] == ("http", 0, "route", 0, "destination", "version")


def test_bad_duration_says_which_forms_are_accepted():
    with pytest.raises(ValidationError) as info:
        VirtualService.model_validate({"http": [{"timeout": "10 seconds"}]})
    assert info.value.errors()[0]["loc"] == ("http", 0, "timeout")
    assert "'1.5s'" in str(info.value)


def test_numeric_strings_are_accepted_for_integers_as_protojson_does():
    vs = VirtualService.model_validate({"http": [{"route": [{"destination": {"host": "a", "port": {"number": "80"}}, "weight": "100"}]}]})
    assert vs.http[0].route[0].destination.port.number == 80
    assert vs.http[0].route[0].weight == 100


def test_negative_port_is_rejected_by_the_schema():
    with pytest.raises(ValidationError) as info:
        VirtualService.model_validate({"tcp": [{"match": [{"port": -1}]}]})
    assert info.value.errors()[0]["loc"] == ("tcp", 0, "match", 0, "port")
