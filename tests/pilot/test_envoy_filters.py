"""EnvoyFilter applied to generated config: what a proxy gets once Istio's patches run."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import json_format

from malla.config.parse import parse_text
from malla.pilot.consistency import assert_consistent
from malla.pilot.envoy_filters import applicable_envoy_filters, explain_envoy_filters
from malla.pilot.generate import generate
from malla.pilot.protocol import Protocol
from malla.pilot.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from malla.pilot.shared import SharedGeneration
from malla.pilot.snapshot import MeshSnapshot
from tests.pilot.mesh import router, sidecar, snapshot, workload

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: default}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 8000, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
"""
WORKLOADS = [
    workload("httpbin", "127.0.0.20", ports={"http": 8080}),
    workload("reviews", "127.0.0.21", ports={"http": 9080}),
]
SECRETS = ["default", "ROOTCA"]

RATE_LIMIT = """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: filter-local-ratelimit-svc, namespace: default}
spec:
  workloadSelector:
    labels: {app: httpbin}
  configPatches:
    - applyTo: HTTP_FILTER
      match:
        context: SIDECAR_INBOUND
        listener:
          filterChain:
            filter:
              name: "envoy.filters.network.http_connection_manager"
      patch:
        operation: INSERT_BEFORE
        value:
          name: envoy.filters.http.local_ratelimit
          typed_config:
            "@type": type.googleapis.com/udpa.type.v1.TypedStruct
            type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            value:
              stat_prefix: http_local_rate_limiter
              token_bucket: {max_tokens: 2, tokens_per_fill: 2, fill_interval: 60s}
              filter_enabled:
                runtime_key: local_rate_limit_enabled
                default_value: {numerator: 100, denominator: HUNDRED}
              filter_enforced:
                runtime_key: local_rate_limit_enforced
                default_value: {numerator: 100, denominator: HUNDRED}
              response_headers_to_add:
                - append_action: OVERWRITE_IF_EXISTS_OR_ADD
                  header: {key: x-local-rate-limit, value: "true"}
"""


def _resources(text: str, *proxies):
    snap = snapshot(SERVICES + "---" + text, workloads=WORKLOADS)
    shared = SharedGeneration(snap)
    return snap, [generate(p, snap, shared=shared) for p in proxies]


def httpbin():
    return sidecar("httpbin", ip="127.0.0.20", inbound=[(8080, 8080, Protocol.HTTP)])


def reviews():
    return sidecar("reviews", ip="127.0.0.21", inbound=[(9080, 9080, Protocol.HTTP)])


def http_filters(resources, listener: str) -> list[list[str]]:
    """The HTTP filter names of every HTTP connection manager of one listener, chain by chain."""
    out = []
    for chain in resources[LISTENER][listener].filter_chains:
        for f in chain.filters:
            if f.name == "envoy.filters.network.http_connection_manager":
                manager = hcm_pb2.HttpConnectionManager()
                f.typed_config.Unpack(manager)
                out.append([h.name for h in manager.http_filters])
    return out


def test_rate_limit_goes_first_on_inbound_only_and_typed_struct_becomes_the_real_type():
    """Istio's example names no subFilter: INSERT_BEFORE with no filter to be before inserts first."""
    _, (patched, plain) = _resources(RATE_LIMIT, httpbin(), reviews())
    inbound = http_filters(patched, "virtualInbound")
    assert inbound and all(c[0] == "envoy.filters.http.local_ratelimit" and c[-1] == "envoy.filters.http.router"
                           for c in inbound)
    outbound = [n for chain in http_filters(patched, "127.0.0.20_15001") for n in chain]
    assert "envoy.filters.http.local_ratelimit" not in outbound
    assert all("envoy.filters.http.local_ratelimit" not in c for c in http_filters(plain, "virtualInbound"))
    chain = patched[LISTENER]["virtualInbound"].filter_chains[0]
    manager = hcm_pb2.HttpConnectionManager()
    chain.filters[0].typed_config.Unpack(manager)
    limit = next(h for h in manager.http_filters if h.name == "envoy.filters.http.local_ratelimit")
    assert limit.typed_config.type_url.endswith("local_ratelimit.v3.LocalRateLimit")
    config = local_rate_limit_pb2.LocalRateLimit()
    assert limit.typed_config.Unpack(config)
    assert config.token_bucket.max_tokens == 2 and config.response_headers_to_add[0].header.key == "x-local-rate-limit"
    assert_consistent(patched, secrets=SECRETS)


