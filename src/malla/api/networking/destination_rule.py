"""DestinationRule (networking.istio.io v1, v1beta1, v1alpha3) and its messages.

Field for field the ``istio.networking.v1alpha3.DestinationRule`` proto:
traffic policies (load balancing, connection pools, outlier detection,
client TLS, tunnelling, PROXY protocol, retry budgets), per-port
overrides and subsets.

Shared with other kinds and imported from here: ``ConnectionPoolSettings``
(Sidecar), ``ClientTLSSettings`` and ``WorkloadSelector`` (the networking
selector with ``labels``, used by Sidecar and ServiceEntry).
``MatchLabelsSelector`` is ``istio.type.v1beta1.WorkloadSelector`` (with
``matchLabels``), the one DestinationRule itself uses.
"""

from __future__ import annotations

from pydantic import Field

from malla.api.base import Bool, Double, Duration, Int32, IstioModel, Str, UInt32, UInt64, proto_enum
from malla.api.networking.virtual_service import PortSelector


class WorkloadSelector(IstioModel):
    """istio.networking.v1alpha3.WorkloadSelector: workloads by their labels."""

    labels: dict[str, Str] = Field(default_factory=dict)


class MatchLabelsSelector(IstioModel):
    """istio.type.v1beta1.WorkloadSelector: workloads by ``matchLabels``."""

    match_labels: dict[str, Str] = Field(default_factory=dict)


# --- Load balancing -------------------------------------------------------------


class HTTPCookieAttribute(IstioModel):
    name: Str | None = None
    value: Str | None = None


class HTTPCookie(IstioModel):
    name: Str | None = None
    path: Str | None = None
    ttl: Duration | None = None
    attributes: list[HTTPCookieAttribute] = Field(default_factory=list)


class RingHash(IstioModel):
    minimum_ring_size: UInt64 | None = None


class MagLev(IstioModel):
    table_size: UInt64 | None = None


class ConsistentHashLB(IstioModel):
    # oneof hash_key
    http_header_name: Str | None = None
    http_cookie: HTTPCookie | None = None
    use_source_ip: Bool | None = None
    http_query_parameter_name: Str | None = None
    # oneof hash_algorithm
    ring_hash: RingHash | None = None
    maglev: MagLev | None = None
    minimum_ring_size: UInt64 | None = None  # deprecated: ringHash.minimumRingSize


class LocalityDistribute(IstioModel):
    """LocalityLoadBalancerSetting.Distribute."""

    from_: Str | None = Field(default=None, alias="from")
    to: dict[str, UInt32] = Field(default_factory=dict)


class LocalityFailover(IstioModel):
    """LocalityLoadBalancerSetting.Failover."""

    from_: Str | None = Field(default=None, alias="from")
    to: Str | None = None


class LocalityLoadBalancerSetting(IstioModel):
    distribute: list[LocalityDistribute] = Field(default_factory=list)
    failover: list[LocalityFailover] = Field(default_factory=list)
    failover_priority: list[Str] = Field(default_factory=list)
    enabled: Bool | None = None


class WarmupConfiguration(IstioModel):
    duration: Duration | None = None
    minimum_percent: Double | None = None
    aggression: Double | None = None


SimpleLB = proto_enum("UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST")


class LoadBalancerSettings(IstioModel):
    # oneof lb_policy
    simple: SimpleLB | None = None
    consistent_hash: ConsistentHashLB | None = None
    locality_lb_setting: LocalityLoadBalancerSetting | None = None
    warmup_duration_secs: Duration | None = None
    warmup: WarmupConfiguration | None = None


# --- Connection pools -----------------------------------------------------------


class TcpKeepalive(IstioModel):
    """ConnectionPoolSettings.TCPSettings.TcpKeepalive."""

    probes: UInt32 | None = None
    time: Duration | None = None
    interval: Duration | None = None


class TCPSettings(IstioModel):
    max_connections: Int32 | None = None
    connect_timeout: Duration | None = None
    tcp_keepalive: TcpKeepalive | None = None
    max_connection_duration: Duration | None = None
    idle_timeout: Duration | None = None


class HTTPSettings(IstioModel):
    http1_max_pending_requests: Int32 | None = None
    http2_max_requests: Int32 | None = None
    max_requests_per_connection: Int32 | None = None
    max_retries: Int32 | None = None
    idle_timeout: Duration | None = None
    h2_upgrade_policy: proto_enum("DEFAULT", "DO_NOT_UPGRADE", "UPGRADE") | None = None
    use_client_protocol: Bool | None = None
    max_concurrent_streams: Int32 | None = None


class ConnectionPoolSettings(IstioModel):
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


# --- Outlier detection, TLS, tunnelling --------------------------------------------


class OutlierDetection(IstioModel):
    consecutive_errors: Int32 | None = None  # deprecated
    split_external_local_origin_errors: Bool | None = None
    consecutive_local_origin_failures: UInt32 | None = None
    consecutive_gateway_errors: UInt32 | None = None
    # protoc spells this "consecutive5xxErrors"; the generic camelCase rule would not.
    consecutive_5xx_errors: UInt32 | None = Field(default=None, alias="consecutive5xxErrors")
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: Int32 | None = None
    min_health_percent: Int32 | None = None


class ClientTLSSettings(IstioModel):
    mode: proto_enum("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL") | None = None
    client_certificate: Str | None = None
    private_key: Str | None = None
    ca_certificates: Str | None = None
    credential_name: Str | None = None
    subject_alt_names: list[Str] = Field(default_factory=list)
    sni: Str | None = None
    insecure_skip_verify: Bool | None = None
    ca_crl: Str | None = None


class TunnelSettings(IstioModel):
    """TrafficPolicy.TunnelSettings."""

    protocol: Str | None = None
    target_host: Str | None = None
    target_port: UInt32 | None = None


class ProxyProtocol(IstioModel):
    """TrafficPolicy.ProxyProtocol."""

    version: proto_enum("V1", "V2") | None = None


class RetryBudget(IstioModel):
    """TrafficPolicy.RetryBudget."""

    percent: Double | None = None
    min_retry_concurrency: UInt32 | None = None


class PortTrafficPolicy(IstioModel):
    """TrafficPolicy.PortTrafficPolicy."""

    port: PortSelector | None = None
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


class TrafficPolicy(IstioModel):
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    port_level_settings: list[PortTrafficPolicy] = Field(default_factory=list)
    tunnel: TunnelSettings | None = None
    proxy_protocol: ProxyProtocol | None = None
    retry_budget: RetryBudget | None = None


class Subset(IstioModel):
    name: Str | None = None
    labels: dict[str, Str] = Field(default_factory=dict)
    traffic_policy: TrafficPolicy | None = None


class DestinationRule(IstioModel):
    """The spec of a DestinationRule."""

    host: Str | None = None
    traffic_policy: TrafficPolicy | None = None
    subsets: list[Subset] = Field(default_factory=list)
    export_to: list[Str] = Field(default_factory=list)
    workload_selector: MatchLabelsSelector | None = None
