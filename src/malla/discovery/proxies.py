"""Who a connecting Envoy is: node metadata <-> ``Proxy``.

The agent writes the metadata into the bootstrap (``node_metadata``); the
control plane reads it back when the proxy connects (``proxy_from_node``).
Keys follow Istio's where Istio has one (NAME, NAMESPACE, LABELS,
INSTANCE_IPS, SERVICE_ACCOUNT); malla's own start with MALLA_.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from malla.pilot.protocol import Protocol
from malla.pilot.snapshot import CaptureMode, InboundPort, Proxy, ProxyKind, XdsMode


class NodeMetadataError(ValueError):
    """The node's metadata does not describe a proxy malla can configure."""


def node_metadata(proxy: Proxy, *, workload_name: str) -> dict[str, Any]:
    """The bootstrap node metadata that describes ``proxy``."""
    return {
        "NAME": workload_name,
        "NAMESPACE": proxy.namespace,
        "LABELS": dict(proxy.labels),
        "INSTANCE_IPS": proxy.ip,
        "SERVICE_ACCOUNT": proxy.service_account,
        "MALLA_PROXY_KIND": proxy.kind.value,
        "MALLA_APP_ADDRESS": proxy.app_address,
        "MALLA_INBOUND": [
            {"port": p.port, "appPort": p.app_port, "name": p.name, "protocol": p.protocol.value} for p in proxy.inbound
        ],
        "MALLA_OUTBOUND_PORT": proxy.outbound_port,
        "MALLA_CAPTURE": proxy.capture.value,
        "MALLA_XDS_MODE": proxy.xds_mode.value,
        "MALLA_ACCESS_LOG_SERVICE": proxy.access_log_service,
        "MALLA_METRICS_ADDRESS": proxy.metrics_address,
    }


def proxy_from_node(node_id: str, metadata: Mapping[str, Any], *, locality: str = "") -> Proxy:
    """Rebuild the ``Proxy`` from what the agent put in the bootstrap."""
    if not node_id:
        raise NodeMetadataError("the node has no id")
    namespace = metadata.get("NAMESPACE")
    if not isinstance(namespace, str) or not namespace:
        raise NodeMetadataError(f"node {node_id}: metadata NAMESPACE is missing; was it started by malla run or malla gateway?")
    try:
        inbound = tuple(
            InboundPort(
                port=int(p["port"]),
                app_port=int(p.get("appPort") or p["port"]),
                name=str(p.get("name") or ""),
                protocol=Protocol(str(p.get("protocol") or Protocol.TCP.value)),
            )
            for p in metadata.get("MALLA_INBOUND") or ()
        )
        outbound = metadata.get("MALLA_OUTBOUND_PORT")
        return Proxy(
            id=node_id,
            namespace=namespace,
            kind=ProxyKind(str(metadata.get("MALLA_PROXY_KIND") or ProxyKind.SIDECAR.value)),
            labels={str(k): str(v) for k, v in (metadata.get("LABELS") or {}).items()},
            ip=str(metadata.get("INSTANCE_IPS") or "127.0.0.1").split(",")[0],
            app_address=str(metadata.get("MALLA_APP_ADDRESS") or "127.0.0.1"),
            service_account=str(metadata.get("SERVICE_ACCOUNT") or "default"),
            inbound=inbound,
            outbound_port=int(outbound) if outbound not in (None, "") else None,
            locality=locality,
            xds_mode=XdsMode(str(metadata.get("MALLA_XDS_MODE") or XdsMode.SOTW.value)),
            capture=CaptureMode(str(metadata.get("MALLA_CAPTURE") or CaptureMode.EXPLICIT.value)),
            workload_name=str(metadata.get("NAME") or ""),
            access_log_service=str(metadata.get("MALLA_ACCESS_LOG_SERVICE") or ""),
            metrics_address=str(metadata.get("MALLA_METRICS_ADDRESS") or ""),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise NodeMetadataError(f"node {node_id}: invalid malla metadata: {exc}") from exc
