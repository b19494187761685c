from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.clusters.dns.v3 import dns_cluster_pb2
from envoy.extensions.transport_sockets.proxy_protocol.v3 import upstream_proxy_protocol_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo

from malla.pilot.clusters import build_clusters
from malla.pilot.protocol import Protocol
from malla.pilot.snapshot import CaptureMode, MeshConfig
from malla.pilot.traffic_policy import HTTP_PROTOCOL_OPTIONS_KEY

from tests.pilot.mesh import sidecar, snapshot, workload

Cluster = cluster_pb2.Cluster
REVIEWS = """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}, {name: grpc, port: 9090}]}
"""
HOST = "reviews.default.svc.cluster.local"


def clusters(text="", *, proxy=None, mesh=None, workloads=()):
    snap = snapshot(REVIEWS + text, mesh=mesh, workloads=workloads)
    return {c.name: c for c in build_clusters(proxy or sidecar(), snap)}


def with_rule(policy):
    return clusters(
        f"""
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews}}
spec:
  host: reviews
{policy}"""
    )


def http_options(cluster):
    out = hpo.HttpProtocolOptions()
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS_KEY].Unpack(out)
    return out


def test_istio_defaults_for_a_service_without_rules():
    out = clusters()
    c = out[f"outbound|9080||{HOST}"]
    assert c.type == Cluster.EDS and c.eds_cluster_config.service_name == c.name
    assert c.eds_cluster_config.eds_config.HasField("ads")
    assert c.lb_policy == Cluster.LEAST_REQUEST
    assert c.connect_timeout.seconds == 10
    t = c.circuit_breakers.thresholds[0]
    assert (t.max_connections.value, t.max_requests.value, t.track_remaining) == (2**32 - 1, 2**32 - 1, True)
    assert [m.name for m in c.transport_socket_matches] == ["tlsMode-istio", "tlsMode-disabled"]
    assert not c.HasField("outlier_detection")
    grpc = out[f"outbound|9090||{HOST}"]
    assert http_options(grpc).explicit_http_config.HasField("http2_protocol_options")
    assert HTTP_PROTOCOL_OPTIONS_KEY not in c.typed_extension_protocol_options
    assert {"BlackHoleCluster", "PassthroughCluster"} <= set(out)


def test_subsets_get_their_own_clusters_with_merged_policy():
    out = with_rule(
        """  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {simple: RANDOM}}
"""
    )
    assert out[f"outbound|9080||{HOST}"].lb_policy == Cluster.ROUND_ROBIN
    assert out[f"outbound|9080|v1|{HOST}"].lb_policy == Cluster.ROUND_ROBIN
    assert out[f"outbound|9080|v2|{HOST}"].lb_policy == Cluster.RANDOM
    assert f"outbound|9090|v2|{HOST}" in out


def test_consistent_hash_uses_ring_hash_or_maglev():
    ring = with_rule(
        "  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 4096}}}}\n"
    )
    c = ring[f"outbound|9080||{HOST}"]
    assert c.lb_policy == Cluster.RING_HASH and c.ring_hash_lb_config.minimum_ring_size.value == 4096
    old = with_rule("  trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true}}}\n")
    assert old[f"outbound|9080||{HOST}"].ring_hash_lb_config.minimum_ring_size.value == 1024
    maglev = with_rule(
        "  trafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: c, ttl: 10s}, maglev: {tableSize: 65537}}}}\n"
    )
    m = maglev[f"outbound|9080||{HOST}"]
    assert m.lb_policy == Cluster.MAGLEV and m.maglev_lb_config.table_size.value == 65537


def test_warmup_becomes_slow_start():
    out = with_rule(
        "  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN, warmup: {duration: 30s, aggression: 2, minimumPercent: 10}}}\n"
    )
    slow = out[f"outbound|9080||{HOST}"].round_robin_lb_config.slow_start_config
    assert (
        slow.slow_start_window.seconds == 30
        and slow.aggression.default_value == 2
        and slow.min_weight_percent.value == 10
    )
    legacy = with_rule("  trafficPolicy: {loadBalancer: {warmupDurationSecs: 5s}}\n")
    assert legacy[f"outbound|9080||{HOST}"].least_request_lb_config.slow_start_config.slow_start_window.seconds == 5


