"""Pure builder of the bootstrap for an Envoy that takes everything from ADS.

In: who the proxy is (node id, cluster, metadata, locality), where the control
plane listens (TCP or a Unix socket), SotW or Delta, where admin listens.
Out: a dict ready for `json.dumps` (JSON is YAML, so it also feeds
`--config-yaml`), or the `Bootstrap` proto via `bootstrap_proto()`.

The control plane is a static cluster named `xds-grpc` speaking HTTP/2; CDS and
LDS come over ADS, and so must every RDS/EDS/SDS reference inside them.
No I/O, no clock, no environment.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

XDS_CLUSTER = "xds-grpc"
_HTTP_OPTIONS_NAME = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_HTTP_OPTIONS_TYPE = "type.googleapis.com/" + _HTTP_OPTIONS_NAME

XdsMode = Literal["sotw", "delta"]

# Envoy refuses a regex whose RE2 program exceeds 100 instructions unless its runtime
# says otherwise; Istio's bootstrap allows 32768, so the header and URI regexes Istio
# accepts (an e-mail pattern is about 750) are accepted by every Envoy malla starts.
RE2_MAX_PROGRAM_SIZE = 32768


def layered_runtime() -> dict[str, Any]:
    """The runtime of every bootstrap: Istio's RE2 program size limit, then an admin layer."""
    return {
        "layers": [
            {"name": "global config", "static_layer": {"re2.max_program_size.error_level": RE2_MAX_PROGRAM_SIZE}},
            {"name": "admin", "admin_layer": {}},
        ]
    }


@dataclass(frozen=True)
class TcpAddress:
    """A host (IP or DNS name) and port; port 0 asks the kernel for a free one."""

    host: str
    port: int


@dataclass(frozen=True)
class UnixAddress:
    """A Unix domain socket path."""

    path: str


Address = TcpAddress | UnixAddress


@dataclass(frozen=True)
class Locality:
    """Where the proxy runs, as Envoy's `core.v3.Locality`."""

    region: str = ""
    zone: str = ""
    sub_zone: str = ""


def build_bootstrap(
    *,
    node_id: str,
    node_cluster: str,
    xds_address: Address,
    mode: XdsMode = "sotw",
    node_metadata: Mapping[str, Any] | None = None,
    locality: Locality | None = None,
    admin_address: Address = TcpAddress("127.0.0.1", 0),
    initial_fetch_timeout_s: float = 0.0,
    reconnect_backoff_s: tuple[float, float] = (0.25, 5.0),
    xds_transport_socket: Mapping[str, Any] | None = None,
    stats_config: Mapping[str, Any] | None = None,
    stats_sinks: tuple[Mapping[str, Any], ...] = (),
) -> dict[str, Any]:
    """Return the bootstrap of a proxy that gets listeners and clusters over ADS.

    `initial_fetch_timeout_s=0` (Istio's choice) keeps Envoy un-ready until
    the control plane has answered, so "ready" means "configured".
    The runtime (`layered_runtime()`) raises the RE2 program size limit to Istio's
    and keeps an admin layer for runtime overrides.
    `reconnect_backoff_s` is (base, max) of Envoy's jittered reconnect backoff
    towards the control plane. `xds_transport_socket` (e.g. mTLS to 15012),
    `stats_config` and `stats_sinks` are passed through as given.
    """
    _check_inputs(node_id=node_id, mode=mode, timeout=initial_fetch_timeout_s,
                  backoff=reconnect_backoff_s)
    config_source = {
        "ads": {},
        "resource_api_version": "V3",
        "initial_fetch_timeout": _duration(initial_fetch_timeout_s),
    }
    bootstrap: dict[str, Any] = {
        "node": _node(node_id, node_cluster, node_metadata, locality),
        "dynamic_resources": {
            "ads_config": _ads_config(mode, reconnect_backoff_s),
            "cds_config": dict(config_source),
            "lds_config": dict(config_source),
        },
        "static_resources": {
            "clusters": [_xds_cluster(xds_address, xds_transport_socket)],
        },
        "admin": {"address": _address(admin_address)},
        "layered_runtime": layered_runtime(),
    }
    if stats_config is not None:
        bootstrap["stats_config"] = dict(stats_config)
    if stats_sinks:
        bootstrap["stats_sinks"] = [dict(sink) for sink in stats_sinks]
    return bootstrap


