"""Network and listener filters that listeners of every direction share.

``tcp_proxy`` to one cluster or to weighted clusters (VirtualService
``tcp``/``tls`` routes), and the TLS inspector that lets filter chains match
on SNI and on TLS versus plaintext.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from malla.pilot.proto_values import typed

TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"


def tcp_proxy_filter(*, stat_prefix: str, clusters: Sequence[tuple[str, int]]) -> lc.Filter:
    """Send the connection to one cluster, or split connections by weight."""
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix)
    if len(clusters) == 1:
        proxy.cluster = clusters[0][0]
    else:
        for name, weight in clusters:
            proxy.weighted_clusters.clusters.add(name=name, weight=weight)
    return lc.Filter(name=TCP_PROXY_FILTER, typed_config=typed(proxy))


def route_clusters(destinations: Sequence[Any], cluster_for: Callable[[Any], str]) -> list[tuple[str, int]]:
    """VirtualService ``RouteDestination``s -> (cluster, weight); zero weights dropped as Istio does."""
    if len(destinations) == 1:
        return [(cluster_for(destinations[0].destination), 100)]
    total = sum(d.weight or 0 for d in destinations)
    return [
        (cluster_for(d.destination), d.weight if total else 1) for d in destinations if not total or (d.weight or 0) > 0
    ]


def tls_inspector() -> lc.ListenerFilter:
    return lc.ListenerFilter(name=TLS_INSPECTOR, typed_config=typed(tls_inspector_pb2.TlsInspector()))