def test_generated_shared_objects_are_never_mutated():
    snap = snapshot(SERVICES + "---" + RATE_LIMIT + "---" + CLUSTER_MERGE, workloads=WORKLOADS)
    shared = SharedGeneration(snap)
    before = generate(httpbin(), snapshot(SERVICES, workloads=WORKLOADS))
    first = generate(httpbin(), snap, shared=shared)
    # A second proxy of the same class, and the memo's own objects, still read as generated without patches.
    generate(reviews(), snap, shared=shared)
    name = "outbound|9080||reviews.default.svc.cluster.local"
    assert first[CLUSTER][name].connect_timeout.seconds == 7
    assert before[CLUSTER][name].connect_timeout.seconds != 7
    plain = generate(reviews(), snap, shared=shared)
    assert plain[CLUSTER][name].connect_timeout.seconds != 7


CLUSTER_MERGE = """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: reviews-timeout, namespace: default}
spec:
  workloadSelector:
    labels: {app: httpbin}
  configPatches:
    - applyTo: CLUSTER
      match:
        context: SIDECAR_OUTBOUND
        cluster: {service: reviews.default.svc.cluster.local, portNumber: 9080}
      patch:
        operation: MERGE
        value: {connect_timeout: 7s}
"""


def test_workload_selector_separates_proxies_that_share_a_class():
    """Two sidecars in one namespace share outbound clusters; only the selected one gets the merged cluster."""
    snap, (selected, other) = _resources(CLUSTER_MERGE, httpbin(), reviews())
    name = "outbound|9080||reviews.default.svc.cluster.local"
    assert selected[CLUSTER][name].connect_timeout.seconds == 7
    assert other[CLUSTER][name].connect_timeout.seconds == 10
    assert selected[CLUSTER][name] is not other[CLUSTER][name]
    # Unpatched clusters stay the very objects the memo shares.
    assert selected[CLUSTER]["outbound|8000||httpbin.default.svc.cluster.local"] is \
        other[CLUSTER]["outbound|8000||httpbin.default.svc.cluster.local"]


ROUTE_PATCHES = """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: routes, namespace: istio-system}
spec:
  configPatches:
    - applyTo: HTTP_ROUTE
      match:
        context: SIDECAR_INBOUND
        routeConfiguration:
          vhost:
            name: "inbound|http|8080"
            route: {action: ANY}
      patch:
        operation: MERGE
        value:
          typed_per_filter_config:
            envoy.filters.http.local_ratelimit:
              "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              stat_prefix: per_route
              token_bucket: {max_tokens: 10, tokens_per_fill: 10, fill_interval: 60s}
    - applyTo: VIRTUAL_HOST
      match:
        context: SIDECAR_OUTBOUND
        routeConfiguration: {portNumber: 15001}
      patch:
        operation: ADD
        value: {name: extra, domains: ["extra.example"], routes: [{match: {prefix: /}, direct_response: {status: 204}}]}
    - applyTo: HTTP_ROUTE
      match:
        context: SIDECAR_OUTBOUND
        routeConfiguration: {vhost: {name: "reviews.default.svc.cluster.local:9080", route: {action: ROUTE}}}
      patch:
        operation: INSERT_BEFORE
        value: {name: first, match: {prefix: /first}, direct_response: {status: 418}}
    - applyTo: ROUTE_CONFIGURATION
      match: {context: SIDECAR_OUTBOUND}
      patch:
        operation: MERGE
        value: {max_direct_response_body_size_bytes: 2048}
"""