def test_connection_pool_settings():
    out = with_rule(
        """  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 7, connectTimeout: 250ms, tcpKeepalive: {probes: 3, time: 60s, interval: 5s}, maxConnectionDuration: 1h}
      http: {http1MaxPendingRequests: 8, http2MaxRequests: 9, maxRequestsPerConnection: 1, maxRetries: 4, idleTimeout: 30s, h2UpgradePolicy: UPGRADE}
"""
    )
    c = out[f"outbound|9080||{HOST}"]
    t = c.circuit_breakers.thresholds[0]
    assert (t.max_connections.value, t.max_pending_requests.value, t.max_requests.value, t.max_retries.value) == (
        7,
        8,
        9,
        4,
    )
    assert c.connect_timeout.ToMilliseconds() == 250
    ka = c.upstream_connection_options.tcp_keepalive
    assert (ka.keepalive_probes.value, ka.keepalive_time.value, ka.keepalive_interval.value) == (3, 60, 5)
    opts = http_options(c)
    common = opts.common_http_protocol_options
    assert (
        common.idle_timeout.seconds,
        common.max_requests_per_connection.value,
        common.max_connection_duration.seconds,
    ) == (30, 1, 3600)
    assert opts.explicit_http_config.HasField("http2_protocol_options")  # h2UpgradePolicy: UPGRADE


def test_use_client_protocol():
    out = with_rule("  trafficPolicy: {connectionPool: {http: {useClientProtocol: true}}}\n")
    assert http_options(out[f"outbound|9080||{HOST}"]).HasField("use_downstream_protocol_config")


def test_outlier_detection_turns_panic_mode_off():
    out = with_rule(
        "  trafficPolicy: {outlierDetection: {consecutive5xxErrors: 5, consecutiveGatewayErrors: 2, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}}\n"
    )
    c = out[f"outbound|9080||{HOST}"]
    od = c.outlier_detection
    assert (od.consecutive_5xx.value, od.enforcing_consecutive_5xx.value) == (5, 100)
    assert (od.consecutive_gateway_failure.value, od.enforcing_consecutive_gateway_failure.value) == (2, 100)
    assert od.enforcing_success_rate.value == 0 and od.max_ejection_percent.value == 50
    assert od.interval.seconds == 10 and od.base_ejection_time.seconds == 30
    assert (
        c.common_lb_config.HasField("healthy_panic_threshold") and c.common_lb_config.healthy_panic_threshold.value == 0
    )


def test_port_level_settings_apply_only_to_their_port():
    out = with_rule(
        "  trafficPolicy:\n    portLevelSettings:\n    - port: {number: 9090}\n      loadBalancer: {simple: RANDOM}\n"
    )
    assert out[f"outbound|9090||{HOST}"].lb_policy == Cluster.RANDOM
    assert out[f"outbound|9080||{HOST}"].lb_policy == Cluster.LEAST_REQUEST


def test_retry_budget():
    out = with_rule("  trafficPolicy: {retryBudget: {percent: 20, minRetryConcurrency: 3}}\n")
    budget = out[f"outbound|9080||{HOST}"].circuit_breakers.thresholds[0].retry_budget
    assert budget.budget_percent.value == 20 and budget.min_retry_concurrency.value == 3


def test_proxy_protocol_wraps_the_transport_socket():
    out = with_rule("  trafficPolicy: {proxyProtocol: {version: V2}, tls: {mode: ISTIO_MUTUAL}}\n")
    socket = out[f"outbound|9080||{HOST}"].transport_socket
    wrapper = upstream_proxy_protocol_pb2.ProxyProtocolUpstreamTransport()
    socket.typed_config.Unpack(wrapper)
    assert socket.name == "envoy.transport_sockets.upstream_proxy_protocol"
    assert wrapper.config.version == wrapper.config.V2
    assert wrapper.transport_socket.name == "envoy.transport_sockets.tls"
    auto = with_rule("  trafficPolicy: {proxyProtocol: {version: V1}}\n")
    names = [m.transport_socket.name for m in auto[f"outbound|9080||{HOST}"].transport_socket_matches]
    assert names == ["envoy.transport_sockets.upstream_proxy_protocol"] * 2


def test_istio_mutual_tls_from_a_rule():
    out = with_rule("  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\n  subsets: [{name: v1, labels: {version: v1}}]\n")
    ctx = tls_pb2.UpstreamTlsContext()
    out[f"outbound|9080|v1|{HOST}"].transport_socket.typed_config.Unpack(ctx)
    assert ctx.sni == f"outbound_.9080_.v1_.{HOST}"
    assert [s.name for s in ctx.common_tls_context.tls_certificate_sds_secret_configs] == ["default"]
    assert ctx.common_tls_context.combined_validation_context.validation_context_sds_secret_config.name == "ROOTCA"
    assert not out[f"outbound|9080|v1|{HOST}"].transport_socket_matches


