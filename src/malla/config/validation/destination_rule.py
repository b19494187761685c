"""Semantic rules for DestinationRule, as Istio's validation webhook applies them.

Traffic policies (load balancing, connection pools, outlier detection,
client TLS, tunnels, retry budgets), subsets, exportTo and the workload
selector. ``check_connection_pool`` checks the ConnectionPoolSettings
message this kind defines, which Sidecar listeners use too.
"""

from __future__ import annotations

import math

from malla.api.base import Duration
from malla.api.networking.destination_rule import (
    ClientTLSSettings,
    ConnectionPoolSettings,
    ConsistentHashLB,
    DestinationRule,
    LoadBalancerSettings,
    LocalityLoadBalancerSetting,
    OutlierDetection,
    PortTrafficPolicy,
    TrafficPolicy,
    TunnelSettings,
)
from malla.config.validation import Findings, ValidationContext
from malla.config.validation.common import check_duration, check_export_to, check_percent, is_ip, join
from malla.config.validation.common_hosts import check_fqdn, check_subset_name, check_wildcard_domain
from malla.config.validation.common_ports import check_port
from malla.config.validation.common_selectors import check_labels, check_workload_selector

_MAGLEV_MAX = 5_000_011  # Envoy's upper bound (exclusive) for the Maglev table size
_TOPOLOGY_LABELS = ("topology.kubernetes.io/region", "topology.kubernetes.io/zone", "topology.istio.io/subzone")
_CONFIGMAP_PREFIX = "configmap://"


# --- Connection pools and outlier detection -----------------------------------------------


def _check_durations(f: Findings, path: str, *pairs: tuple[str, Duration | None]) -> None:
    for name, value in pairs:
        if error := check_duration(value, name):
            f.error(join(path, name), error)


def _check_non_negative(f: Findings, path: str, *pairs: tuple[str, int | None]) -> None:
    for name, value in pairs:
        if value is not None and value < 0:
            f.error(join(path, name), f"{name} must not be negative, got {value}")


def check_connection_pool(f: Findings, path: str, pool: ConnectionPoolSettings | None) -> None:
    if pool is None:
        return
    if pool.http is None and pool.tcp is None:
        f.error(path, "a connection pool needs at least one of tcp or http")
        return
    if (http := pool.http) is not None:
        where = join(path, "http")
        _check_non_negative(
            f, where, ("http1MaxPendingRequests", http.http1_max_pending_requests),
            ("http2MaxRequests", http.http2_max_requests),
            ("maxRequestsPerConnection", http.max_requests_per_connection),
            ("maxRetries", http.max_retries), ("maxConcurrentStreams", http.max_concurrent_streams),
        )  # fmt: skip
        _check_durations(f, where, ("idleTimeout", http.idle_timeout))
        if http.h2_upgrade_policy == "UPGRADE" and http.use_client_protocol:
            f.error(
                join(where, "useClientProtocol"),
                "useClientProtocol cannot be true when h2UpgradePolicy is UPGRADE",
            )
    if (tcp := pool.tcp) is not None:
        where = join(path, "tcp")
        _check_non_negative(f, where, ("maxConnections", tcp.max_connections))
        _check_durations(
            f, where, ("connectTimeout", tcp.connect_timeout), ("maxConnectionDuration", tcp.max_connection_duration)
        )
        if tcp.idle_timeout is not None and tcp.idle_timeout.nanos != 0:  # 0s disables the timeout
            _check_durations(f, where, ("idleTimeout", tcp.idle_timeout))
        if (ka := tcp.tcp_keepalive) is not None:
            _check_durations(f, join(where, "tcpKeepalive"), ("time", ka.time), ("interval", ka.interval))


def _check_outlier(f: Findings, path: str, od: OutlierDetection | None) -> None:
    if od is None:
        return
    _check_durations(f, path, ("baseEjectionTime", od.base_ejection_time), ("interval", od.interval))
    if od.consecutive_errors:
        f.warning(
            join(path, "consecutiveErrors"),
            "consecutiveErrors is deprecated: use consecutiveGatewayErrors or consecutive5xxErrors",
        )
    if not od.split_external_local_origin_errors and (od.consecutive_local_origin_failures or 0) > 0:
        f.error(
            join(path, "consecutiveLocalOriginFailures"),
            "consecutiveLocalOriginFailures needs splitExternalLocalOriginErrors: true",
        )
    for name, value in (("maxEjectionPercent", od.max_ejection_percent), ("minHealthPercent", od.min_health_percent)):
        if error := check_percent(value, name):
            f.error(join(path, name), error)


