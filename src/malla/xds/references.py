"""Which ADS-served resources a cluster or listener refers to, and which are missing.

A cluster of type EDS needs its ClusterLoadAssignment; an HTTP connection
manager using RDS needs its RouteConfiguration; a TLS context naming an SDS
secret needs that Secret. Only references whose config source is ADS count:
those are the ones this server must serve. Envoy waits for (or rejects)
what is missing, so a snapshot with dangling references is refused before
anything is served.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf.message import Message

from malla.xds import resources

Reference = tuple[str, str]

_HCM_TYPE = "type.googleapis.com/" + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
_UPSTREAM_TLS = "type.googleapis.com/" + tls_pb2.UpstreamTlsContext.DESCRIPTOR.full_name
_DOWNSTREAM_TLS = "type.googleapis.com/" + tls_pb2.DownstreamTlsContext.DESCRIPTOR.full_name


class InconsistentSnapshotError(ValueError):
    """A snapshot refers to resources it does not contain."""


def references_of(type_url: str, message: Message) -> tuple[Reference, ...]:
    """(type URL, name) of every ADS resource `message` depends on, sorted."""
    if type_url == resources.CLUSTER:
        found = set(_cluster_refs(message))  # type: ignore[arg-type]
    elif type_url == resources.LISTENER:
        found = set(_listener_refs(message))  # type: ignore[arg-type]
    else:
        return ()
    return tuple(sorted(found))


def missing_references(
    snapshot: Mapping[str, Mapping[str, Iterable[Reference]]],
) -> list[str]:
    """Human-readable lines, one per reference the snapshot cannot satisfy.

    `snapshot` maps type URL -> resource name -> that resource's references.
    """
    problems = []
    for type_url in sorted(snapshot, key=resources.push_rank):
        for name in sorted(snapshot[type_url]):
            for ref_type, ref_name in snapshot[type_url][name]:
                if ref_name not in snapshot.get(ref_type, {}):
                    problems.append(
                        f"{resources.short_name(type_url)} {name!r} needs "
                        f"{resources.short_name(ref_type)} {ref_name!r}, which the "
                        "snapshot does not contain")
    return problems


def _cluster_refs(cluster: cluster_pb2.Cluster) -> Iterator[Reference]:
    eds = resources.eds_service_name(cluster)
    if eds is not None and cluster.eds_cluster_config.eds_config.HasField("ads"):
        yield (resources.ENDPOINT, eds)
    sockets = [cluster.transport_socket] if cluster.HasField("transport_socket") else []
    sockets += [match.transport_socket for match in cluster.transport_socket_matches]
    for socket in sockets:
        yield from _tls_refs(socket.typed_config, expected=_UPSTREAM_TLS)


def _listener_refs(listener: listener_pb2.Listener) -> Iterator[Reference]:
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        if chain.HasField("transport_socket"):
            yield from _tls_refs(chain.transport_socket.typed_config, expected=_DOWNSTREAM_TLS)
        for network_filter in chain.filters:
            if network_filter.typed_config.type_url != _HCM_TYPE:
                continue
            hcm = hcm_pb2.HttpConnectionManager()
            network_filter.typed_config.Unpack(hcm)
            if hcm.HasField("rds") and hcm.rds.config_source.HasField("ads"):
                yield (resources.ROUTE, hcm.rds.route_config_name)


def _tls_refs(typed_config: object, *, expected: str) -> Iterator[Reference]:
    if getattr(typed_config, "type_url", "") != expected:
        return
    context = (tls_pb2.UpstreamTlsContext() if expected == _UPSTREAM_TLS
               else tls_pb2.DownstreamTlsContext())
    typed_config.Unpack(context)  # type: ignore[attr-defined]
    common = context.common_tls_context
    configs = list(common.tls_certificate_sds_secret_configs)
    if common.HasField("validation_context_sds_secret_config"):
        configs.append(common.validation_context_sds_secret_config)
    combined = common.combined_validation_context
    if combined.HasField("validation_context_sds_secret_config"):
        configs.append(combined.validation_context_sds_secret_config)
    for config in configs:
        if config.HasField("sds_config") and config.sds_config.HasField("ads"):
            yield (resources.SECRET, config.name)
