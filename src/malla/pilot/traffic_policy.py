"""DestinationRule traffic policy field groups -> Envoy cluster (and tcp_proxy) settings.

One ``translate_*`` per Istio field group, each returning the Envoy message
(or a ``Cluster`` fragment to merge) that group maps to, with Istio's
defaults: LEAST_REQUEST balancing, unlimited circuit breakers that track
what remains, success-rate ejection off, HTTP/2 for http2/grpc ports.
Two groups shape the tcp_proxy in front of a cluster instead (source-IP
hashing and tunnels, applied by ``tcp_proxy_policy``). See
https://istio.io/latest/docs/reference/config/networking/destination-rule/
"""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import base_pb2, protocol_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo
from envoy.type.v3 import hash_policy_pb2, percent_pb2

from malla.pilot.proto_values import MAX_UINT32, duration, uint32, uint64
from malla.pilot.protocol import Protocol

Cluster = cluster_pb2.Cluster
HTTP_PROTOCOL_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_ENVOY_DEFAULT_RING_SIZE = 1024


def translate_load_balancer(lb: Any, *, default: str = "LEAST_REQUEST") -> Cluster:
    """``loadBalancer`` -> a Cluster fragment with lb_policy and its config.

    PASSTHROUGH is not an algorithm: it turns the cluster into ORIGINAL_DST,
    which the caller decides (see :func:`is_passthrough`).
    """
    simple = (lb.simple if lb is not None else None) or "UNSPECIFIED"
    if simple == "UNSPECIFIED":
        simple = default
    out = Cluster()
    slow_start = _slow_start(lb)
    if lb is not None and lb.consistent_hash is not None:
        return _consistent_hash(lb.consistent_hash)
    if simple in ("LEAST_REQUEST", "LEAST_CONN"):
        out.lb_policy = Cluster.LEAST_REQUEST
        if slow_start is not None:
            out.least_request_lb_config.slow_start_config.CopyFrom(slow_start)
    elif simple == "RANDOM":
        out.lb_policy = Cluster.RANDOM
    elif simple == "ROUND_ROBIN":
        out.lb_policy = Cluster.ROUND_ROBIN
        if slow_start is not None:
            out.round_robin_lb_config.slow_start_config.CopyFrom(slow_start)
    elif simple == "PASSTHROUGH":
        out.lb_policy = Cluster.CLUSTER_PROVIDED
    return out


def is_passthrough(lb: Any) -> bool:
    return lb is not None and lb.consistent_hash is None and lb.simple == "PASSTHROUGH"


def _consistent_hash(ch: Any) -> Cluster:
    out = Cluster()
    if ch.maglev is not None:
        out.lb_policy = Cluster.MAGLEV
        if ch.maglev.table_size:
            out.maglev_lb_config.table_size.value = ch.maglev.table_size
        return out
    out.lb_policy = Cluster.RING_HASH
    if ch.ring_hash is not None:
        if ch.ring_hash.minimum_ring_size:
            out.ring_hash_lb_config.minimum_ring_size.CopyFrom(uint64(ch.ring_hash.minimum_ring_size))
    else:
        size = ch.minimum_ring_size or _ENVOY_DEFAULT_RING_SIZE
        out.ring_hash_lb_config.minimum_ring_size.CopyFrom(uint64(size))
    return out


def _slow_start(lb: Any) -> cluster_pb2.Cluster.SlowStartConfig | None:
    if lb is None:
        return None
    if lb.warmup is not None and lb.warmup.duration is not None:
        out = cluster_pb2.Cluster.SlowStartConfig(slow_start_window=duration(lb.warmup.duration))
        if lb.warmup.aggression is not None:
            out.aggression.default_value = lb.warmup.aggression
            out.aggression.runtime_key = "upstream.slow_start.aggression"
        if lb.warmup.minimum_percent is not None:
            out.min_weight_percent.value = lb.warmup.minimum_percent
        return out
    if lb.warmup_duration_secs is not None:
        return cluster_pb2.Cluster.SlowStartConfig(slow_start_window=duration(lb.warmup_duration_secs))
    return None


