"""The HTTP connection manager every HTTP listener and filter chain uses, with its filters.

Routes always come over RDS (ADS). The HTTP filters are Istio's order for
what malla translates: fault (per-route faults), CORS (per-route policies),
the dynamic forward proxy on an explicit-proxy sidecar's outbound side (so
that ``PassthroughCluster`` can reach hosts by name), then the router.
Filters that other parts of malla add (authorization, authentication,
telemetry) come as ``extra_filters`` and go before the router.
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.dynamic_forward_proxy.v3 import dynamic_forward_proxy_pb2 as dfp
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from malla.pilot.clusters import forward_proxy_dns_cache
from malla.pilot.proto_values import ads_source, typed
from malla.pilot.routes_http import CORS_FILTER, FAULT_FILTER
from malla.pilot.snapshot import MeshConfig

HCM_FILTER = "envoy.filters.network.http_connection_manager"
HttpConnectionManager = hcm_pb2.HttpConnectionManager
HttpFilter = hcm_pb2.HttpFilter


def build_http_filters(
    *, mesh: MeshConfig, forward_proxy: bool, extra_filters: Sequence[HttpFilter] = ()
) -> list[HttpFilter]:
    filters = [
        HttpFilter(name=FAULT_FILTER, typed_config=typed(fault_pb2.HTTPFault())),
        HttpFilter(name=CORS_FILTER, typed_config=typed(cors_pb2.Cors())),
        *extra_filters,
    ]
    if forward_proxy:
        config = dfp.FilterConfig(dns_cache_config=forward_proxy_dns_cache(mesh))
        filters.append(HttpFilter(name="envoy.filters.http.dynamic_forward_proxy", typed_config=typed(config)))
    filters.append(HttpFilter(name="envoy.filters.http.router", typed_config=typed(router_pb2.Router())))
    return filters


def build_http_connection_manager(
    *,
    stat_prefix: str,
    route_name: str,
    mesh: MeshConfig,
    inbound: bool = False,
    gateway: bool = False,
    forward_proxy: bool = False,
    extra_filters: Sequence[HttpFilter] = (),
) -> HttpConnectionManager:
    out = HttpConnectionManager(
        stat_prefix=stat_prefix,
        codec_type=HttpConnectionManager.AUTO,
        http_filters=build_http_filters(mesh=mesh, forward_proxy=forward_proxy, extra_filters=extra_filters),
        normalize_path={"value": True},
        path_with_escaped_slashes_action=HttpConnectionManager.KEEP_UNCHANGED,
        use_remote_address={"value": gateway},
        upgrade_configs=[HttpConnectionManager.UpgradeConfig(upgrade_type="websocket")],
    )
    out.rds.config_source.CopyFrom(ads_source())
    out.rds.route_config_name = route_name
    if gateway:
        # Gateways match virtual hosts by name only: "bookinfo.example.com:8080" finds "bookinfo.example.com".
        out.strip_any_host_port = True
    if inbound:
        # The app learns its caller's SPIFFE identity from x-forwarded-client-cert, never from the caller.
        out.forward_client_cert_details = HttpConnectionManager.SANITIZE_SET
        out.set_current_client_cert_details.uri = True
    if mesh.access_log_path:
        out.access_log.append(
            accesslog_pb2.AccessLog(
                name="envoy.access_loggers.file", typed_config=typed(file_pb2.FileAccessLog(path=mesh.access_log_path))
            )
        )
    return out


def hcm_filter(manager: HttpConnectionManager) -> lc.Filter:
    return lc.Filter(name=HCM_FILTER, typed_config=typed(manager))