# --- Load balancing ----------------------------------------------------------------------


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n < 4:
        return True
    if n % 2 == 0:
        return False
    return all(n % k for k in range(3, math.isqrt(n) + 1, 2))


def _check_consistent_hash(f: Findings, path: str, ch: ConsistentHashLB) -> None:
    keys = [ch.http_header_name is not None, ch.http_cookie is not None, ch.use_source_ip is not None,
            ch.http_query_parameter_name is not None]  # fmt: skip
    if sum(keys) > 1:
        f.error(path, "set only one hash key: httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName")
    elif not any(keys):
        f.warning(
            path,
            "no hash key set: give one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName",
        )
    if ch.http_cookie is not None:
        if not ch.http_cookie.name:
            f.error(join(path, "httpCookie", "name"), "the cookie name is required")
        for i, attribute in enumerate(ch.http_cookie.attributes):
            if not attribute.name:
                f.error(join(path, "httpCookie", "attributes", i, "name"), "a cookie attribute needs a name")
    if ch.ring_hash is not None and ch.maglev is not None:
        f.error(path, "set only one hash algorithm: ringHash or maglev")
    if ch.minimum_ring_size:
        f.warning(join(path, "minimumRingSize"), "minimumRingSize is deprecated: use ringHash.minimumRingSize")
        if ch.ring_hash is not None or ch.maglev is not None:
            f.error(join(path, "minimumRingSize"), "set only one of minimumRingSize and ringHash/maglev")
    if ch.maglev is not None:
        size = ch.maglev.table_size or 0
        where = join(path, "maglev", "tableSize")
        if size == 0:
            f.error(where, "tableSize must be set for maglev, to a prime number such as 65537")
        elif size >= _MAGLEV_MAX:
            f.error(where, f"tableSize must be less than {_MAGLEV_MAX}, got {size}")
        elif not _is_prime(size):
            f.error(where, f"tableSize must be a prime number (such as 65537), got {size}")


def _locality_parts(locality: str) -> list[str] | None:
    parts = locality.split("/", 2)
    return None if any(not p for p in parts) else parts


def _check_localities(f: Findings, path: str, localities: list[str]) -> None:
    seen: list[list[str]] = []
    for locality in localities:
        stars = locality.count("*")
        if stars > 1 or (stars == 1 and not locality.endswith("*")):
            f.error(path, f"locality {locality!r}: a wildcard '*' may appear once, at the end")
            return
        parts = _locality_parts(locality)
        if parts is None:
            f.error(path, f"locality {locality!r} must not have an empty region, zone or subzone")
            return
        for other in seen:
            if all(a == b or "*" in (a, b) for a, b in zip(parts, other, strict=False)):
                f.error(path, f"locality {locality!r} overlaps one given before it")
                return
        seen.append(parts)


def _check_locality_lb(
    f: Findings, path: str, lb: LocalityLoadBalancerSetting, outlier: OutlierDetection | None
) -> None:
    if lb.distribute and lb.failover:
        f.error(path, "set only one of distribute and failover")
        return
    if lb.failover and any(label in _TOPOLOGY_LABELS for label in lb.failover_priority):
        f.error(
            join(path, "failoverPriority"),
            "with failover set, failoverPriority cannot use the region, zone or subzone topology labels",
        )
        return
    for i, rule in enumerate(lb.distribute):
        where = join(path, "distribute", i)
        if any(not 1 <= w <= 100 for w in rule.to.values()):
            f.error(join(where, "to"), "each locality weight must be between 1 and 100")
            return
        if sum(rule.to.values()) != 100:
            f.error(join(where, "to"), f"locality weights must sum to 100, got {sum(rule.to.values())}")
            return
        _check_localities(f, join(where, "to"), list(rule.to))
    _check_localities(f, join(path, "distribute"), [rule.from_ or "" for rule in lb.distribute])
    if (lb.failover or lb.failover_priority) and outlier is None:
        f.warning(path, "failover only happens with outlierDetection configured: add an outlierDetection policy")
    for i, rule in enumerate(lb.failover):
        where = join(path, "failover", i)
        if rule.from_ == rule.to:
            f.error(where, "failover from and to must be different regions")
        if "/" in (rule.from_ or "") or "/" in (rule.to or ""):
            f.error(where, "failover takes regions only, without zone or subzone")
        if "*" in (rule.from_ or "") or "*" in (rule.to or ""):
            f.error(where, "failover regions cannot contain the '*' wildcard")