def translate_hash_policy(lb: Any) -> list[rc.RouteAction.HashPolicy]:
    """``loadBalancer.consistentHash`` -> the hash policy routes to the cluster carry."""
    ch = lb.consistent_hash if lb is not None else None
    if ch is None:
        return []
    policy = rc.RouteAction.HashPolicy()
    if ch.http_header_name:
        policy.header.header_name = ch.http_header_name
    elif ch.http_cookie is not None:
        cookie = policy.cookie
        cookie.name = ch.http_cookie.name or ""
        if ch.http_cookie.path:
            cookie.path = ch.http_cookie.path
        if ch.http_cookie.ttl is not None:
            cookie.ttl.CopyFrom(duration(ch.http_cookie.ttl))
        for attr in ch.http_cookie.attributes:
            cookie.attributes.add(name=attr.name or "", value=attr.value or "")
    elif ch.use_source_ip:
        policy.connection_properties.source_ip = True
    elif ch.http_query_parameter_name:
        policy.query_parameter.name = ch.http_query_parameter_name
    else:
        return []
    return [policy]


def translate_tcp_hash_policy(lb: Any) -> list[hash_policy_pb2.HashPolicy]:
    """``consistentHash.useSourceIp`` -> the hash policy a tcp_proxy carries (TCP has no header or cookie)."""
    ch = lb.consistent_hash if lb is not None else None
    if ch is None or not ch.use_source_ip:
        return []
    policy = hash_policy_pb2.HashPolicy()
    policy.source_ip.SetInParent()
    return [policy]


def translate_tunnel(tunnel: Any) -> tcp_proxy_pb2.TcpProxy.TunnelingConfig | None:
    """``tunnel`` -> tcp_proxy tunneling: the connection becomes an HTTP CONNECT (or POST) to ``HOST:PORT``.

    As in Istio, only TCP traffic is tunneled; the cluster is the tunnel's proxy.
    https://istio.io/latest/docs/reference/config/networking/destination-rule/#TrafficPolicy-TunnelSettings
    """
    if tunnel is None or not tunnel.target_host:
        return None
    host = tunnel.target_host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal in an authority
    return tcp_proxy_pb2.TcpProxy.TunnelingConfig(
        hostname=f"{host}:{tunnel.target_port or 0}", use_post=(tunnel.protocol or "CONNECT").upper() == "POST"
    )


def translate_circuit_breakers(pool: Any, *, retry_budget: Any = None) -> circuit_breaker_pb2.CircuitBreakers:
    """``connectionPool`` limits (and ``retryBudget``) -> one DEFAULT-priority threshold."""
    t = circuit_breaker_pb2.CircuitBreakers.Thresholds(
        max_connections=uint32(MAX_UINT32),
        max_pending_requests=uint32(MAX_UINT32),
        max_requests=uint32(MAX_UINT32),
        max_retries=uint32(MAX_UINT32),
        track_remaining=True,
    )
    http = pool.http if pool is not None else None
    tcp = pool.tcp if pool is not None else None
    if http is not None:
        if (http.http2_max_requests or 0) > 0:
            t.max_requests.value = http.http2_max_requests
        if (http.http1_max_pending_requests or 0) > 0:
            t.max_pending_requests.value = http.http1_max_pending_requests
        if (http.max_retries or 0) > 0:
            t.max_retries.value = http.max_retries
    if tcp is not None and (tcp.max_connections or 0) > 0:
        t.max_connections.value = tcp.max_connections
    if retry_budget is not None:
        if retry_budget.percent is not None:
            t.retry_budget.budget_percent.value = retry_budget.percent
        if retry_budget.min_retry_concurrency is not None:
            t.retry_budget.min_retry_concurrency.value = retry_budget.min_retry_concurrency
    return circuit_breaker_pb2.CircuitBreakers(thresholds=[t])