def test_route_patches_merge_add_and_insert():
    _, (patched,) = _resources(ROUTE_PATCHES, httpbin())
    inbound = patched[ROUTE]["inbound|8080||"]
    vhost = next(v for v in inbound.virtual_hosts if v.name == "inbound|http|8080")
    assert all("envoy.filters.http.local_ratelimit" in r.typed_per_filter_config for r in vhost.routes)
    outbound = patched[ROUTE]["15001"]  # an explicit-mode sidecar's HTTP proxy routes, named by its port
    assert any(v.name == "extra" for v in outbound.virtual_hosts)
    reviews_host = next(v for v in outbound.virtual_hosts if v.name == "reviews.default.svc.cluster.local:9080")
    assert [r.name for r in reviews_host.routes] == ["first", "default"]
    assert outbound.max_direct_response_body_size_bytes.value == 2048
    assert not inbound.HasField("max_direct_response_body_size_bytes")
    assert_consistent(patched, secrets=SECRETS)


LISTENER_OPS = """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: listener-ops, namespace: default}
spec:
  workloadSelector: {labels: {app: httpbin}}
  configPatches:
    - applyTo: NETWORK_FILTER
      match:
        context: SIDECAR_INBOUND
        listener: {portNumber: 8080, filterChain: {filter: {name: envoy.http_connection_manager}}}
      patch:
        operation: MERGE
        value:
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
            server_name: patched-server
    - applyTo: HTTP_FILTER
      match:
        context: SIDECAR_OUTBOUND
        listener:
          filterChain: {filter: {name: envoy.filters.network.http_connection_manager,
                                 subFilter: {name: envoy.filters.http.router}}}
      patch:
        operation: INSERT_AFTER
        value: {name: never.first}
    - applyTo: HTTP_FILTER
      match:
        context: SIDECAR_OUTBOUND
        listener:
          filterChain: {filter: {name: envoy.filters.network.http_connection_manager,
                                 subFilter: {name: never.first}}}
      patch: {operation: REMOVE}
    - applyTo: HTTP_FILTER
      match: {context: SIDECAR_OUTBOUND}
      patch:
        operation: ADD
        filterClass: STATS
        value:
          name: envoy.filters.http.cors
          typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}
    - applyTo: LISTENER
      match: {context: SIDECAR_OUTBOUND}
      patch:
        operation: ADD
        value:
          name: extra-listener
          address: {socket_address: {address: 127.0.0.20, port_value: 15555}}
          filter_chains:
            - filters:
                - name: envoy.filters.network.direct_response
                  typed_config:
                    "@type": type.googleapis.com/envoy.extensions.filters.network.direct_response.v3.Config
                    response: {inline_string: "hi"}
    - applyTo: FILTER_CHAIN
      match: {context: SIDECAR_INBOUND, listener: {filterChain: {transportProtocol: tls}}}
      patch: {operation: REMOVE}
"""


def test_listener_patches_apply_in_order_and_envoy_names_are_canonicalized():
    _, (patched,) = _resources(LISTENER_OPS, httpbin())
    inbound = patched[LISTENER]["virtualInbound"]
    assert [c.filter_chain_match.transport_protocol for c in inbound.filter_chains] == ["raw_buffer"]
    manager = hcm_pb2.HttpConnectionManager()
    inbound.filter_chains[0].filters[0].typed_config.Unpack(manager)
    assert manager.server_name == "patched-server"
    assert [h.name for h in manager.http_filters][-1] == "envoy.filters.http.router"  # merged, not replaced
    assert http_filters(patched, "127.0.0.20_15001")[0][-2:] == ["envoy.filters.http.cors", "envoy.filters.http.router"]
    assert "extra-listener" in patched[LISTENER]
    report = explain_envoy_filters(httpbin(), _resources(LISTENER_OPS)[0], _unpatched(httpbin()))
    assert len(report.applied) == 6, report