def _check_load_balancer(
    f: Findings, path: str, lb: LoadBalancerSettings | None, outlier: OutlierDetection | None
) -> None:
    if lb is None:
        return
    if lb.simple is not None and lb.consistent_hash is not None:
        f.error(path, "set only one of simple and consistentHash")
    if lb.consistent_hash is not None:
        _check_consistent_hash(f, join(path, "consistentHash"), lb.consistent_hash)
    if lb.locality_lb_setting is not None:
        _check_locality_lb(f, join(path, "localityLbSetting"), lb.locality_lb_setting, outlier)
    _check_durations(f, path, ("warmupDurationSecs", lb.warmup_duration_secs))
    if lb.warmup is None:
        return
    if lb.warmup_duration_secs is not None:
        f.error(path, "set only one of warmupDurationSecs and warmup")
    where = join(path, "warmup")
    if lb.warmup.duration is None:
        f.error(join(where, "duration"), "warmup.duration is required")
    _check_durations(f, where, ("duration", lb.warmup.duration))
    if error := check_percent(lb.warmup.minimum_percent, "minimumPercent"):
        f.error(join(where, "minimumPercent"), error)
    if lb.warmup.aggression is not None and lb.warmup.aggression < 1:
        f.error(join(where, "aggression"), f"aggression must be at least 1, got {lb.warmup.aggression}")


# --- TLS, tunnels and the policy itself ----------------------------------------------


def _check_configmap_credential(f: Findings, path: str, name: str, namespace: str) -> None:
    parts = name[len(_CONFIGMAP_PREFIX):].split("/")
    if len(parts) > 2 or not all(parts):
        f.error(
            path,
            f"invalid configmap:// credentialName {name!r}: use configmap://<name> or configmap://<namespace>/<name>",
        )
    elif len(parts) == 2 and parts[0] != namespace:
        f.error(path, f"a configmap:// credentialName must be in this resource's namespace {namespace!r}")


def check_client_tls(f: Findings, path: str, tls: ClientTLSSettings | None, *, namespace: str) -> None:
    if tls is None:
        return
    if tls.credential_name and tls.credential_name.startswith(_CONFIGMAP_PREFIX):
        _check_configmap_credential(f, join(path, "credentialName"), tls.credential_name, namespace)
    if tls.insecure_skip_verify:
        if tls.mode == "SIMPLE" and (tls.ca_certificates or tls.credential_name or tls.subject_alt_names):
            f.error(path, "with insecureSkipVerify: true, do not set caCertificates, credentialName or subjectAltNames")
        if tls.mode == "MUTUAL" and (tls.ca_certificates or tls.subject_alt_names):
            f.error(path, "with insecureSkipVerify: true, do not set caCertificates or subjectAltNames")
    if tls.mode in ("SIMPLE", "MUTUAL") and tls.credential_name:
        if tls.client_certificate or tls.ca_certificates or tls.private_key or tls.ca_crl:
            f.error(path, "with credentialName set, do not set clientCertificate, privateKey, caCertificates or caCrl")
        return
    if tls.mode == "MUTUAL":
        if not tls.client_certificate:
            f.error(join(path, "clientCertificate"), "MUTUAL TLS requires clientCertificate (or credentialName)")
        if not tls.private_key:
            f.error(join(path, "privateKey"), "MUTUAL TLS requires privateKey (or credentialName)")