def bootstrap_proto(bootstrap: Mapping[str, Any]) -> Any:
    """Parse a bootstrap dict into `envoy.config.bootstrap.v3.Bootstrap`.

    Catches unknown fields and wrong types; Envoy's own field rules (ranges,
    required fields) are only checked by `envoy --mode validate`.
    """
    from envoy.config.bootstrap.v3 import bootstrap_pb2
    from envoy.extensions.upstreams.http.v3 import (  # noqa: F401  registers the Any type
        http_protocol_options_pb2,
    )
    from google.protobuf import json_format

    message = bootstrap_pb2.Bootstrap()
    json_format.ParseDict(bootstrap, message)
    return message


def _check_inputs(*, node_id: str, mode: str, timeout: float,
                  backoff: tuple[float, float]) -> None:
    if not node_id:
        raise ValueError("node_id: must not be empty (Envoy's control plane keys proxies by it)")
    if mode not in ("sotw", "delta"):
        raise ValueError(f"mode: {mode!r} is not allowed; use 'sotw' or 'delta'")
    if timeout < 0:
        raise ValueError(f"initial_fetch_timeout_s: {timeout} is negative; use 0 (wait "
                         "forever) or a positive number of seconds")
    base, maximum = backoff
    if base <= 0 or maximum < base:
        raise ValueError(f"reconnect_backoff_s: {backoff} must be (base, max) "
                         "with 0 < base <= max")


def _node(node_id: str, cluster: str, metadata: Mapping[str, Any] | None,
          locality: Locality | None) -> dict[str, Any]:
    node: dict[str, Any] = {"id": node_id, "cluster": cluster}
    if metadata:
        node["metadata"] = dict(metadata)
    if locality is not None:
        fields = {"region": locality.region, "zone": locality.zone,
                  "sub_zone": locality.sub_zone}
        node["locality"] = {key: value for key, value in fields.items() if value}
    return node


def _ads_config(mode: XdsMode, backoff: tuple[float, float]) -> dict[str, Any]:
    base, maximum = backoff
    return {
        "api_type": "DELTA_GRPC" if mode == "delta" else "GRPC",
        "transport_api_version": "V3",
        # The server remembers the node from the first request of a stream.
        "set_node_on_first_message_only": True,
        "grpc_services": [{
            "envoy_grpc": {
                "cluster_name": XDS_CLUSTER,
                "retry_policy": {"retry_back_off": {
                    "base_interval": _duration(base),
                    "max_interval": _duration(maximum),
                }},
            },
        }],
    }


def _xds_cluster(address: Address,
                 transport_socket: Mapping[str, Any] | None) -> dict[str, Any]:
    limits = {"max_connections": 100000, "max_pending_requests": 100000,
              "max_requests": 100000}
    cluster: dict[str, Any] = {
        "name": XDS_CLUSTER,
        "type": _discovery_type(address),
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(address)}}]}],
        },
        # The control plane stream must never be throttled by Envoy's defaults.
        "circuit_breakers": {"thresholds": [
            {"priority": "DEFAULT", **limits}, {"priority": "HIGH", **limits},
        ]},
        "typed_extension_protocol_options": {_HTTP_OPTIONS_NAME: {
            "@type": _HTTP_OPTIONS_TYPE,
            "explicit_http_config": {"http2_protocol_options": {
                # Finds a dead control plane long before TCP would.
                "connection_keepalive": {"interval": "30s", "timeout": "10s"},
            }},
        }},
    }
    if isinstance(address, TcpAddress):
        cluster["upstream_connection_options"] = {"tcp_keepalive": {"keepalive_time": 300}}
    if transport_socket is not None:
        cluster["transport_socket"] = dict(transport_socket)
    return cluster


def _discovery_type(address: Address) -> str:
    if isinstance(address, UnixAddress):
        return "STATIC"
    try:
        ipaddress.ip_address(address.host)
    except ValueError:
        return "LOGICAL_DNS"
    return "STATIC"


def _address(address: Address) -> dict[str, Any]:
    if isinstance(address, UnixAddress):
        if not address.path:
            raise ValueError("address.path: a Unix socket path must not be empty")
        return {"pipe": {"path": address.path}}
    if not 0 <= address.port <= 65535:
        raise ValueError(f"address.port: {address.port} is outside 0..65535")
    return {"socket_address": {"address": address.host, "port_value": address.port}}


def _duration(seconds: float) -> str:
    # Envoy's JSON Duration: decimal seconds with an "s" suffix, at most 9 decimals.
    text = f"{seconds:.9f}".rstrip("0").rstrip(".")
    return f"{text}s"
