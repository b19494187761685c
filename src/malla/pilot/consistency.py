"""Check a proxy's generated resources refer only to what exists, before anything is served.

Errors (Envoy would wait or refuse): a listener naming a route
configuration (RDS) that is not there, an EDS cluster with no assignment,
an SDS secret no one serves, a JWT provider fetching its keys through a
cluster that is not there. Warnings (served, but a request would fail): a
route naming a cluster that does not exist (503 NC).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf.message import Message

from malla.pilot import names
from malla.pilot.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET

ALWAYS_SERVED_SECRETS = frozenset({names.WORKLOAD_CERT_SECRET, names.ROOT_CA_SECRET})


@dataclass
class ConsistencyReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class InconsistentResources(ValueError):
    """Generated resources that must not be served; the message lists every dangling reference."""


def check_consistency(
    resources: Mapping[str, Mapping[str, Message]], *, secrets: Iterable[str] = ALWAYS_SERVED_SECRETS
) -> ConsistencyReport:
    report = ConsistencyReport()
    routes = resources.get(ROUTE, {})
    assignments = resources.get(ENDPOINT, {})
    clusters = resources.get(CLUSTER, {})
    served = set(secrets) | set(resources.get(SECRET, {}))
    for name, listener in resources.get(LISTENER, {}).items():
        for rds in _listener_rds(listener):
            if rds not in routes:
                report.errors.append(f"listener {name} uses route configuration {rds!r}, which is not generated")
        for secret in _listener_secrets(listener):
            if secret not in served:
                report.errors.append(f"listener {name} uses secret {secret!r}, which no one serves")
        for provider, cluster_name in _jwks_clusters(listener):
            if cluster_name not in clusters:
                report.errors.append(f"listener {name}: JWT provider {provider!r} fetches its keys through cluster "
                                     f"{cluster_name!r}, which does not exist")
    for name, cluster in clusters.items():
        if cluster.type == cluster_pb2.Cluster.EDS:
            service = cluster.eds_cluster_config.service_name or name
            if service not in assignments:
                report.errors.append(f"cluster {name} waits for endpoints {service!r}, which are not generated")
        for secret in _cluster_secrets(cluster):
            if secret not in served:
                report.errors.append(f"cluster {name} uses secret {secret!r}, which no one serves")
    for name, config in routes.items():
        for target in _route_clusters(config):
            if target not in clusters:
                report.warnings.append(f"route configuration {name} sends to cluster {target!r}, which does not exist")
    return report


def assert_consistent(
    resources: Mapping[str, Mapping[str, Message]], *, secrets: Iterable[str] = ALWAYS_SERVED_SECRETS
) -> None:
    """Raise InconsistentResources listing every error; warnings are allowed."""
    report = check_consistency(resources, secrets=secrets)
    if not report.ok:
        raise InconsistentResources("generated configuration is inconsistent:\n  " + "\n  ".join(report.errors))


def http_connection_managers(listener: listener_pb2.Listener) -> Iterator[hcm_pb2.HttpConnectionManager]:
    for chain in [*listener.filter_chains, listener.default_filter_chain]:
        for f in chain.filters:
            if f.typed_config.Is(hcm_pb2.HttpConnectionManager.DESCRIPTOR):
                manager = hcm_pb2.HttpConnectionManager()
                f.typed_config.Unpack(manager)
                yield manager


def _listener_rds(listener: listener_pb2.Listener) -> Iterator[str]:
    for manager in http_connection_managers(listener):
        if manager.HasField("rds"):
            yield manager.rds.route_config_name


def _jwks_clusters(listener: listener_pb2.Listener) -> Iterator[tuple[str, str]]:
    for manager in http_connection_managers(listener):
        for http_filter in manager.http_filters:
            if http_filter.typed_config.Is(jwt_pb2.JwtAuthentication.DESCRIPTOR):
                config = jwt_pb2.JwtAuthentication()
                http_filter.typed_config.Unpack(config)
                for provider_name, provider in config.providers.items():
                    if provider.HasField("remote_jwks"):
                        yield provider_name, provider.remote_jwks.http_uri.cluster


def _listener_secrets(listener: listener_pb2.Listener) -> Iterator[str]:
    for chain in listener.filter_chains:
        if chain.HasField("transport_socket"):
            yield from _socket_secrets(chain.transport_socket, tls_pb2.DownstreamTlsContext)


def _cluster_secrets(cluster: cluster_pb2.Cluster) -> Iterator[str]:
    sockets = [cluster.transport_socket] if cluster.HasField("transport_socket") else []
    sockets += [m.transport_socket for m in cluster.transport_socket_matches]
    for socket in sockets:
        yield from _socket_secrets(socket, tls_pb2.UpstreamTlsContext)


def _socket_secrets(socket: base_pb2.TransportSocket, kind: type) -> Iterator[str]:
    if not socket.typed_config.Is(kind.DESCRIPTOR):
        return
    context = kind()
    socket.typed_config.Unpack(context)
    common = context.common_tls_context
    yield from (s.name for s in common.tls_certificate_sds_secret_configs)
    if common.HasField("validation_context_sds_secret_config"):
        yield common.validation_context_sds_secret_config.name
    if common.combined_validation_context.HasField("validation_context_sds_secret_config"):
        yield common.combined_validation_context.validation_context_sds_secret_config.name


def _route_clusters(config: route_pb2.RouteConfiguration) -> Iterator[str]:
    for vhost in config.virtual_hosts:
        for route in vhost.routes:
            if not route.HasField("route"):
                continue
            action = route.route
            if action.cluster:
                yield action.cluster
            yield from (c.name for c in action.weighted_clusters.clusters)
            yield from (m.cluster for m in action.request_mirror_policies)
