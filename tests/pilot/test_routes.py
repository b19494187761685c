"""VirtualService HTTP features, seen through the routes a sidecar gets."""

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.cors.v3 import cors_pb2

from malla.pilot.generate import generate
from malla.pilot.resources import ROUTE
from malla.pilot.routes_http import CORS_FILTER, parse_retry_on
from malla.pilot.simulate import Request, simulate

from tests.pilot.mesh import sidecar, snapshot

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}, {name: http-admin, port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec: {selector: {app: ratings}, ports: [{name: http, port: 9080}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
"""
REVIEWS = "reviews.default.svc.cluster.local"


def vs(http, *, hosts="[reviews]", extra=""):
    return f"""
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: {hosts}
  http:
{http}{extra}"""


def request(text, host="reviews:9080", path="/", *, proxy=None, **kw):
    res = generate(proxy or sidecar(ip="127.0.0.10"), snapshot(SERVICES + text))
    return simulate(res, Request(port=15001, address="127.0.0.10", host=host, path=path, **kw))


def test_uri_matches_exact_prefix_regex_and_case():
    http = """  - match: [{uri: {exact: /a}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {regex: "/r/[0-9]+"}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /CaSe}, ignoreUriCase: true}]
    route: [{destination: {host: ratings}}]
"""
    assert request(vs(http), path="/a").cluster == f"outbound|9080|v1|{REVIEWS}"
    assert request(vs(http), path="/a/b").error == "no route matched (404)"
    assert request(vs(http), path="/r/42").cluster == f"outbound|9080|v2|{REVIEWS}"
    assert request(vs(http), path="/case/x").cluster == "outbound|9080||ratings.default.svc.cluster.local"


def test_method_authority_scheme_query_and_without_headers():
    http = """  - match: [{method: {exact: POST}, queryParams: {debug: {exact: "1"}}, withoutHeaders: {x-skip: {}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""
    v2 = f"outbound|9080|v2|{REVIEWS}"
    assert request(vs(http), path="/?debug=1", method="POST").cluster == v2
    assert request(vs(http), path="/?debug=1", method="GET").cluster != v2
    assert request(vs(http), path="/?debug=1", method="POST", headers={"x-skip": "y"}).cluster != v2


def test_match_port_picks_routes_per_service_port():
    http = """  - match: [{port: 8080}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""
    assert request(vs(http), host="reviews:8080").cluster == f"outbound|8080|v2|{REVIEWS}"
    assert request(vs(http), host="reviews:9080").cluster == f"outbound|9080|v1|{REVIEWS}"


def test_source_labels_are_decided_per_proxy():
    http = """  - match: [{sourceLabels: {app: canary}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""
    canary = sidecar(ip="127.0.0.10", labels={"app": "canary"})
    assert request(vs(http), proxy=canary).cluster == f"outbound|9080|v2|{REVIEWS}"
    assert request(vs(http)).cluster == f"outbound|9080|v1|{REVIEWS}"


def test_redirect_and_direct_response():
    http = """  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: new.example.com, scheme: https, redirectCode: 308}
  - directResponse: {status: 418, body: {string: teapot}}
"""
    r = request(vs(http), path="/old/x")
    assert (r.redirect.path_redirect, r.redirect.host_redirect, r.redirect.scheme_redirect) == (
        "/new",
        "new.example.com",
        "https",
    )
    assert r.redirect.response_code == rc.RedirectAction.PERMANENT_REDIRECT
    teapot = request(vs(http), path="/")
    assert teapot.direct_response == 418 and teapot.route.direct_response.body.inline_string == "teapot"


def test_rewrite_timeout_and_retries():
    http = """  - rewrite: {uri: /v2/, authority: backend}
    timeout: 1.5s
    retries: {attempts: 5, perTryTimeout: 200ms, retryOn: "gateway-error,503,connect-failure", retryRemoteLocalities: true, backoff: 25ms}
    route: [{destination: {host: reviews}}]
"""
    action = request(vs(http)).route.route
    assert (action.prefix_rewrite, action.host_rewrite_literal) == ("/v2/", "backend")
    assert action.timeout.ToMilliseconds() == 1500
    retry = action.retry_policy
    assert retry.num_retries.value == 5 and retry.per_try_timeout.ToMilliseconds() == 200
    assert retry.retry_on == "gateway-error,connect-failure,retriable-status-codes"
    assert list(retry.retriable_status_codes) == [503]
    assert retry.retry_priority.name == "envoy.retry_priorities.previous_priorities"
    assert retry.retry_back_off.base_interval.ToMilliseconds() == 25


def test_zero_attempts_turns_retries_off_and_regex_rewrite():
    http = """  - retries: {attempts: 0}
    rewrite: {uriRegexRewrite: {match: "^/api/(.*)$", rewrite: "/\\\\1"}}
    route: [{destination: {host: reviews}}]
"""
    action = request(vs(http)).route.route
    assert not action.HasField("retry_policy")
    assert (action.regex_rewrite.pattern.regex, action.regex_rewrite.substitution) == ("^/api/(.*)$", "/\\1")


def test_mirror_and_mirrors_with_percentages():
    http = """  - match: [{uri: {prefix: /one}}]
    route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 12.5}
  - route: [{destination: {host: reviews, subset: v1}}]
    mirrors: [{destination: {host: ratings}}, {destination: {host: reviews, subset: v2}, percentage: {value: 0.5}}]
"""
    one = request(vs(http), path="/one").route.route.request_mirror_policies
    assert [(m.cluster, m.runtime_fraction.default_value.numerator) for m in one] == [
        (f"outbound|9080|v2|{REVIEWS}", 125_000)
    ]
    many = request(vs(http), path="/").route.route.request_mirror_policies
    assert [(m.cluster, m.runtime_fraction.default_value.numerator) for m in many] == [
        ("outbound|9080||ratings.default.svc.cluster.local", 1_000_000),
        (f"outbound|9080|v2|{REVIEWS}", 5_000),
    ]


def test_cors_policy_is_a_per_route_config():
    http = """  - corsPolicy: {allowOrigins: [{exact: "https://a.example.com"}, {regex: ".*\\\\.b\\\\.com"}], allowMethods: [GET, POST], allowHeaders: [x-a], exposeHeaders: [x-b], maxAge: 24h, allowCredentials: true}
    route: [{destination: {host: reviews}}]
"""
    route = request(vs(http)).route
    cors = cors_pb2.CorsPolicy()
    route.typed_per_filter_config[CORS_FILTER].Unpack(cors)
    assert [m.exact or m.safe_regex.regex for m in cors.allow_origin_string_match] == [
        "https://a.example.com",
        ".*\\.b\\.com",
    ]
    assert (cors.allow_methods, cors.allow_headers, cors.expose_headers, cors.max_age) == (
        "GET,POST",
        "x-a",
        "x-b",
        "86400",
    )
    assert cors.allow_credentials.value


def test_header_operations_on_routes_and_destinations():
    http = """  - headers:
      request: {set: {x-a: "1"}, add: {x-b: "2"}, remove: [x-c]}
      response: {set: {x-d: "3"}}
    route:
    - {destination: {host: reviews, subset: v1}, weight: 50, headers: {request: {set: {x-v: one}}}}
    - {destination: {host: reviews, subset: v2}, weight: 50}
"""
    route = request(vs(http)).route
    overwrite = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    assert [(h.header.key, h.header.value, h.append_action == overwrite) for h in route.request_headers_to_add] == [
        ("x-a", "1", True),
        ("x-b", "2", False),
    ]
    assert list(route.request_headers_to_remove) == ["x-c"]
    assert route.response_headers_to_add[0].header.key == "x-d"
    v1 = route.route.weighted_clusters.clusters[0]
    assert v1.request_headers_to_add[0].header.value == "one"


def test_delegation_merges_root_and_delegate_matches():
    text = (
        vs(
            """  - match: [{uri: {prefix: /reviews}}]
    delegate: {name: reviews-team, namespace: default}
  - route: [{destination: {host: ratings}}]
"""
        )
        + """
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-team}
spec:
  http:
  - match: [{uri: {prefix: /reviews/v2}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /other}}]
    route: [{destination: {host: reviews, subset: v1}}]
"""
    )
    assert request(text, path="/reviews/v2/1").cluster == f"outbound|9080|v2|{REVIEWS}"
    # /other is outside the root's /reviews: that delegate route cannot apply.
    assert request(text, path="/other").cluster == "outbound|9080||ratings.default.svc.cluster.local"
    assert request(text, path="/reviews/v1").cluster == "outbound|9080||ratings.default.svc.cluster.local"


def test_virtual_service_hosts_without_a_service_are_served_on_port_80():
    text = vs("  - route: [{destination: {host: ratings}}]\n", hosts="[www.example.com]")
    r = request(text, host="www.example.com")
    assert (r.virtual_host, r.cluster) == ("www.example.com:80", "outbound|9080||ratings.default.svc.cluster.local")


def test_consistent_hash_puts_a_hash_policy_on_routes():
    text = SERVICES.replace(
        "spec: {host: reviews, subsets:",
        "spec: {host: reviews, trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}, subsets:",
    )
    res = generate(sidecar(ip="127.0.0.10"), snapshot(text))
    r = simulate(res, Request(port=15001, address="127.0.0.10", host="reviews:9080"))
    assert [h.header.header_name for h in r.route.route.hash_policy] == ["x-user"]
    assert not r.route.route.retry_policy.retry_host_predicate  # hashing needs the same host on retry


def test_domains_of_other_namespaces_need_their_namespace():
    res = generate(sidecar(ip="127.0.0.10", namespace="other"), snapshot(SERVICES))
    config = res[ROUTE]["15001"]
    domains = {d for v in config.virtual_hosts for d in v.domains}
    assert "reviews.default:9080" in domains and "reviews:9080" not in domains


@pytest.mark.parametrize(
    ("text", "policy", "codes"),
    [
        ("5xx", "5xx", []),
        ("503,retriable-4xx", "retriable-4xx,retriable-status-codes", [503]),
        (" a , a ,b", "a,b", []),
    ],
)
def test_parse_retry_on(text, policy, codes):
    assert parse_retry_on(text) == (policy, codes)


def test_wildcard_virtual_service_hosts_route_names_no_service_has():
    extra = """
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a}
spec: {hosts: [a.example.com], resolution: DNS, ports: [{number: 80, name: http}]}
"""
    text = extra + vs("  - route: [{destination: {host: ratings}}]\n", hosts="['*.example.com']")
    ratings = "outbound|9080||ratings.default.svc.cluster.local"
    assert request(text, host="b.example.com").cluster == ratings
    assert request(text, host="a.example.com").cluster == ratings  # the VirtualService governs a.example.com too
