"""Envoy resource types as the xDS server sees them: type URLs, order, versions.

In: Envoy protos. Out: their type URL, their name, a deterministic
serialization and a content-hash version. Versions are hashes of content, not
counters, so a restarted server never hands Envoy a version string that
already means something else to it.

Push order follows Envoy's make-before-break advice: clusters, then their
endpoints, then listeners, then routes (secrets last, as Istio does; Envoy
asks for them by name when clusters and listeners reference them). Listeners
and routes wait for clusters added in the same push to warm. Removals go in
the reverse order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

_PREFIX = "type.googleapis.com/"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

PUSH_ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)

# Types whose resources send traffic to clusters by name. While clusters that a
# push added are warming (Envoy ACKs their CDS response once they have their
# endpoints), these wait: a route naming a cluster Envoy does not have yet is
# answered 503 (NC). Secrets never wait: warming clusters may need them.
AFTER_WARM_CLUSTERS = frozenset({LISTENER, ROUTE})

# An empty first request for these types means "everything for this node".
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})
# In SotW, a response for these types is the whole set: a missing resource is
# deleted. For the other types a response may carry only some resources.
FULL_STATE_TYPES = frozenset({CLUSTER, LISTENER})

MESSAGE_CLASSES: Mapping[str, type[Message]] = {
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration,
    SECRET: secret_pb2.Secret,
}

SHORT_NAMES: Mapping[str, str] = {
    CLUSTER: "CDS", ENDPOINT: "EDS", LISTENER: "LDS", ROUTE: "RDS", SECRET: "SDS",
}

_VERSION_CHARS = 16


def short_name(type_url: str) -> str:
    """CDS/EDS/LDS/RDS/SDS, or the message name for other types."""
    return SHORT_NAMES.get(type_url) or type_url.rsplit(".", 1)[-1]


def push_rank(type_url: str) -> tuple[int, str]:
    """Sort key: known types in push order, then any other type by URL."""
    try:
        return (PUSH_ORDER.index(type_url), "")
    except ValueError:
        return (len(PUSH_ORDER), type_url)


def type_url_of(message: Message) -> str:
    return _PREFIX + message.DESCRIPTOR.full_name


def resource_name(message: Message) -> str:
    """The name Envoy subscribes to a resource by."""
    if isinstance(message, endpoint_pb2.ClusterLoadAssignment):
        return message.cluster_name
    return str(getattr(message, "name"))


def serialize(message: Message) -> bytes:
    """Deterministic bytes (map fields sorted), the input of content hashes."""
    return message.SerializeToString(deterministic=True)


def pack(message: Message) -> any_pb2.Any:
    """Pack into an Any deterministically, for typed_config fields."""
    packed = any_pb2.Any()
    packed.Pack(message, deterministic=True)
    return packed


def resource_version(type_url: str, name: str, payload: bytes) -> str:
    """Content hash of one resource: equal content, equal version, on any server."""
    digest = hashlib.sha256()
    for part in (type_url.encode(), name.encode(), payload):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:_VERSION_CHARS]


def set_version(versions: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """Content hash of a set of (name, version) pairs, order-independent."""
    pairs = versions.items() if isinstance(versions, Mapping) else versions
    text = "".join(f"{name}\0{version}\n" for name, version in sorted(pairs))
    return hashlib.sha256(text.encode()).hexdigest()[:_VERSION_CHARS]


def eds_service_name(cluster: Any) -> str | None:
    """The ClusterLoadAssignment name an EDS cluster subscribes to, else None."""
    if cluster.WhichOneof("cluster_discovery_type") != "type":
        return None
    if cluster.type != cluster_pb2.Cluster.EDS:
        return None
    return cluster.eds_cluster_config.service_name or cluster.name
