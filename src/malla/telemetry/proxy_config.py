"""Telemetry in a proxy's Envoy config: access logs to the agent, peer headers, Zipkin tracing (pure).

In: the listeners and clusters Pilot generated for a ``Proxy``, the
``MeshSnapshot``. Out: the same listeners with, on every HTTP connection
manager, the peer-metadata filters (``x-envoy-peer-metadata``, see the
package docstring), the gRPC access log to the agent and the Zipkin tracer,
and on every ``tcp_proxy`` the TCP access log (on connect, every
``TCP_REPORT_INTERVAL_S`` and on close); plus the clusters those name
(``envoy_accesslog_service``, the agent's Unix socket; ``zipkin``, the
collector). Each piece is present only when its input is: the proxy's
``access_log_service`` (set by the agent), its ``workload_name``, and
``MeshConfig.zipkin_address``, so proxies not started by an agent get no
reference to a cluster they lack.

The access logs carry what the agent cannot know from the entry itself as
literal custom tags: the reporter (``destination`` on a sidecar's inbound
side, ``source`` elsewhere, gateways included, as Istio reports) and, on
the inbound side, the service the workload serves on that port (Istio reads
it from the inbound cluster's metadata).

Istio's Telemetry API then applies per side of each HTTP connection manager
(``policy`` finds the resources, ``tracing`` and ``access_logging`` merge
them): it overrides the tracer's sampling, tags, request-id sampling and
context propagation or removes it, and replaces ``MeshConfig.access_log_path``
with the user access logs it names, on every ``tcp_proxy`` too. The gRPC log
to the agent is malla's metrics pipeline and stays.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.trace.v3 import zipkin_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.clusters.dns.v3 import dns_cluster_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2
from envoy.extensions.filters.http.header_to_metadata.v3 import header_to_metadata_pb2 as h2m
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.tracing.v3 import custom_tag_pb2

from malla.pilot.endpoints import socket_address
from malla.pilot.network_filters import TCP_PROXY_FILTER
from malla.pilot.proto_values import boolean, duration, seconds, typed
from malla.pilot.services import Service
from malla.pilot.snapshot import MeshConfig, MeshSnapshot, Proxy
from malla.telemetry import access_logging, metric_overrides, peer_metadata
from malla.telemetry import tracing as telemetry_tracing
from malla.telemetry.policy import AppliedTelemetry, applicable_telemetries

Listener = listener_pb2.Listener
Cluster = cluster_pb2.Cluster
HttpConnectionManager = hcm_pb2.HttpConnectionManager

ACCESS_LOG_CLUSTER = "envoy_accesslog_service"  # Istio's name for its access-log service cluster
ZIPKIN_CLUSTER = "zipkin"  # Istio's bootstrap name for the tracer's collector
ZIPKIN_SPANS_PATH = "/api/v2/spans"
PEER_NAMESPACE = "malla.peer"  # dynamic metadata the peer headers are moved into
DOWNSTREAM_PEER, DOWNSTREAM_PEER_ID = "downstream", "downstream_id"
UPSTREAM_PEER, UPSTREAM_PEER_ID = "upstream", "upstream_id"
INBOUND_LOG, OUTBOUND_LOG = "inbound", "outbound"  # access-log stream names (log_name)
TCP_REPORT_INTERVAL_S = 5.0  # Istio's default reporting interval for open TCP connections
ACCESS_LOG_FLUSH_S = 1.0
HCM_FILTER = "envoy.filters.network.http_connection_manager"
HEADER_MUTATION_FILTER = "envoy.filters.http.header_mutation"
HEADER_TO_METADATA_FILTER = "envoy.filters.http.header_to_metadata"
# Tags the agent reads from each entry, set per access logger (not per request).
TAG_REPORTER = "reporter"
TAG_SERVICE = "destination_service"
TAG_SERVICE_NAME = "destination_service_name"
TAG_SERVICE_NAMESPACE = "destination_service_namespace"
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def add_telemetry(listeners: list[Listener], *, proxy: Proxy, snapshot: MeshSnapshot) -> list[Listener]:
    """Decorate freshly built listeners in place (and return them): see the module docstring."""
    telemetries = applicable_telemetries(proxy, snapshot)
    metrics = metric_overrides.merge([t.spec for t in telemetries])  # Telemetry metrics overrides, per side
    if not (proxy.access_log_service or proxy.workload_name or snapshot.mesh.zipkin_address or telemetries):
        return listeners
    for listener in listeners:
        inbound = listener.traffic_direction == base_pb2.INBOUND and not proxy.is_router
        chains = list(listener.filter_chains)
        if listener.HasField("default_filter_chain"):
            chains.append(listener.default_filter_chain)
        for chain in chains:
            port = chain.filter_chain_match.destination_port.value or listener.address.socket_address.port_value
            service = inbound_service(proxy, snapshot, port) if inbound else None
            for network_filter in chain.filters:
                if network_filter.name == HCM_FILTER:
                    manager = HttpConnectionManager.FromString(network_filter.typed_config.value)
                    _decorate_hcm(manager, proxy=proxy, mesh=snapshot.mesh, inbound=inbound, service=service,
                                  metrics=metrics.side(inbound=inbound))
                    _apply_telemetry_api(manager, proxy=proxy, mesh=snapshot.mesh, inbound=inbound,
                                         telemetries=telemetries)
                    network_filter.typed_config.CopyFrom(typed(manager))
                elif network_filter.name == TCP_PROXY_FILTER:
                    tcp = tcp_proxy_pb2.TcpProxy.FromString(network_filter.typed_config.value)
                    if proxy.access_log_service and not metrics.side(inbound=inbound).records_nothing(tcp=True):
                        tcp.access_log.append(build_tcp_access_log(inbound=inbound, service=service,
                                                                   metrics=metrics.side(inbound=inbound)))
                        tcp.access_log_options.flush_access_log_on_connected = True
                        interval = metrics.reporting_interval_s or TCP_REPORT_INTERVAL_S
                        tcp.access_log_options.access_log_flush_interval.CopyFrom(seconds(interval))
                    side = telemetry_tracing.SERVER if inbound else telemetry_tracing.CLIENT
                    logs = access_logging.build_access_logs(telemetries, side=side, tcp=True)
                    if logs is not None:
                        access_logging.replace_file_logs(tcp.access_log, logs)
                    network_filter.typed_config.CopyFrom(typed(tcp))
    return listeners


def inbound_service(proxy: Proxy, snapshot: MeshSnapshot, port: int) -> Service | None:
    """The service whose endpoint this proxy is on ``port`` (the first by host name), if any."""
    for service in snapshot.registry.services:
        for endpoints in snapshot.registry.endpoints.get(service.key, {}).values():
            if any(e.address == proxy.ip and e.port == port for e in endpoints):
                return service
    return None


def _decorate_hcm(
    manager: HttpConnectionManager, *, proxy: Proxy, mesh: MeshConfig, inbound: bool, service: Service | None,
    metrics: metric_overrides.SideOverrides | None = None,
) -> None:
    if proxy.workload_name:
        filters = [*build_peer_filters(proxy, inbound=inbound), *manager.http_filters]
        del manager.http_filters[:]
        manager.http_filters.extend(filters)
    if proxy.access_log_service and not (metrics is not None and metrics.records_nothing(tcp=False)):
        manager.access_log.append(build_http_access_log(inbound=inbound, service=service, metrics=metrics))
    if mesh.zipkin_address:
        manager.tracing.CopyFrom(build_tracing(proxy, mesh))


def _apply_telemetry_api(
    manager: HttpConnectionManager, *, proxy: Proxy, mesh: MeshConfig, inbound: bool,
    telemetries: tuple[AppliedTelemetry, ...],
) -> None:
    """Istio's Telemetry API over the mesh-wide defaults: tracing and user access logs of one side."""
    side = telemetry_tracing.SERVER if inbound else telemetry_tracing.CLIENT
    spec = telemetry_tracing.tracing_spec(telemetries, mesh=mesh, side=side)
    if spec is not None:
        manager.ClearField("tracing")
        if not spec.disabled:
            manager.tracing.CopyFrom(build_tracing(proxy, mesh, sampling=spec.sampling, custom_tags=spec.custom_tags,
                                                   istio_tags=spec.istio_tags))
            if not spec.context_propagation:
                telemetry_tracing.disable_context_propagation(manager.tracing)
            manager.request_id_extension.CopyFrom(
                telemetry_tracing.build_request_id_extension(use_for_sampling=spec.use_request_id_for_sampling))
    logs = access_logging.build_access_logs(telemetries, side=side)
    if logs is not None:
        access_logging.replace_file_logs(manager.access_log, logs)


