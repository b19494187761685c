"""Istio's metric labels from one Envoy access-log entry (pure).

In: an ``HTTPAccessLogEntry`` or ``TCPAccessLogEntry`` as the agent's
access-log server receives it, who this workload is (``PeerInfo``) and a
lookup of registered workloads by address (for peers that sent no
metadata). Out: the label values of Istio's standard metrics, in Istio's
order and with Istio's spellings: ``unknown`` for what is not known, ``-``
for no response flags, ``mutual_tls``/``none``/``unknown`` for the
connection security policy (the source reporter cannot see the upstream
certificate in the entry, so it says ``unknown``, as Istio's client side
does without a TLS handshake of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from envoy.data.accesslog.v3 import accesslog_pb2

from malla.telemetry import peer_metadata
from malla.telemetry.peer_metadata import PeerInfo
from malla.telemetry.proxy_config import (
    DOWNSTREAM_PEER,
    PEER_NAMESPACE,
    TAG_REPORTER,
    TAG_SERVICE,
    TAG_SERVICE_NAME,
    TAG_SERVICE_NAMESPACE,
    UPSTREAM_PEER,
)

UNKNOWN = "unknown"
SOURCE, DESTINATION = "source", "destination"
PEER_LABELS = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_canonical_service",
    "source_canonical_revision",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "request_protocol",
)
HTTP_LABELS = (*PEER_LABELS, "response_code", "grpc_response_status", "response_flags", "connection_security_policy")
TCP_LABELS = (*PEER_LABELS, "response_flags", "connection_security_policy")
# Istio's passthrough names: the destination is then the Host, the service name the cluster.
_SPECIAL_CLUSTERS = frozenset({"PassthroughCluster", "BlackHoleCluster", "InboundPassthroughCluster"})
_ROUTE_CLUSTERS = {"allow_any": "PassthroughCluster", "block_all": "BlackHoleCluster"}
# Envoy's short names, in the order Envoy prints them (%RESPONSE_FLAGS%).
_FLAGS = (
    ("failed_local_healthcheck", "LH"), ("no_healthy_upstream", "UH"), ("upstream_request_timeout", "UT"),
    ("local_reset", "LR"), ("upstream_remote_reset", "UR"), ("upstream_connection_failure", "UF"),
    ("upstream_connection_termination", "UC"), ("upstream_overflow", "UO"), ("no_route_found", "NR"),
    ("delay_injected", "DI"), ("fault_injected", "FI"), ("rate_limited", "RL"), ("unauthorized_details", "UAEX"),
    ("rate_limit_service_error", "RLSE"), ("downstream_connection_termination", "DC"),
    ("upstream_retry_limit_exceeded", "URX"), ("stream_idle_timeout", "SI"), ("invalid_envoy_request_headers", "IH"),
    ("downstream_protocol_error", "DPE"), ("upstream_max_stream_duration_reached", "UMSDR"),
    ("response_from_cache_filter", "RFCF"), ("no_filter_config_found", "NFCF"), ("duration_timeout", "DT"),
    ("upstream_protocol_error", "UPE"), ("no_cluster_found", "NC"), ("overload_manager", "OM"),
    ("dns_resolution_failure", "DF"), ("downstream_remote_reset", "DR"),
)

Directory = Callable[[str], PeerInfo | None]  # "IP" -> the workload registered there


@dataclass(frozen=True)
class Sides:
    """Who called and who answered, as far as this reporter knows."""

    reporter: str
    source: PeerInfo | None
    destination: PeerInfo | None
    source_principal: str
    destination_principal: str
    security: str


def response_flags(flags: accesslog_pb2.ResponseFlags) -> str:
    # Only the fields set are listed (most requests: none), cheaper than reading all ~30 by name.
    present = {descriptor.name for descriptor, _ in flags.ListFields()}
    if not present:
        return "-"
    return ",".join(short for field, short in _FLAGS if field in present) or "-"


def http_labels(entry: accesslog_pb2.HTTPAccessLogEntry, *, me: PeerInfo, directory: Directory) -> dict[str, str]:
    common = entry.common_properties
    sides = _sides(common, me=me, directory=directory)
    headers = entry.request.request_headers
    grpc = headers.get("content-type", "").startswith("application/grpc")
    labels = _peer_labels(sides, common, authority=entry.request.authority, me=me)
    status = entry.response.response_trailers.get("grpc-status") or entry.response.response_headers.get("grpc-status")
    labels |= {
        "request_protocol": "grpc" if grpc else "http",
        "response_code": str(entry.response.response_code.value if entry.response.HasField("response_code") else 0),
        "grpc_response_status": (status or "") if grpc else "",
        "response_flags": response_flags(common.response_flags),
        "connection_security_policy": sides.security,
    }
    return {name: labels[name] for name in HTTP_LABELS}


def tcp_labels(entry: accesslog_pb2.TCPAccessLogEntry, *, me: PeerInfo, directory: Directory) -> dict[str, str]:
    common = entry.common_properties
    sides = _sides(common, me=me, directory=directory)
    labels = _peer_labels(sides, common, authority="", me=me)
    labels |= {
        "request_protocol": "tcp",
        "response_flags": response_flags(common.response_flags),
        "connection_security_policy": sides.security,
    }
    return {name: labels[name] for name in TCP_LABELS}


def _sides(common: accesslog_pb2.AccessLogCommon, *, me: PeerInfo, directory: Directory) -> Sides:
    reporter = common.custom_tags.get(TAG_REPORTER, SOURCE)
    peers = common.metadata.filter_metadata.get(PEER_NAMESPACE)
    key = DOWNSTREAM_PEER if reporter == DESTINATION else UPSTREAM_PEER
    header = peers.fields[key].string_value if peers is not None and key in peers.fields else ""
    peer = peer_metadata.decode(header) if header else None
    if reporter == DESTINATION:
        tls = common.tls_properties
        peer_san = _uri_san(tls.peer_certificate_properties)
        local_san = _uri_san(tls.local_certificate_properties)
        if peer is None:
            peer = directory(common.downstream_remote_address.socket_address.address)
        security = "mutual_tls" if peer_san and local_san else "none"
        return Sides(DESTINATION, peer, me, peer_san or UNKNOWN, local_san or UNKNOWN, security)
    if peer is None and common.upstream_cluster not in _SPECIAL_CLUSTERS:
        peer = directory(common.upstream_remote_address.socket_address.address)
    return Sides(SOURCE, me, peer, UNKNOWN, UNKNOWN, UNKNOWN)


def _uri_san(properties: accesslog_pb2.TLSProperties.CertificateProperties) -> str:
    return next((san.uri for san in properties.subject_alt_name if san.uri), "")


def _peer_labels(
    sides: Sides, common: accesslog_pb2.AccessLogCommon, *, authority: str, me: PeerInfo
) -> dict[str, str]:
    src, dst = sides.source, sides.destination
    src_namespace = _namespace_of(sides.source_principal) or (src.namespace if src else "")
    dst_namespace = _namespace_of(sides.destination_principal) or (dst.namespace if dst else "")
    service, name, namespace = _destination_service(common, authority=authority, me=me, reporter=sides.reporter)
    if namespace == UNKNOWN and dst_namespace:
        namespace = dst_namespace
    return {
        "reporter": sides.reporter,
        "source_workload": _known(src.workload if src else ""),
        "source_workload_namespace": _known(src_namespace),
        "source_principal": sides.source_principal,
        "source_app": _known(src.app if src else ""),
        "source_version": _known(src.version if src else ""),
        "source_canonical_service": _known(src.app if src else ""),
        "source_canonical_revision": (src.version if src else "") or "latest",
        "destination_workload": _known(dst.workload if dst else ""),
        "destination_workload_namespace": _known(dst_namespace),
        "destination_principal": sides.destination_principal,
        "destination_app": _known(dst.app if dst else ""),
        "destination_version": _known(dst.version if dst else ""),
        "destination_canonical_service": _known(dst.app if dst else ""),
        "destination_canonical_revision": (dst.version if dst else "") or "latest",
        "destination_service": service,
        "destination_service_name": name,
        "destination_service_namespace": namespace,
    }


def _destination_service(
    common: accesslog_pb2.AccessLogCommon, *, authority: str, me: PeerInfo, reporter: str
) -> tuple[str, str, str]:
    """(host, short name, namespace) as Istio derives them: the cluster's service, else the Host header."""
    tags: Mapping[str, str] = common.custom_tags
    if TAG_SERVICE in tags:
        return tags[TAG_SERVICE], tags.get(TAG_SERVICE_NAME, UNKNOWN), tags.get(TAG_SERVICE_NAMESPACE, UNKNOWN)
    host = _strip_port(authority)
    cluster = _ROUTE_CLUSTERS.get(common.route_name, common.upstream_cluster)
    if cluster in _SPECIAL_CLUSTERS:
        return _known(host), cluster, UNKNOWN
    parts = cluster.split("|")
    if len(parts) == 4 and parts[0] == "outbound" and parts[3]:
        host = parts[3]
    if not host:
        return UNKNOWN, UNKNOWN, UNKNOWN
    labels = host.split(".")
    if len(labels) > 2 and labels[2] == "svc":
        return host, labels[0], labels[1]
    if reporter == DESTINATION:
        # A request that reached this workload by a short name ("reviews:9080") names a service of its namespace.
        return host, labels[0], me.namespace if len(labels) == 1 else labels[1]
    return host, labels[0], UNKNOWN


def _strip_port(authority: str) -> str:
    if authority.startswith("["):
        return authority[1:].split("]", 1)[0]
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def _namespace_of(principal: str) -> str:
    """``spiffe://TD/ns/NS/sa/SA`` -> NS, as Istio reads a namespace from a SAN."""
    _, found, rest = principal.partition("/ns/")
    return rest.split("/", 1)[0] if found else ""


def _known(value: str) -> str:
    return value or UNKNOWN