def test_simple_tls_origination_and_disable():
    simple = with_rule(
        "  trafficPolicy: {tls: {mode: SIMPLE, sni: reviews.example.com, caCertificates: /etc/ca.pem}}\n"
    )
    ctx = tls_pb2.UpstreamTlsContext()
    simple[f"outbound|9080||{HOST}"].transport_socket.typed_config.Unpack(ctx)
    assert ctx.sni == "reviews.example.com"
    assert ctx.common_tls_context.validation_context.trusted_ca.filename == "/etc/ca.pem"
    mutual = with_rule("  trafficPolicy: {tls: {mode: MUTUAL, credentialName: client-cred}}\n")
    mutual[f"outbound|9080||{HOST}"].transport_socket.typed_config.Unpack(ctx)
    assert [s.name for s in ctx.common_tls_context.tls_certificate_sds_secret_configs] == ["kubernetes://client-cred"]
    off = with_rule("  trafficPolicy: {tls: {mode: DISABLE}}\n")
    c = off[f"outbound|9080||{HOST}"]
    assert not c.HasField("transport_socket") and not c.transport_socket_matches


def test_auto_mtls_can_be_turned_off_and_skips_external_services():
    out = clusters(mesh=MeshConfig(enable_auto_mtls=False))
    assert not out[f"outbound|9080||{HOST}"].transport_socket_matches
    ext = clusters(
        """
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec: {hosts: [api.example.com], resolution: DNS, ports: [{number: 80, name: http}]}
"""
    )
    assert not ext["outbound|80||api.example.com"].transport_socket_matches


def test_dns_service_entries():
    out = clusters(
        """
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec: {hosts: [api.example.com], resolution: DNS, ports: [{number: 80, name: http}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: rr}
spec: {hosts: [rr.example.com], resolution: DNS_ROUND_ROBIN, ports: [{number: 80, name: http}]}
"""
    )
    strict = out["outbound|80||api.example.com"]
    assert strict.cluster_type.name == "envoy.clusters.dns"
    config = dns_cluster_pb2.DnsCluster()
    strict.cluster_type.typed_config.Unpack(config)
    assert not config.all_addresses_in_single_endpoint and config.dns_refresh_rate.seconds == 60
    address = strict.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (address.address, address.port_value) == ("api.example.com", 80)
    out["outbound|80||rr.example.com"].cluster_type.typed_config.Unpack(config)
    assert config.all_addresses_in_single_endpoint  # LOGICAL_DNS


PASSTHROUGH_SE = """
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: any}
spec: {hosts: ["*.example.com"], resolution: NONE, ports: [{number: 80, name: http}, {number: 5432, name: tcp}]}
"""


def test_passthrough_services_in_explicit_and_transparent_capture():
    explicit = clusters(PASSTHROUGH_SE)
    assert explicit["outbound|80||*.example.com"].cluster_type.name == "envoy.clusters.dynamic_forward_proxy"
    assert "outbound|5432||*.example.com" not in explicit  # no way to know where a TCP connection goes
    assert explicit["PassthroughCluster"].cluster_type.name == "envoy.clusters.dynamic_forward_proxy"
    transparent = clusters(PASSTHROUGH_SE, proxy=sidecar(capture=CaptureMode.TRANSPARENT))
    for name in (
        "outbound|80||*.example.com",
        "outbound|5432||*.example.com",
        "PassthroughCluster",
        "InboundPassthroughCluster",
    ):
        assert (
            transparent[name].type == Cluster.ORIGINAL_DST and transparent[name].lb_policy == Cluster.CLUSTER_PROVIDED
        )


def test_inbound_clusters_send_to_the_app():
    proxy = sidecar("reviews", ip="127.0.0.11", inbound=[(9080, 19080, Protocol.HTTP), (9090, 19090, Protocol.GRPC)])
    out = clusters(proxy=proxy)
    c = out["inbound|9080||"]
    assert c.type == Cluster.STATIC
    address = c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (address.address, address.port_value) == ("127.0.0.1", 19080)
    assert http_options(out["inbound|9090||"]).explicit_http_config.HasField("http2_protocol_options")


def test_sidecar_egress_scopes_clusters():
    out = clusters(
        """
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: other}
spec: {hosts: [api.example.com], resolution: DNS, ports: [{number: 80, name: http}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress: [{hosts: ["./*"]}]
"""
    )
    assert f"outbound|9080||{HOST}" in out
    assert "outbound|80||api.example.com" not in out


def test_clusters_are_sorted_and_deterministic():
    first = [
        c.SerializeToString(deterministic=True)
        for c in clusters(workloads=[workload("reviews-v1", "127.0.0.3")]).values()
    ]
    second = [
        c.SerializeToString(deterministic=True)
        for c in clusters(workloads=[workload("reviews-v1", "127.0.0.3")]).values()
    ]
    assert first == second
    names = list(clusters())
    assert names == sorted(names)