def build_peer_filters(proxy: Proxy, *, inbound: bool) -> list[hcm_pb2.HttpFilter]:
    """Send this proxy's metadata to the peer; take the peer's into dynamic metadata, out of the message.

    Inbound, the caller's comes on the request and this workload's goes on the
    response; outbound (and on gateways) the other way round.
    """
    me = peer_metadata.PeerInfo.of(
        workload=proxy.workload_name,
        namespace=proxy.namespace,
        labels=proxy.labels,
        service_account=proxy.service_account,
        instance=proxy.id.split("~")[2] if proxy.id.count("~") == 3 else proxy.id,
    )
    mine = [
        _set_header(peer_metadata.METADATA_HEADER, peer_metadata.encode(me)),
        _set_header(peer_metadata.METADATA_ID_HEADER, proxy.id),
    ]
    theirs = [
        _take_header(peer_metadata.METADATA_HEADER, DOWNSTREAM_PEER if inbound else UPSTREAM_PEER),
        _take_header(peer_metadata.METADATA_ID_HEADER, DOWNSTREAM_PEER_ID if inbound else UPSTREAM_PEER_ID),
    ]
    mutation = header_mutation_pb2.HeaderMutation()
    (mutation.mutations.response_mutations if inbound else mutation.mutations.request_mutations).extend(mine)
    extract = h2m.Config()
    (extract.request_rules if inbound else extract.response_rules).extend(theirs)
    return [
        hcm_pb2.HttpFilter(name=HEADER_TO_METADATA_FILTER, typed_config=typed(extract)),
        hcm_pb2.HttpFilter(name=HEADER_MUTATION_FILTER, typed_config=typed(mutation)),
    ]