def _unpatched(proxy):
    return generate(proxy, snapshot(SERVICES, workloads=WORKLOADS))


def test_removed_and_added_clusters_keep_endpoints_consistent():
    text = """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: clusters, namespace: default}
spec:
  configPatches:
    - applyTo: CLUSTER
      match: {cluster: {service: reviews.default.svc.cluster.local}}
      patch: {operation: REMOVE}
    - applyTo: CLUSTER
      patch:
        operation: ADD
        value:
          name: static-extra
          type: STATIC
          connect_timeout: 1s
          load_assignment:
            cluster_name: static-extra
            endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]
"""
    _, (patched,) = _resources(text, httpbin())
    assert "outbound|9080||reviews.default.svc.cluster.local" not in patched[CLUSTER]
    assert "outbound|9080||reviews.default.svc.cluster.local" not in patched[ENDPOINT]
    assert "static-extra" in patched[CLUSTER]
    assert_consistent(patched, secrets=SECRETS)


def _filter(name: str, namespace: str, *, priority: int = 0, selector: str = "") -> str:
    sel = f"\n  workloadSelector: {{labels: {{{selector}}}}}" if selector else ""
    return f"""
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  priority: {priority}{sel}
  configPatches:
    - applyTo: CLUSTER
      match: {{cluster: {{name: "outbound|9080||reviews.default.svc.cluster.local"}}}}
      patch: {{operation: MERGE, value: {{connect_timeout: {priority + 20}s}}}}
"""


def test_order_is_priority_then_root_namespace_first_and_selectors_narrow():
    docs = [_filter("b", "default"), _filter("a", "default"), _filter("z", "istio-system"),
            _filter("late", "istio-system", priority=5), _filter("early", "default", priority=-3),
            _filter("other", "default", selector="app: reviews"), _filter("elsewhere", "prod")]
    snap = snapshot(SERVICES + "---" + "---".join(docs), workloads=WORKLOADS)
    order = [c.name for c in applicable_envoy_filters(httpbin(), snap)]
    assert order == ["early", "z", "a", "b", "late"]
    name = "outbound|9080||reviews.default.svc.cluster.local"
    assert generate(httpbin(), snap)[CLUSTER][name].connect_timeout.seconds == 25  # the last applied wins


def test_proxy_version_matches_envoy_and_context_matches_the_kind_of_proxy():
    text = """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: versions, namespace: istio-system}
spec:
  configPatches:
    - applyTo: CLUSTER
      match: {context: GATEWAY, proxy: {proxyVersion: '^1\\.40.*'}}
      patch: {operation: MERGE, value: {connect_timeout: 3s}}
    - applyTo: CLUSTER
      match: {context: SIDECAR_OUTBOUND, proxy: {proxyVersion: '^1\\.2[0-9].*'}}
      patch: {operation: MERGE, value: {connect_timeout: 4s}}
"""
    snap, (side, gateway) = _resources(text, httpbin(), router())
    assert {c.connect_timeout.seconds for c in gateway[CLUSTER].values() if c.name.startswith("outbound")} == {3}
    assert 4 not in {c.connect_timeout.seconds for c in side[CLUSTER].values()}


def test_patches_that_cannot_apply_are_skipped_with_a_reason():
    text = """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: bad, namespace: default}
spec:
  configPatches:
    - applyTo: HTTP_FILTER
      match:
        listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager,
                                          subFilter: {name: envoy.filters.http.router}}}}
      patch:
        operation: MERGE
        value:
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            stat_prefix: "x"
            token_bucket: {max_tokens: 3}
    - applyTo: BOOTSTRAP
      patch: {operation: MERGE, value: {}}
    - applyTo: CLUSTER
      match: {proxy: {metadata: {FOO: bar}}}
      patch: {operation: MERGE, value: {connect_timeout: 2s}}
"""
    snap, (patched,) = _resources(text, httpbin())
    report = explain_envoy_filters(httpbin(), snap, _unpatched(httpbin()))
    reasons = "\n".join(str(p) for p in report.problems)
    assert "spec.configPatches[1]: applyTo BOOTSTRAP is not applied" in reasons
    assert "spec.configPatches[2]: match.proxy.metadata is not supported" in reasons
    assert "configPatches[0]" in reasons  # LocalRateLimit does not fit into the router's config
    assert_consistent(patched, secrets=SECRETS)


