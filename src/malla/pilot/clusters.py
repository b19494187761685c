"""Clusters for one proxy: outbound per service port and subset, inbound per served port, specials.

Outbound clusters are ``outbound|PORT|SUBSET|HOST``: EDS over ADS for
registry services, STRICT_DNS / LOGICAL_DNS with inline endpoints for
ServiceEntry DNS resolution (as Envoy's ``envoy.clusters.dns`` extension, which
replaces those deprecated types), ORIGINAL_DST for ``resolution: NONE`` (or a
dynamic forward proxy when the app uses its sidecar as an explicit HTTP
proxy, since there is no original destination to pass through to).
Each carries its DestinationRule's policy for that port and subset.
Inbound clusters ``inbound|PORT||`` send to the app's local address (or to a
Sidecar ingress listener's ``defaultEndpoint``, see ``sidecar_ingress``). The
specials are Istio's: ``BlackHoleCluster``, ``PassthroughCluster`` and, for
transparent capture, ``InboundPassthroughCluster``.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.extensions.clusters.common.dns.v3 import dns_pb2
from envoy.extensions.clusters.dns.v3 import dns_cluster_pb2
from envoy.extensions.clusters.dynamic_forward_proxy.v3 import cluster_pb2 as dfp_cluster_pb2
from envoy.extensions.common.dynamic_forward_proxy.v3 import dns_cache_pb2

from malla.pilot import names
from malla.pilot.cluster_tls import (
    auto_mtls_matches,
    istio_mutual_context,
    translate_client_tls,
    translate_proxy_protocol,
    transport_socket,
)
from malla.pilot.destination_rules import EffectivePolicy, MergedRule
from malla.pilot.endpoints import assignment, locality_policy, select_endpoints, socket_address
from malla.pilot.auto_passthrough import build_sni_dnat_clusters
from malla.pilot.proto_values import ads_source, duration, typed
from malla.pilot.protocol import Protocol
from malla.pilot.services import Endpoint, Resolution, Service, ServicePort
from malla.pilot.sidecar_ingress import inbound_ports, terminated_protocol
from malla.pilot.sidecar_scope import SidecarScope, build_scope
from malla.pilot.snapshot import CaptureMode, MeshConfig, MeshSnapshot, Proxy
from malla.pilot.traffic_policy import (
    HTTP_PROTOCOL_OPTIONS_KEY,
    cluster_metadata,
    healthy_panic_threshold,
    is_passthrough,
    translate_circuit_breakers,
    translate_http_protocol_options,
    translate_load_balancer,
    translate_outlier_detection,
    translate_tcp_keepalive,
)
from malla.telemetry.proxy_config import build_telemetry_clusters

Cluster = cluster_pb2.Cluster
DNS_CACHE_NAME = "dynamic_forward_proxy_cache_config"
DNS_CLUSTER_TYPE = "envoy.clusters.dns"
INBOUND_PASSTHROUGH_BIND = "127.0.0.6"  # Istio's source address for inbound passthrough


def build_clusters(
    proxy: Proxy,
    snapshot: MeshSnapshot,
    *,
    scope: SidecarScope | None = None,
    outbound: list[Cluster] | None = None,
) -> list[Cluster]:
    """Every cluster the proxy needs, sorted by name (``outbound``: already built, shared with its class)."""
    if outbound is None:
        outbound = build_outbound_clusters(proxy, snapshot, scope or build_scope(proxy, snapshot))
    out = list(outbound)
    if proxy.is_router:
        out += build_sni_dnat_clusters(proxy, snapshot, outbound)
    else:
        out += build_inbound_clusters(proxy, snapshot)
    out += build_special_clusters(proxy, snapshot.mesh)
    out += build_telemetry_clusters(proxy, snapshot.mesh)
    return sorted(out, key=lambda c: c.name)


def build_outbound_clusters(proxy: Proxy, snapshot: MeshSnapshot, scope: SidecarScope) -> list[Cluster]:
    out = []
    for service in scope.services:
        rule = snapshot.destination_rule(proxy, service)
        for port in service.ports:
            if port.protocol is Protocol.UDP:
                continue
            for subset in [None, *((s.name for s in rule.subsets) if rule else ())]:
                cluster = build_outbound_cluster(proxy, snapshot, service, port, rule=rule, subset=subset)
                if cluster is not None:
                    out.append(cluster)
    return out


def build_outbound_cluster(
    proxy: Proxy,
    snapshot: MeshSnapshot,
    service: Service,
    port: ServicePort,
    *,
    rule: MergedRule | None,
    subset: str | None,
) -> Cluster | None:
    mesh = snapshot.mesh
    name = names.outbound_cluster_name(service.hostname, port.port, subset or "")
    policy = rule.policy(port=port.port, subset=subset) if rule else EffectivePolicy()
    kind = _discovery_kind(service, port, policy, proxy)
    if kind is None:
        return None
    cluster = Cluster(name=name, connect_timeout=duration(mesh.connect_timeout))
    cluster.MergeFrom(translate_load_balancer(policy.load_balancer, default=mesh.default_lb_policy))
    if kind == "EDS":
        cluster.type = Cluster.EDS
        cluster.eds_cluster_config.service_name = name
        cluster.eds_cluster_config.eds_config.CopyFrom(ads_source())
    elif kind in ("STRICT_DNS", "LOGICAL_DNS"):
        _dns_cluster(cluster, kind, proxy, snapshot, service, port, rule=rule, subset=subset, policy=policy)
    elif kind == "ORIGINAL_DST":
        cluster.type = Cluster.ORIGINAL_DST
        cluster.lb_policy = Cluster.CLUSTER_PROVIDED
    else:
        _forward_proxy_cluster(cluster, mesh)
    _apply_policy(cluster, policy, port=port, mesh=mesh)
    _apply_tls(cluster, policy, service=service, port=port, subset=subset, snapshot=snapshot)
    if policy.proxy_protocol is not None:
        _apply_proxy_protocol(cluster, policy.proxy_protocol)
    cluster.metadata.CopyFrom(
        cluster_metadata(
            host=service.hostname, name=service.name, namespace=service.namespace, port=port.port, subset=subset or ""
        )
    )
    return cluster


def _discovery_kind(service: Service, port: ServicePort, policy: EffectivePolicy, proxy: Proxy) -> str | None:
    passthrough = service.resolution is Resolution.PASSTHROUGH or is_passthrough(policy.load_balancer)
    if passthrough and proxy.capture is CaptureMode.EXPLICIT:
        # No original destination exists when the app dials its sidecar: HTTP is forwarded by its
        # Host header; TCP to a single named host is resolved by DNS; anything else cannot be reached.
        if port.protocol.is_http:
            return "DYNAMIC_FORWARD_PROXY"
        return None if service.hostname.startswith("*") else "STRICT_DNS"
    if passthrough:
        return "ORIGINAL_DST"
    return {
        Resolution.CLIENT_SIDE_LB: "EDS",
        Resolution.DNS: "STRICT_DNS",
        Resolution.DNS_ROUND_ROBIN: "LOGICAL_DNS",
    }[service.resolution]


def _dns_cluster(
    cluster: Cluster,
    kind: str,
    proxy: Proxy,
    snapshot: MeshSnapshot,
    service: Service,
    port: ServicePort,
    *,
    rule: MergedRule | None,
    subset: str | None,
    policy: EffectivePolicy,
) -> None:
    # Envoy's DNS cluster extension replaces the deprecated STRICT_DNS/LOGICAL_DNS types and
    # their cluster-level DNS fields; one endpoint holding all addresses is LOGICAL_DNS.
    config = dns_cluster_pb2.DnsCluster(
        dns_refresh_rate=duration(snapshot.mesh.dns_refresh_rate),
        respect_dns_ttl=True,
        dns_lookup_family=dns_pb2.V4_ONLY,
        all_addresses_in_single_endpoint=kind == "LOGICAL_DNS",
    )
    cluster.cluster_type.name = DNS_CLUSTER_TYPE
    cluster.cluster_type.typed_config.CopyFrom(typed(config))
    labels = dict(rule.subset(subset).labels) if rule and subset and rule.subset(subset) else {}
    endpoints = select_endpoints(snapshot.registry.endpoints_of(service, port.port), labels, snapshot=snapshot)
    if not endpoints and service.resolution is Resolution.PASSTHROUGH:
        endpoints = [Endpoint(address=service.hostname, port=port.target_port or port.port, service_port=port.port)]
    if kind == "LOGICAL_DNS":
        endpoints = endpoints[:1]  # Envoy: a LOGICAL_DNS cluster has exactly one host
    locality = locality_policy(policy, enabled_by_default=snapshot.mesh.locality_lb_enabled)
    cluster.load_assignment.CopyFrom(assignment(cluster.name, endpoints, proxy=proxy, locality_lb=locality))


def _dns_cache(mesh: MeshConfig) -> dns_cache_pb2.DnsCacheConfig:
    return dns_cache_pb2.DnsCacheConfig(
        name=DNS_CACHE_NAME, dns_lookup_family=Cluster.V4_ONLY, dns_refresh_rate=duration(mesh.dns_refresh_rate)
    )


def forward_proxy_dns_cache(mesh: MeshConfig) -> dns_cache_pb2.DnsCacheConfig:
    """The DNS cache the HTTP dynamic forward proxy filter must share with the cluster."""
    return _dns_cache(mesh)


def _forward_proxy_cluster(cluster: Cluster, mesh: MeshConfig) -> None:
    cluster.lb_policy = Cluster.CLUSTER_PROVIDED
    cluster.ClearField("least_request_lb_config")
    cluster.ClearField("round_robin_lb_config")
    cluster.cluster_type.name = "envoy.clusters.dynamic_forward_proxy"
    cluster.cluster_type.typed_config.CopyFrom(typed(dfp_cluster_pb2.ClusterConfig(dns_cache_config=_dns_cache(mesh))))


def _apply_policy(cluster: Cluster, policy: EffectivePolicy, *, port: ServicePort, mesh: MeshConfig) -> None:
    pool = policy.connection_pool
    cluster.circuit_breakers.CopyFrom(translate_circuit_breakers(pool, retry_budget=policy.retry_budget))
    if pool is not None and pool.tcp is not None and pool.tcp.connect_timeout is not None:
        cluster.connect_timeout.CopyFrom(duration(pool.tcp.connect_timeout))
    keepalive = translate_tcp_keepalive(pool.tcp if pool is not None else None, mesh_default=mesh.tcp_keepalive)
    if keepalive is not None:
        cluster.upstream_connection_options.CopyFrom(keepalive)
    if policy.outlier_detection is not None:
        outlier, panic = translate_outlier_detection(policy.outlier_detection)
        cluster.outlier_detection.CopyFrom(outlier)
        cluster.common_lb_config.MergeFrom(healthy_panic_threshold(panic))
        lb = policy.load_balancer
        if lb is not None and lb.locality_lb_setting is not None and lb.locality_lb_setting.distribute:
            cluster.common_lb_config.locality_weighted_lb_config.SetInParent()
    options = translate_http_protocol_options(pool, protocol=port.protocol, mesh_h2_upgrade=mesh.h2_upgrade_policy)
    if options is not None:
        cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS_KEY].CopyFrom(typed(options))


def _apply_tls(
    cluster: Cluster,
    policy: EffectivePolicy,
    *,
    service: Service,
    port: ServicePort,
    subset: str | None,
    snapshot: MeshSnapshot,
) -> None:
    mesh = snapshot.mesh
    sni = names.format_sni(names.Direction.OUTBOUND, port=port.port, subset=subset or "", host=service.hostname)
    sans = list(service.subject_alt_names) or sorted(
        {e.service_account for e in snapshot.registry.endpoints_of(service, port.port) if e.service_account}
    )
    http2 = port.protocol.is_http2
    if policy.tls is not None:
        context = translate_client_tls(
            policy.tls,
            default_sni=sni,
            sans=sans,
            http2=http2,
            sds_cluster=mesh.sds_cluster,
            system_ca=mesh.system_ca_bundle,
        )
        if context is not None:
            cluster.transport_socket.CopyFrom(transport_socket(context))
        return
    if mesh.enable_auto_mtls and not service.mesh_external and cluster.type != Cluster.ORIGINAL_DST:
        context = istio_mutual_context(sni=sni, sans=sans, http2=http2, sds_cluster=mesh.sds_cluster)
        cluster.transport_socket_matches.extend(auto_mtls_matches(context))


def _apply_proxy_protocol(cluster: Cluster, proxy_protocol: object) -> None:
    for match in cluster.transport_socket_matches:
        match.transport_socket.CopyFrom(translate_proxy_protocol(proxy_protocol, match.transport_socket))
    if not cluster.transport_socket_matches or cluster.HasField("transport_socket"):
        inner = cluster.transport_socket if cluster.HasField("transport_socket") else None
        cluster.transport_socket.CopyFrom(translate_proxy_protocol(proxy_protocol, inner))


def build_inbound_clusters(proxy: Proxy, snapshot: MeshSnapshot) -> list[Cluster]:
    """``inbound|PORT||`` -> the app (``app_address:app_port``, or a Sidecar's ``defaultEndpoint``), per port served."""
    mesh = snapshot.mesh
    sidecar = snapshot.sidecar_scope(proxy)
    default_pool = sidecar.spec.inbound_connection_pool if sidecar is not None else None
    out = []
    for inbound in inbound_ports(proxy, snapshot):
        name = names.inbound_cluster_name(inbound.port)
        cluster = Cluster(name=name, type=Cluster.STATIC, connect_timeout=duration(mesh.connect_timeout))
        cluster.lb_policy = Cluster.ROUND_ROBIN
        cla = cluster.load_assignment
        cla.cluster_name = name
        cla.endpoints.add().lb_endpoints.add().endpoint.address.CopyFrom(
            socket_address(inbound.app_address, inbound.app_port)
        )
        pool = inbound.connection_pool or default_pool
        cluster.circuit_breakers.CopyFrom(translate_circuit_breakers(pool))
        protocol = terminated_protocol(inbound.protocol) if inbound.tls is not None else inbound.protocol
        options = translate_http_protocol_options(pool, protocol=protocol, mesh_h2_upgrade="DO_NOT_UPGRADE")
        if options is not None:
            cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS_KEY].CopyFrom(typed(options))
        out.append(cluster)
    return out