def _check_tunnel(f: Findings, path: str, tunnel: TunnelSettings | None) -> None:
    if tunnel is None:
        return
    if tunnel.protocol and tunnel.protocol not in ("CONNECT", "POST"):
        f.error(join(path, "protocol"), f"tunnel protocol must be CONNECT or POST, got {tunnel.protocol!r}")
    host = tunnel.target_host or ""
    if check_fqdn(host) and not is_ip(host):
        f.error(
            join(path, "targetHost"),
            f"tunnel targetHost {host!r} must be a fully qualified domain name or an IP address",
        )
    if error := check_port(tunnel.target_port, "tunnel targetPort"):
        f.error(join(path, "targetPort"), error)


def _check_port_policies(f: Findings, path: str, policies: list[PortTrafficPolicy], *, namespace: str) -> None:
    for i, policy in enumerate(policies):
        where = join(path, i)
        if policy.port is None:
            f.error(join(where, "port"), "a port-level traffic policy needs port.number")
        elif error := check_port(policy.port.number):
            f.error(join(where, "port", "number"), error)
        if not (policy.outlier_detection or policy.connection_pool or policy.load_balancer or policy.tls):
            f.error(
                where,
                "a port-level traffic policy needs at least one of loadBalancer, connectionPool, "
                "outlierDetection or tls",
            )
            continue
        _check_outlier(f, join(where, "outlierDetection"), policy.outlier_detection)
        check_connection_pool(f, join(where, "connectionPool"), policy.connection_pool)
        _check_load_balancer(f, join(where, "loadBalancer"), policy.load_balancer, policy.outlier_detection)
        check_client_tls(f, join(where, "tls"), policy.tls, namespace=namespace)


def check_traffic_policy(f: Findings, path: str, tp: TrafficPolicy | None, *, namespace: str) -> None:
    if tp is None:
        return
    if not (tp.outlier_detection or tp.connection_pool or tp.load_balancer or tp.tls or tp.port_level_settings
            or tp.tunnel or tp.proxy_protocol or tp.retry_budget):  # fmt: skip
        f.error(
            path,
            "a traffic policy needs at least one field (loadBalancer, connectionPool, outlierDetection, tls, ...)",
        )
        return
    if tp.tunnel is not None and tp.proxy_protocol is not None:
        f.error(path, "set only one of tunnel and proxyProtocol")
        return
    _check_outlier(f, join(path, "outlierDetection"), tp.outlier_detection)
    check_connection_pool(f, join(path, "connectionPool"), tp.connection_pool)
    _check_load_balancer(f, join(path, "loadBalancer"), tp.load_balancer, tp.outlier_detection)
    check_client_tls(f, join(path, "tls"), tp.tls, namespace=namespace)
    _check_port_policies(f, join(path, "portLevelSettings"), tp.port_level_settings, namespace=namespace)
    _check_tunnel(f, join(path, "tunnel"), tp.tunnel)
    if tp.retry_budget is not None and (error := check_percent(tp.retry_budget.percent)):
        f.error(join(path, "retryBudget", "percent"), error)


def validate(spec: DestinationRule, ctx: ValidationContext) -> Findings:
    f = Findings()
    if error := check_wildcard_domain(spec.host or ""):
        f.error("spec.host", error)
    check_traffic_policy(f, "spec.trafficPolicy", spec.traffic_policy, namespace=ctx.namespace)
    names: set[str] = set()
    for i, subset in enumerate(spec.subsets):
        path = join("spec.subsets", i)
        if subset.name and subset.name in names:
            f.error(join(path, "name"), f"duplicate subset name {subset.name!r}: subset names must be unique")
        names.add(subset.name or "")
        if error := check_subset_name(subset.name):
            f.error(join(path, "name"), error)
        check_labels(f, subset.labels, path=join(path, "labels"))
        check_traffic_policy(f, join(path, "trafficPolicy"), subset.traffic_policy, namespace=ctx.namespace)
    with_selector = spec.workload_selector is not None
    check_export_to(f, spec.export_to, namespace=ctx.namespace, with_selector=with_selector)
    check_workload_selector(f, spec.workload_selector, path="spec.workloadSelector")
    return f
