"""A sidecar's inbound listener: ``virtualInbound``, in front of its app.

Peers reach a workload at the address and ports it registered (its
endpoints). The sidecar binds all of them with one listener, ``virtualInbound``
(the first port as its address, the rest as additional addresses), and picks
a filter chain by destination port and, as PeerAuthentication says, by
transport: STRICT accepts only Istio mTLS, PERMISSIVE also plaintext,
DISABLE only plaintext. HTTP ports go through an HTTP connection manager
(route configuration ``inbound|PORT||``), the rest through tcp_proxy; both
end at the inbound cluster ``inbound|PORT||``, the app's local address.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from malla.pilot import names
from malla.pilot.cluster_tls import TLS_SOCKET, sds_secret
from malla.pilot.endpoints import socket_address
from malla.pilot.http_connection_manager import build_http_connection_manager, hcm_filter
from malla.pilot.network_filters import tcp_proxy_filter, tls_inspector
from malla.pilot.peer_authentication import DISABLE, PERMISSIVE, STRICT, mtls_mode
from malla.pilot.proto_values import typed
from malla.pilot.snapshot import InboundPort, MeshConfig, MeshSnapshot, Proxy

Listener = listener_pb2.Listener


def build_inbound_listeners(proxy: Proxy, snapshot: MeshSnapshot) -> list[Listener]:
    if not proxy.inbound:
        return []
    ports = sorted(proxy.inbound, key=lambda p: p.port)
    listener = Listener(
        name=names.VIRTUAL_INBOUND_LISTENER,
        address=socket_address(proxy.ip, ports[0].port),
        traffic_direction=base_pb2.INBOUND,
    )
    for extra in ports[1:]:
        listener.additional_addresses.add().address.CopyFrom(socket_address(proxy.ip, extra.port))
    listener.filter_chains.extend(inbound_chains(proxy, snapshot))
    if any(c.filter_chain_match.transport_protocol for c in listener.filter_chains):
        listener.listener_filters.append(tls_inspector())
    return [listener]


def inbound_chains(proxy: Proxy, snapshot: MeshSnapshot) -> list[lc.FilterChain]:
    """Per served port, the chains PeerAuthentication allows (mTLS, plaintext or both)."""
    out = []
    for inbound in sorted(proxy.inbound, key=lambda p: p.port):
        mode = mtls_mode(snapshot, namespace=proxy.namespace, labels=proxy.labels, port=inbound.port)
        out += _chains(inbound, mode, snapshot.mesh)
    return out


def _chains(inbound: InboundPort, mode: str, mesh: MeshConfig) -> list[lc.FilterChain]:
    cluster = names.inbound_cluster_name(inbound.port)
    out = []
    if mode in (STRICT, PERMISSIVE):
        chain = lc.FilterChain(
            name=f"{cluster}-mtls",
            filter_chain_match=lc.FilterChainMatch(destination_port={"value": inbound.port}, transport_protocol="tls"),
            filters=[_terminal(inbound, mesh)],
        )
        chain.transport_socket.name = TLS_SOCKET
        chain.transport_socket.typed_config.CopyFrom(typed(_mtls_context(inbound, mesh)))
        out.append(chain)
    if mode in (PERMISSIVE, DISABLE):
        match = lc.FilterChainMatch(destination_port={"value": inbound.port})
        if mode == PERMISSIVE:
            match.transport_protocol = "raw_buffer"
        out.append(lc.FilterChain(name=cluster, filter_chain_match=match, filters=[_terminal(inbound, mesh)]))
    return out


def _terminal(inbound: InboundPort, mesh: MeshConfig) -> lc.Filter:
    cluster = names.inbound_cluster_name(inbound.port)
    stat_prefix = f"inbound_{names.listener_name('0.0.0.0', inbound.port)}"
    if inbound.protocol.is_http:
        manager = build_http_connection_manager(stat_prefix=stat_prefix, route_name=cluster, mesh=mesh, inbound=True)
        return hcm_filter(manager)
    return tcp_proxy_filter(stat_prefix=cluster, clusters=[(cluster, 100)])


def _mtls_context(inbound: InboundPort, mesh: MeshConfig) -> tls_pb2.DownstreamTlsContext:
    """Istio mTLS, server side: the workload certificate, peers verified against the mesh CA."""
    common = tls_pb2.CommonTlsContext()
    common.tls_params.tls_minimum_protocol_version = common.tls_params.TLSv1_2
    common.tls_params.tls_maximum_protocol_version = common.tls_params.TLSv1_3
    common.tls_certificate_sds_secret_configs.append(
        sds_secret(names.WORKLOAD_CERT_SECRET, sds_cluster=mesh.sds_cluster)
    )
    common.combined_validation_context.default_validation_context.SetInParent()
    common.combined_validation_context.validation_context_sds_secret_config.CopyFrom(
        sds_secret(names.ROOT_CA_SECRET, sds_cluster=mesh.sds_cluster)
    )
    if inbound.protocol.is_http:
        common.alpn_protocols.extend(["h2", "http/1.1"])
    return tls_pb2.DownstreamTlsContext(common_tls_context=common, require_client_certificate={"value": True})