def _set_header(name: str, value: str) -> mutation_rules_pb2.HeaderMutation:
    out = mutation_rules_pb2.HeaderMutation()
    out.append.header.key = name
    out.append.header.value = value
    # A value the app set itself must not pass for this proxy's.
    out.append.append_action = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    return out


def _take_header(name: str, key: str) -> h2m.Config.Rule:
    value = h2m.Config.KeyValuePair(metadata_namespace=PEER_NAMESPACE, key=key, type=h2m.Config.STRING)
    return h2m.Config.Rule(header=name, on_header_present=value, remove=True)


def _common_config(
    *, inbound: bool, service: Service | None, metrics: metric_overrides.SideOverrides | None = None
) -> als_pb2.CommonGrpcAccessLogConfig:
    common = als_pb2.CommonGrpcAccessLogConfig(
        log_name=INBOUND_LOG if inbound else OUTBOUND_LOG,
        transport_api_version=config_source_pb2.V3,
        buffer_flush_interval=seconds(ACCESS_LOG_FLUSH_S),
    )
    common.grpc_service.envoy_grpc.cluster_name = ACCESS_LOG_CLUSTER
    tags = {TAG_REPORTER: "destination" if inbound else "source"}
    if service is not None:
        tags |= {TAG_SERVICE: service.hostname, TAG_SERVICE_NAME: service.name or service.hostname.split(".")[0],
                 TAG_SERVICE_NAMESPACE: service.namespace}
    if metrics is not None and metrics.encode():
        tags[metric_overrides.TAG_METRICS] = metrics.encode()
    for tag, value in sorted(tags.items()):
        common.custom_tags.add(tag=tag, literal=custom_tag_pb2.CustomTag.Literal(value=value))
    return common


def build_http_access_log(
    *, inbound: bool, service: Service | None, metrics: metric_overrides.SideOverrides | None = None
) -> accesslog_pb2.AccessLog:
    headers = sorted({"content-type", *(metrics.request_headers if metrics is not None else ())})
    config = als_pb2.HttpGrpcAccessLogConfig(
        common_config=_common_config(inbound=inbound, service=service, metrics=metrics),
        additional_request_headers_to_log=headers,  # content-type: gRPC or plain HTTP; the rest for metric tags
        additional_response_headers_to_log=["grpc-status"],  # a trailers-only gRPC answer
        additional_response_trailers_to_log=["grpc-status"],
    )
    return accesslog_pb2.AccessLog(name="envoy.access_loggers.http_grpc", typed_config=typed(config))


def build_tcp_access_log(
    *, inbound: bool, service: Service | None, metrics: metric_overrides.SideOverrides | None = None
) -> accesslog_pb2.AccessLog:
    config = als_pb2.TcpGrpcAccessLogConfig(
        common_config=_common_config(inbound=inbound, service=service, metrics=metrics))
    return accesslog_pb2.AccessLog(name="envoy.access_loggers.tcp_grpc", typed_config=typed(config))