def translate_tcp_keepalive(tcp: Any, *, mesh_default: bool) -> cluster_pb2.UpstreamConnectionOptions | None:
    keepalive = tcp.tcp_keepalive if tcp is not None else None
    if keepalive is None and not mesh_default:
        return None
    out = cluster_pb2.UpstreamConnectionOptions()
    ka = out.tcp_keepalive
    if keepalive is not None:
        if keepalive.probes:
            ka.keepalive_probes.value = keepalive.probes
        if keepalive.time is not None:
            ka.keepalive_time.value = max(1, keepalive.time.nanos // 1_000_000_000)
        if keepalive.interval is not None:
            ka.keepalive_interval.value = max(1, keepalive.interval.nanos // 1_000_000_000)
    return out


def translate_outlier_detection(od: Any) -> tuple[outlier_detection_pb2.OutlierDetection, int | None]:
    """``outlierDetection`` -> Envoy's, plus the healthy panic threshold (``minHealthPercent``)."""
    out = outlier_detection_pb2.OutlierDetection(enforcing_success_rate=uint32(0))
    errors = od.consecutive_5xx_errors if od.consecutive_5xx_errors is not None else od.consecutive_errors
    if errors is not None:
        out.consecutive_5xx.value = errors
        out.enforcing_consecutive_5xx.value = 100 if errors > 0 else 0
    if od.consecutive_gateway_errors is not None:
        out.consecutive_gateway_failure.value = od.consecutive_gateway_errors
        out.enforcing_consecutive_gateway_failure.value = 100 if od.consecutive_gateway_errors > 0 else 0
    if od.interval is not None:
        out.interval.CopyFrom(duration(od.interval))
    if od.base_ejection_time is not None:
        out.base_ejection_time.CopyFrom(duration(od.base_ejection_time))
    if (od.max_ejection_percent or 0) > 0:
        out.max_ejection_percent.value = od.max_ejection_percent
    if od.split_external_local_origin_errors:
        out.split_external_local_origin_errors = True
        if (od.consecutive_local_origin_failures or 0) > 0:
            out.consecutive_local_origin_failure.value = od.consecutive_local_origin_failures
            out.enforcing_consecutive_local_origin_failure.value = 100
        out.enforcing_local_origin_success_rate.value = 0
    # Istio turns Envoy's 50% panic threshold off unless minHealthPercent says otherwise:
    # with few endpoints per service, panic mode would route to ejected hosts.
    return out, max(0, od.min_health_percent or 0)


def translate_http_protocol_options(
    pool: Any, *, protocol: Protocol, mesh_h2_upgrade: str
) -> hpo.HttpProtocolOptions | None:
    """``connectionPool.http``/``tcp`` timeouts and the upstream HTTP version, or None for plain TCP."""
    http = pool.http if pool is not None else None
    tcp = pool.tcp if pool is not None else None
    out = hpo.HttpProtocolOptions()
    common = protocol_pb2.HttpProtocolOptions()
    idle = (http.idle_timeout if http is not None else None) or (tcp.idle_timeout if tcp is not None else None)
    if idle is not None:
        common.idle_timeout.CopyFrom(duration(idle))
    if http is not None and (http.max_requests_per_connection or 0) > 0:
        common.max_requests_per_connection.value = http.max_requests_per_connection
    if tcp is not None and tcp.max_connection_duration is not None:
        common.max_connection_duration.CopyFrom(duration(tcp.max_connection_duration))
    if common.ByteSize():
        out.common_http_protocol_options.CopyFrom(common)
    h2 = protocol_pb2.Http2ProtocolOptions()
    if http is not None and (http.max_concurrent_streams or 0) > 0:
        h2.max_concurrent_streams.value = http.max_concurrent_streams
    upgrade = (http.h2_upgrade_policy if http is not None else None) or "DEFAULT"
    if upgrade == "DEFAULT":
        upgrade = mesh_h2_upgrade
    if http is not None and http.use_client_protocol:
        out.use_downstream_protocol_config.http_protocol_options.SetInParent()
        out.use_downstream_protocol_config.http2_protocol_options.CopyFrom(h2)
    elif protocol.is_http2 or (protocol is Protocol.HTTP and upgrade == "UPGRADE"):
        out.explicit_http_config.http2_protocol_options.CopyFrom(h2)
    elif not out.ByteSize():
        return None
    else:
        out.explicit_http_config.http_protocol_options.SetInParent()
    return out


def healthy_panic_threshold(value: int) -> cluster_pb2.Cluster.CommonLbConfig:
    return cluster_pb2.Cluster.CommonLbConfig(healthy_panic_threshold=percent_pb2.Percent(value=float(value)))


def cluster_metadata(*, host: str, name: str, namespace: str, port: int, subset: str = "") -> base_pb2.Metadata:
    """``filter_metadata.istio``: which service a cluster is for, as Istio's telemetry reads it."""
    md = base_pb2.Metadata()
    istio = md.filter_metadata["istio"]
    istio.update({"services": [{"host": host, "name": name, "namespace": namespace}], "default_original_port": port})
    if subset:
        istio.update({"subset": subset})
    return md
