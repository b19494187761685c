"""Policy on the data path (Mixer's old job, done in Envoy as Istio does now).

Pure translation, run by Pilot after a proxy's listeners are built
(``add_policy``): on the side where a workload *receives* traffic (a
sidecar's inbound listeners, every listener of a gateway), each HTTP
connection manager gets, first in its filter chain,

* ``authn``: RequestAuthentication as Envoy's ``jwt_authn`` filter (tokens
  checked, their claims kept as dynamic metadata for authorization);
* ``authz``: AuthorizationPolicy as Envoy's ``rbac`` filters (CUSTOM, DENY,
  ALLOW, in Istio's order; AUDIT as shadow rules),

and each TCP filter chain gets ``authz``'s network ``rbac`` filter before
``tcp_proxy``. Which policies apply to a proxy follows Istio: the root
namespace's apply mesh-wide, a namespace's to its workloads, a selector or
``targetRef`` narrows them.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from malla.pilot.http_connection_manager import HCM_FILTER
from malla.pilot.network_filters import TCP_PROXY_FILTER
from malla.pilot.proto_values import typed
from malla.pilot.snapshot import MeshSnapshot, Proxy
from malla.policy import authn, authz

Listener = listener_pb2.Listener
HttpConnectionManager = hcm_pb2.HttpConnectionManager


def add_policy(listeners: list[Listener], *, proxy: Proxy, snapshot: MeshSnapshot) -> list[Listener]:
    """Put authentication and authorization filters on the receiving side's chains (in place; returned)."""
    for listener in listeners:
        receiving = proxy.is_router or listener.traffic_direction == base_pb2.INBOUND
        if not receiving:
            continue
        chains = list(listener.filter_chains)
        if listener.HasField("default_filter_chain"):
            chains.append(listener.default_filter_chain)
        for chain in chains:
            port = chain.filter_chain_match.destination_port.value or listener.address.socket_address.port_value
            _secure_chain(chain, proxy=proxy, snapshot=snapshot, port=port)
    return listeners


def _secure_chain(chain: listener_pb2.FilterChain, *, proxy: Proxy, snapshot: MeshSnapshot, port: int) -> None:
    filters = list(chain.filters)
    for index, network_filter in enumerate(filters):
        if network_filter.name == HCM_FILTER:
            first = [*authn.http_filters(proxy, snapshot, port=port), *authz.http_filters(proxy, snapshot, port=port)]
            if first:
                manager = HttpConnectionManager.FromString(network_filter.typed_config.value)
                rest = list(manager.http_filters)
                del manager.http_filters[:]
                manager.http_filters.extend([*first, *rest])
                network_filter.typed_config.CopyFrom(typed(manager))
        elif network_filter.name == TCP_PROXY_FILTER:
            before = authz.network_filters(proxy, snapshot, port=port)
            if before:
                filters[index:index] = before
                del chain.filters[:]
                chain.filters.extend(filters)
            return
