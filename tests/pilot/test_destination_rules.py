from malla.pilot.destination_rules import destination_rule_for, host_matches, resolve_host

from tests.pilot.mesh import snapshot

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
"""


def rule_for(text, *, proxy_namespace="default", labels=None):
    snap = snapshot(SERVICES + text)
    svc = snap.registry.lookup("reviews.bookinfo", namespace=proxy_namespace)
    return destination_rule_for(
        snap.configs_of("DestinationRule"),
        svc,
        proxy_namespace=proxy_namespace,
        proxy_labels=labels or {},
        root_namespace="istio-system",
        domain="cluster.local",
    )


def dr(name, namespace, host, extra=""):
    return f"""
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  host: {host}
{extra}"""


def test_lookup_order_proxy_namespace_then_service_then_root():
    root = dr("root", "istio-system", "reviews.bookinfo.svc.cluster.local")
    svc = dr("svc", "bookinfo", "reviews")
    own = dr("own", "default", "reviews.bookinfo.svc.cluster.local")
    assert rule_for(root + svc + own).sources == ("DestinationRule default/own",)
    assert rule_for(root + svc).sources == ("DestinationRule bookinfo/svc",)
    assert rule_for(root).sources == ("DestinationRule istio-system/root",)
    assert rule_for("") is None


def test_short_host_is_relative_to_the_rule_namespace():
    # "reviews" in namespace default means reviews.default..., not the bookinfo service.
    assert rule_for(dr("own", "default", "reviews")) is None


def test_workload_selector_rules_win_for_the_workloads_they_select():
    plain = dr("plain", "default", "reviews.bookinfo.svc.cluster.local")
    selected = dr(
        "selected",
        "default",
        "reviews.bookinfo.svc.cluster.local",
        "  workloadSelector: {matchLabels: {app: client}}\n",
    )
    assert rule_for(plain + selected, labels={"app": "client"}).sources == ("DestinationRule default/selected",)
    assert rule_for(plain + selected, labels={"app": "other"}).sources == ("DestinationRule default/plain",)


def test_exact_host_beats_wildcard_and_same_host_rules_merge():
    wild = dr("wild", "bookinfo", "'*.bookinfo.svc.cluster.local'", "  subsets: [{name: w, labels: {v: w}}]\n")
    a = dr("a", "bookinfo", "reviews", "  subsets: [{name: v1, labels: {version: v1}}]\n")
    b = dr(
        "b",
        "bookinfo",
        "reviews",
        "  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n  subsets: [{name: v1, labels: {version: x}}, {name: v2, labels: {version: v2}}]\n",
    )
    merged = rule_for(wild + a + b)
    assert merged.sources == ("DestinationRule bookinfo/a", "DestinationRule bookinfo/b")
    assert [(s.name, s.labels) for s in merged.subsets] == [("v1", {"version": "v1"}), ("v2", {"version": "v2"})]
    assert merged.traffic_policy.load_balancer.simple == "RANDOM"


def test_export_to_dot_keeps_a_rule_in_its_namespace():
    private = dr("svc", "bookinfo", "reviews", "  exportTo: ['.']\n")
    assert rule_for(private, proxy_namespace="default") is None
    assert rule_for(private, proxy_namespace="bookinfo") is not None


def test_policy_merging_for_port_and_subset_follows_istio():
    extra = """  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: 10}}
    outlierDetection: {consecutive5xxErrors: 3}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {simple: RANDOM}
  subsets:
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      connectionPool: {tcp: {maxConnections: 99}}
"""
    rule = rule_for(dr("r", "bookinfo", "reviews", extra))
    top = rule.policy(port=9080)
    # Port-level settings replace load balancer, connection pool, outlier detection and TLS wholesale.
    assert top.load_balancer.simple == "RANDOM"
    assert top.connection_pool is None and top.outlier_detection is None
    other_port = rule.policy(port=9999)
    assert other_port.load_balancer.simple == "ROUND_ROBIN" and other_port.connection_pool.tcp.max_connections == 10
    v2 = rule.policy(port=9999, subset="v2")
    assert v2.connection_pool.tcp.max_connections == 99
    assert v2.load_balancer.simple == "ROUND_ROBIN"  # inherited from the top level


def test_host_matching():
    assert host_matches("*.example.com", "a.b.example.com")
    assert not host_matches("*.example.com", "example.com")
    assert host_matches("*", "anything")
    assert resolve_host("reviews", namespace="ns", domain="cluster.local") == "reviews.ns.svc.cluster.local"
    assert resolve_host("reviews.ns", namespace="x", domain="cluster.local") == "reviews.ns"