CONFORMANCE = Path("/work/shared/conformance/istio")


def _conformance_documents() -> list[str]:
    out = []
    for path in sorted(CONFORMANCE.rglob("*.yaml")):
        text = path.read_text(errors="replace")
        if "kind: EnvoyFilter" in text:
            out += [d for d in text.split("\n---") if "kind: EnvoyFilter" in d]
    return out


def _proxies_for(config):
    """A sidecar the EnvoyFilter selects (its namespace, its selector's labels) and a router."""
    namespace = "default" if config.namespace == "istio-system" else config.namespace
    selector = config.spec.workload_selector
    labels = dict(selector.labels) if selector is not None and selector.labels else {"app": "httpbin"}
    return (sidecar("target", namespace=namespace, ip="127.0.0.20", labels=labels,
                    inbound=[(8080, 8080, Protocol.HTTP), (9080, 9080, Protocol.HTTP)]),
            router(namespace=config.namespace, labels={"istio": "ingressgateway", **labels}))


def test_every_conformance_envoy_filter_translates_without_crashing():
    documents = _conformance_documents()
    assert len(documents) >= 11
    applied = translated = 0
    for doc in documents:
        parsed = parse_text(doc, path="conformance.yaml")
        for config in (c for c in parsed.configs if c.kind == "EnvoyFilter"):
            base = snapshot(SERVICES, workloads=WORKLOADS)
            with_filter = MeshSnapshot.build(configs=[*base.configs, config], kube_services=_kube(),
                                             workloads=WORKLOADS, mesh=base.mesh)
            for proxy in _proxies_for(config):
                patched = generate(proxy, with_filter)
                assert_consistent(patched, secrets=SECRETS)
                report = explain_envoy_filters(proxy, with_filter, generate(proxy, base))
                translated += 1
                applied += bool(report.applied)
    print(f"{len(documents)} conformance EnvoyFilter documents: {applied} of {translated} proxy translations "
          "applied at least one patch")
    assert applied >= 10


def _kube():
    parsed = parse_text(SERVICES, path="services.yaml")
    return [k.body for k in parsed.kube if k.kind == "Service"]


def test_an_endpoint_only_push_keeps_patched_clusters():
    """The push path keeps the proxy's patched CDS and sends new assignments only (``regenerate_endpoints``)."""
    from malla.pilot.generate import regenerate_endpoints
    from malla.pilot.shared import endpoints_only_change

    old = snapshot(SERVICES + "---" + CLUSTER_MERGE, workloads=WORKLOADS)
    shared = SharedGeneration(old)
    held = generate(httpbin(), old, shared=shared)
    moved = [WORKLOADS[0], workload("reviews", "127.0.0.22", ports={"http": 9080})]
    new = MeshSnapshot.build(configs=old.configs, kube_services=_kube(), workloads=moved, mesh=old.mesh)
    hosts = endpoints_only_change(old, new)
    assert hosts == {"reviews.default.svc.cluster.local"}
    nxt = shared.carry_over(new, changed_hosts=hosts)
    update = regenerate_endpoints(httpbin(), new, held, hosts, shared=nxt)
    name = "outbound|9080||reviews.default.svc.cluster.local"
    assert update is not None and name in update.upsert
    assert update.apply(held)[CLUSTER][name].connect_timeout.seconds == 7
    assert generate(httpbin(), new, shared=nxt)[CLUSTER][name].connect_timeout.seconds == 7
