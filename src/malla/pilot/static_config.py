"""A proxy's generated resources as one static Envoy bootstrap (``malla translate``, offline checks).

EDS clusters become STATIC clusters holding their assignments, and every
RDS reference is replaced by the route configuration itself, so that
``envoy --mode validate`` (or a standalone Envoy) sees the whole
configuration in one file. Secrets passed in become static; the others stay
references, fetched from an ``xds-grpc`` cluster that validation never
dials (rewritten from ADS to it because Envoy 1.40's validate mode crashes on
a static cluster whose secrets come over ADS).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.proxy_protocol.v3 import upstream_proxy_protocol_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from malla.pilot.cluster_tls import sds_secret
from malla.pilot.endpoints import socket_address
from malla.pilot.proto_values import duration, typed
from malla.pilot.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from malla.pilot.traffic_policy import HTTP_PROTOCOL_OPTIONS_KEY

XDS_CLUSTER = "xds-grpc"


def static_bootstrap(
    resources: Mapping[str, Mapping[str, Message]],
    *,
    node_id: str = "malla",
    xds: tuple[str, int] = ("127.0.0.1", 15010),
    secrets: Mapping[str, secret_pb2.Secret] | None = None,
) -> bootstrap_pb2.Bootstrap:
    """``secrets`` given here become static secrets, and references to them stop asking SDS."""
    boot = bootstrap_pb2.Bootstrap()
    static_names = frozenset(secrets or {})
    for name, secret in sorted((secrets or {}).items()):
        boot.static_resources.secrets.append(secret)
        boot.static_resources.secrets[-1].name = name
    boot.node.id = node_id
    boot.node.cluster = node_id
    ads = boot.dynamic_resources.ads_config
    ads.api_type = ads.GRPC
    ads.transport_api_version = 2  # V3
    ads.grpc_services.add().envoy_grpc.cluster_name = XDS_CLUSTER
    routes = resources.get(ROUTE, {})
    assignments = resources.get(ENDPOINT, {})
    for cluster in resources.get(CLUSTER, {}).values():
        static = _static_cluster(cluster, assignments)
        for socket in [static.transport_socket, *(m.transport_socket for m in static.transport_socket_matches)]:
            _rewrite_sds(socket, tls_pb2.UpstreamTlsContext, static_names)
        boot.static_resources.clusters.append(static)
    boot.static_resources.clusters.append(_xds_cluster(*xds))
    for listener in resources.get(LISTENER, {}).values():
        static = _inline_routes(listener, routes)
        for chain in static.filter_chains:
            _rewrite_sds(chain.transport_socket, tls_pb2.DownstreamTlsContext, static_names)
        boot.static_resources.listeners.append(static)
    return boot


def static_bootstrap_json(resources: Mapping[str, Mapping[str, Message]], **kwargs: Any) -> dict[str, Any]:
    return MessageToDict(static_bootstrap(resources, **kwargs), preserving_proto_field_name=True)


def _rewrite_sds(socket: Any, kind: type, static_names: frozenset[str]) -> None:
    if socket.typed_config.Is(upstream_proxy_protocol_pb2.ProxyProtocolUpstreamTransport.DESCRIPTOR):
        wrapper = upstream_proxy_protocol_pb2.ProxyProtocolUpstreamTransport()
        socket.typed_config.Unpack(wrapper)
        _rewrite_sds(wrapper.transport_socket, kind, static_names)
        socket.typed_config.CopyFrom(typed(wrapper))
        return
    if not socket.typed_config.Is(kind.DESCRIPTOR):
        return
    context = kind()
    socket.typed_config.Unpack(context)
    common = context.common_tls_context
    refs = [
        *common.tls_certificate_sds_secret_configs,
        common.validation_context_sds_secret_config,
        common.combined_validation_context.validation_context_sds_secret_config,
    ]
    for ref in refs:
        if ref.name in static_names:
            ref.ClearField("sds_config")
        elif ref.sds_config.HasField("ads"):
            ref.sds_config.CopyFrom(sds_secret(ref.name, sds_cluster=XDS_CLUSTER).sds_config)
    socket.typed_config.CopyFrom(typed(context))


def _static_cluster(cluster: cluster_pb2.Cluster, assignments: Mapping[str, Message]) -> cluster_pb2.Cluster:
    if cluster.type != cluster_pb2.Cluster.EDS:
        return cluster
    out = cluster_pb2.Cluster()
    out.CopyFrom(cluster)
    out.ClearField("eds_cluster_config")
    out.type = cluster_pb2.Cluster.STATIC
    assignment = assignments.get(cluster.eds_cluster_config.service_name or cluster.name)
    if assignment is not None:
        out.load_assignment.CopyFrom(assignment)
    out.load_assignment.cluster_name = cluster.name
    return out


def _inline_routes(listener: listener_pb2.Listener, routes: Mapping[str, Message]) -> listener_pb2.Listener:
    out = listener_pb2.Listener()
    out.CopyFrom(listener)
    for chain in out.filter_chains:
        for f in chain.filters:
            if not f.typed_config.Is(hcm_pb2.HttpConnectionManager.DESCRIPTOR):
                continue
            manager = hcm_pb2.HttpConnectionManager()
            f.typed_config.Unpack(manager)
            if manager.HasField("rds") and manager.rds.route_config_name in routes:
                manager.route_config.CopyFrom(routes[manager.rds.route_config_name])
                manager.ClearField("rds")
                f.typed_config.CopyFrom(typed(manager))
    return out


def _xds_cluster(host: str, port: int) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(
        name=XDS_CLUSTER, type=cluster_pb2.Cluster.STATIC, connect_timeout=duration(1_000_000_000)
    )
    cluster.load_assignment.cluster_name = XDS_CLUSTER
    cluster.load_assignment.endpoints.add().lb_endpoints.add().endpoint.address.CopyFrom(socket_address(host, port))
    options = hpo.HttpProtocolOptions()
    options.explicit_http_config.http2_protocol_options.SetInParent()
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS_KEY].CopyFrom(typed(options))
    return cluster
