"""A hand-written SnapshotView and request builders for the protocol tests."""

from __future__ import annotations

from collections.abc import Mapping

from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from malla.xds import resources
from malla.xds.protocol import Send

CDS, EDS, LDS, RDS = resources.CLUSTER, resources.ENDPOINT, resources.LISTENER, resources.ROUTE


class View:
    """{type: {name: version}} plus the EDS name of each EDS cluster."""

    def __init__(self, types: Mapping[str, Mapping[str, str]], *,
                 eds: Mapping[str, str] | None = None) -> None:
        self._types = {t: dict(v) for t, v in types.items()}
        self._eds = dict(eds or {})

    def versions(self, type_url: str) -> Mapping[str, str]:
        return self._types.get(type_url, {})

    def type_version(self, type_url: str) -> str:
        return resources.set_version(self.versions(type_url))

    def eds_name(self, cluster_name: str) -> str | None:
        return self._eds.get(cluster_name)


def sotw(type_url: str, names: tuple[str, ...] = (), *, nonce: str = "", version: str = "",
         error: str | None = None) -> discovery_pb2.DiscoveryRequest:
    request = discovery_pb2.DiscoveryRequest(
        type_url=type_url, resource_names=list(names), response_nonce=nonce,
        version_info=version)
    if error is not None:
        request.error_detail.CopyFrom(status_pb2.Status(code=13, message=error))
    return request


def delta(type_url: str, *, subscribe: tuple[str, ...] = (), unsubscribe: tuple[str, ...] = (),
          nonce: str = "", error: str | None = None,
          initial: Mapping[str, str] | None = None) -> discovery_pb2.DeltaDiscoveryRequest:
    request = discovery_pb2.DeltaDiscoveryRequest(
        type_url=type_url, resource_names_subscribe=list(subscribe),
        resource_names_unsubscribe=list(unsubscribe), response_nonce=nonce,
        initial_resource_versions=dict(initial or {}))
    if error is not None:
        request.error_detail.CopyFrom(status_pb2.Status(code=13, message=error))
    return request


def sends(actions: list[object]) -> list[Send]:
    return [a for a in actions if isinstance(a, Send)]


def only_send(actions: list[object]) -> Send:
    found = sends(actions)
    assert len(found) == 1, f"expected one Send, got {actions}"
    return found[0]


def ack_of(send: Send, *, names: tuple[str, ...] = ()) -> discovery_pb2.DiscoveryRequest:
    """The SotW ACK Envoy sends for `send`."""
    return sotw(send.type_url, names, nonce=send.nonce, version=send.version)
