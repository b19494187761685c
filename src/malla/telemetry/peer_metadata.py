"""Who a peer is, in Istio's ``x-envoy-peer-metadata`` header format (pure).

Istio's proxies exchange a base64-encoded, serialized ``google.protobuf.Struct``
with keys ``NAME`` (the instance), ``NAMESPACE``, ``WORKLOAD_NAME``,
``CLUSTER_ID`` and ``LABELS`` (``app``, ``version``, the canonical service
labels), plus ``x-envoy-peer-metadata-id`` with the node id. malla writes the
same keys (and ``SERVICE_ACCOUNT``), so an Istio proxy reading malla's header,
or malla reading Istio's, finds the fields where it expects them.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError

METADATA_HEADER = "x-envoy-peer-metadata"
METADATA_ID_HEADER = "x-envoy-peer-metadata-id"
CANONICAL_NAME = "service.istio.io/canonical-name"
CANONICAL_REVISION = "service.istio.io/canonical-revision"


@dataclass(frozen=True)
class PeerInfo:
    """One side of a request, as the metrics name it."""

    workload: str = ""
    namespace: str = ""
    app: str = ""
    version: str = ""
    service_account: str = ""
    instance: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        *,
        workload: str,
        namespace: str,
        labels: Mapping[str, str],
        service_account: str = "",
        instance: str = "",
    ) -> PeerInfo:
        """Istio's reading of labels: ``app`` (else the canonical name) and ``version``."""
        return cls(
            workload=workload,
            namespace=namespace,
            app=labels.get("app") or labels.get(CANONICAL_NAME, ""),
            version=labels.get("version") or labels.get(CANONICAL_REVISION, ""),
            service_account=service_account,
            instance=instance,
            labels=dict(labels),
        )


def encode(peer: PeerInfo) -> str:
    """The header value: base64 of the deterministic serialization of Istio's ``Struct``."""
    labels = dict(peer.labels)
    if peer.app:
        labels.setdefault("app", peer.app)
        labels.setdefault(CANONICAL_NAME, peer.app)
    if peer.version:
        labels.setdefault("version", peer.version)
        labels.setdefault(CANONICAL_REVISION, peer.version)
    fields = {
        "NAME": peer.instance,
        "NAMESPACE": peer.namespace,
        "WORKLOAD_NAME": peer.workload,
        "SERVICE_ACCOUNT": peer.service_account,
    }
    message = struct_pb2.Struct()
    message.update({k: v for k, v in fields.items() if v})
    if labels:
        message.update({"LABELS": dict(sorted(labels.items()))})
    return base64.b64encode(message.SerializeToString(deterministic=True)).decode()


@functools.lru_cache(maxsize=4096)
def decode(value: str) -> PeerInfo | None:
    """A peer from a header value; None when it is not Istio's format (a client may send anything).

    Remembered: every request between two workloads carries the same value, and the agent decodes
    one per request (bounded, so values a client invents cannot grow it).
    """
    if not value:
        return None
    try:
        message = struct_pb2.Struct.FromString(base64.b64decode(value, validate=True))
    except (binascii.Error, DecodeError, ValueError):
        return None
    data = {k: v for k, v in message.items()}
    labels_value = data.get("LABELS")
    labels = {str(k): str(v) for k, v in labels_value.items()} if isinstance(labels_value, struct_pb2.Struct) else {}
    text = {k: v for k, v in data.items() if isinstance(v, str)}
    return PeerInfo.of(
        workload=text.get("WORKLOAD_NAME", ""),
        namespace=text.get("NAMESPACE", ""),
        labels=labels,
        service_account=text.get("SERVICE_ACCOUNT", ""),
        instance=text.get("NAME", ""),
    )