def build_tracing(
    proxy: Proxy, mesh: MeshConfig, *, sampling: float | None = None,
    custom_tags: Mapping[str, telemetry_tracing.CustomTag] | None = None, istio_tags: bool = True,
) -> HttpConnectionManager.Tracing:
    """Envoy's Zipkin tracer as Istio configures it: 128-bit trace ids, a span per proxy, B3 headers.

    ``sampling`` (percent), ``custom_tags`` and ``istio_tags`` (False: no
    ``istio.*`` tags) come from the Telemetry API; unset,
    ``MeshConfig.trace_sampling`` and Istio's own tags alone.
    """
    tracing = HttpConnectionManager.Tracing()
    tracing.random_sampling.value = max(0.0, min(100.0, mesh.trace_sampling if sampling is None else sampling))
    tracing.client_sampling.value = 100.0  # x-client-trace-id forces a trace, as in Istio
    tracing.overall_sampling.value = 100.0
    zipkin = zipkin_pb2.ZipkinConfig(
        collector_cluster=ZIPKIN_CLUSTER,
        collector_endpoint=ZIPKIN_SPANS_PATH,
        collector_endpoint_version=zipkin_pb2.ZipkinConfig.HTTP_JSON,
        trace_id_128bit=True,
        shared_span_context=boolean(False),
    )
    tracing.provider.name = "envoy.tracers.zipkin"
    tracing.provider.typed_config.CopyFrom(typed(zipkin))
    tags = {"istio.namespace": proxy.namespace}
    if proxy.labels.get("app"):
        tags["istio.canonical_service"] = proxy.labels["app"]
    if proxy.labels.get("version"):
        tags["istio.canonical_revision"] = proxy.labels["version"]
    if not istio_tags:
        tags = {}
    protos = {tag: custom_tag_pb2.CustomTag(tag=tag, literal=custom_tag_pb2.CustomTag.Literal(value=value))
              for tag, value in tags.items()}
    for tag, source in (custom_tags or {}).items():
        proto = telemetry_tracing.translate_custom_tag(tag, source)
        if proto is not None:
            protos[tag] = proto
    tracing.custom_tags.extend(protos[tag] for tag in sorted(protos))
    return tracing


def build_telemetry_clusters(proxy: Proxy, mesh: MeshConfig) -> list[Cluster]:
    """The clusters the access logs and the tracer send to, when they are configured."""
    out = []
    if proxy.access_log_service:
        out.append(_access_log_cluster(proxy.access_log_service, mesh))
    if mesh.zipkin_address:
        out.append(_zipkin_cluster(mesh.zipkin_address, mesh))
    return out


def _access_log_cluster(path: str, mesh: MeshConfig) -> Cluster:
    cluster = Cluster(name=ACCESS_LOG_CLUSTER, type=Cluster.STATIC, connect_timeout=duration(mesh.connect_timeout))
    cluster.load_assignment.cluster_name = ACCESS_LOG_CLUSTER
    endpoint = cluster.load_assignment.endpoints.add().lb_endpoints.add().endpoint
    endpoint.address.CopyFrom(socket_address(f"unix://{path}", 0))
    options = http_protocol_options_pb2.HttpProtocolOptions()
    options.explicit_http_config.http2_protocol_options.SetInParent()  # gRPC
    cluster.typed_extension_protocol_options[_HTTP_OPTIONS].CopyFrom(typed(options))
    return cluster


def split_host_port(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError naming what is wrong."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port (e.g. 127.0.0.1:9411 or zipkin.example.com:9411)")
    return host.strip("[]"), int(port)


def _zipkin_cluster(address: str, mesh: MeshConfig) -> Cluster:
    host, port = split_host_port(address)
    cluster = Cluster(name=ZIPKIN_CLUSTER, connect_timeout=duration(mesh.connect_timeout))
    try:
        ipaddress.ip_address(host)
        cluster.type = Cluster.STATIC
    except ValueError:
        dns = dns_cluster_pb2.DnsCluster(dns_refresh_rate=duration(mesh.dns_refresh_rate), respect_dns_ttl=True,
                                         all_addresses_in_single_endpoint=True)
        cluster.cluster_type.name = "envoy.clusters.dns"
        cluster.cluster_type.typed_config.CopyFrom(typed(dns))
    cluster.load_assignment.cluster_name = ZIPKIN_CLUSTER
    endpoint = cluster.load_assignment.endpoints.add().lb_endpoints.add().endpoint
    endpoint.address.CopyFrom(socket_address(host, port))
    return cluster
