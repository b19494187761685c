"""The tcp_proxy in front of outbound clusters, with what their DestinationRule asks of it.

A listener that forwards TCP (sidecar TCP and TLS ports, gateway TCP and TLS
passthrough servers) ends in a ``tcp_proxy`` to one cluster or to weighted
clusters. Two DestinationRule fields act there rather than on the cluster,
as in Istio's ``buildOutboundNetworkFilters``:

- ``loadBalancer.consistentHash.useSourceIp``: the tcp_proxy hashes the
  downstream source address (the cluster is RING_HASH or MAGLEV already), so
  one client keeps reaching one endpoint;
- ``tunnel``: the tcp_proxy opens an HTTP CONNECT (or POST) request to
  ``targetHost:targetPort`` through the cluster, the tunnel's proxy.

The rule is the one of the first destination's host. With one destination
its subset's policy counts; with weighted destinations the rule's top-level
policy does (a subset's tunnel cannot apply to a split, since the tcp_proxy
is shared by all its clusters).
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from malla.pilot import names
from malla.pilot.destination_rules import EffectivePolicy
from malla.pilot.network_filters import tcp_proxy_filter
from malla.pilot.proto_values import typed
from malla.pilot.snapshot import MeshSnapshot, Proxy
from malla.pilot.traffic_policy import translate_tcp_hash_policy, translate_tunnel


def tcp_proxy_to(
    clusters: Sequence[tuple[str, int]], *, stat_prefix: str, proxy: Proxy, snapshot: MeshSnapshot, tunnel: bool = True
) -> lc.Filter:
    """A tcp_proxy filter to ``clusters`` carrying their DestinationRule's hash policy and tunnel.

    ``tunnel=False`` leaves tunnels out, as for AUTO_PASSTHROUGH gateway chains
    whose traffic already is a mesh connection.
    """
    out = tcp_proxy_filter(stat_prefix=stat_prefix, clusters=clusters)
    policy = destination_policy(clusters, proxy=proxy, snapshot=snapshot)
    if policy is None:
        return out
    fragment = tcp_proxy_pb2.TcpProxy(hash_policy=translate_tcp_hash_policy(policy.load_balancer))
    tunneling = translate_tunnel(policy.tunnel) if tunnel else None
    if tunneling is not None:
        fragment.tunneling_config.CopyFrom(tunneling)
    if not fragment.ByteSize():
        return out
    config = tcp_proxy_pb2.TcpProxy()
    out.typed_config.Unpack(config)
    config.MergeFrom(fragment)
    out.typed_config.CopyFrom(typed(config))
    return out


def destination_policy(
    clusters: Sequence[tuple[str, int]], *, proxy: Proxy, snapshot: MeshSnapshot
) -> EffectivePolicy | None:
    """The policy the first destination's rule sets for the tcp_proxy (see the module docstring)."""
    if not clusters:
        return None
    try:
        key = names.parse_cluster_name(clusters[0][0])
    except ValueError:
        return None  # PassthroughCluster, BlackHoleCluster: no rule applies
    if key.direction is not names.Direction.OUTBOUND:
        return None
    service = snapshot.registry.service(key.host, namespace=proxy.namespace)
    if service is None:
        return None
    rule = snapshot.destination_rule(proxy, service)
    if rule is None:
        return None
    subset = key.subset if len(clusters) == 1 and key.subset else None
    return rule.policy(port=key.port, subset=subset)