def build_special_clusters(proxy: Proxy, mesh: MeshConfig) -> list[Cluster]:
    timeout = duration(mesh.connect_timeout)
    blackhole = Cluster(name=names.BLACKHOLE_CLUSTER, type=Cluster.STATIC, connect_timeout=timeout)
    passthrough = Cluster(name=names.PASSTHROUGH_CLUSTER, connect_timeout=timeout)
    passthrough.circuit_breakers.CopyFrom(translate_circuit_breakers(None))
    if proxy.capture is CaptureMode.EXPLICIT:
        _forward_proxy_cluster(passthrough, mesh)
        return [blackhole, passthrough]
    passthrough.type = Cluster.ORIGINAL_DST
    passthrough.lb_policy = Cluster.CLUSTER_PROVIDED
    out = [blackhole, passthrough]
    if not proxy.is_router:
        inbound = Cluster(
            name=names.INBOUND_PASSTHROUGH_CLUSTER,
            type=Cluster.ORIGINAL_DST,
            lb_policy=Cluster.CLUSTER_PROVIDED,
            connect_timeout=timeout,
        )
        inbound.circuit_breakers.CopyFrom(translate_circuit_breakers(None))
        inbound.upstream_bind_config.source_address.CopyFrom(
            address_pb2.SocketAddress(address=INBOUND_PASSTHROUGH_BIND, port_value=0)
        )
        out.append(inbound)
    return out
