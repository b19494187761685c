"""A sidecar's inbound listeners: ``virtualInbound``, and listeners of their own for Sidecar ingress ports.

Peers reach a workload at the address and ports it registered (its
endpoints). The sidecar binds all of them with one listener, ``virtualInbound``
(the first port as its address, the rest as additional addresses), and picks
a filter chain by destination port and, as PeerAuthentication says, by
transport: STRICT accepts only Istio mTLS, PERMISSIVE also plaintext,
DISABLE only plaintext. HTTP ports go through an HTTP connection manager
(route configuration ``inbound|PORT||``), the rest through tcp_proxy; both
end at the inbound cluster ``inbound|PORT||``, the app's local address.

A Sidecar resource's ``ingress`` listeners replace the registered ports
(``sidecar_ingress``): a port that binds gets a listener ``BIND_PORT`` of its
own, the others are chains of ``virtualInbound``; a port with ``tls`` and
PeerAuthentication DISABLE gets one chain terminating the user's TLS. Their
HTTP chains carry the inbound route inline, since the route configurations
follow the registered ports. With transparent capture ``virtualInbound`` is
``listeners_transparent``'s (it takes ``inbound_chains``); only listeners of
their own are built here.
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
from malla.pilot.protocol import Protocol
from malla.pilot.routes_sidecar import build_inbound_route_config
from malla.pilot.sidecar_ingress import IngressPort, inbound_ports, terminated_protocol, translate_ingress_tls
from malla.pilot.snapshot import CaptureMode, MeshConfig, MeshSnapshot, Proxy

Listener = listener_pb2.Listener


def build_inbound_listeners(proxy: Proxy, snapshot: MeshSnapshot) -> list[Listener]:
    ports = inbound_ports(proxy, snapshot)
    out = []
    shared = [p for p in ports if not p.own_listener]
    if shared and proxy.capture is CaptureMode.EXPLICIT:
        listener = Listener(
            name=names.VIRTUAL_INBOUND_LISTENER,
            address=socket_address(proxy.ip, shared[0].port),
            traffic_direction=base_pb2.INBOUND,
        )
        for extra in shared[1:]:
            listener.additional_addresses.add().address.CopyFrom(socket_address(proxy.ip, extra.port))
        for inbound in shared:
            listener.filter_chains.extend(_port_chains(inbound, proxy=proxy, snapshot=snapshot))
        out.append(_inspected(listener))
    for inbound in ports:
        if inbound.own_listener:
            listener = Listener(
                name=names.listener_name(inbound.bind, inbound.port),
                address=socket_address(inbound.bind, inbound.port),
                traffic_direction=base_pb2.INBOUND,
                filter_chains=_port_chains(inbound, proxy=proxy, snapshot=snapshot),
            )
            out.append(_inspected(listener))
    return out


def inbound_chains(proxy: Proxy, snapshot: MeshSnapshot) -> list[lc.FilterChain]:
    """Per port served through ``virtualInbound``, the chains PeerAuthentication allows (mTLS, plaintext or both)."""
    out = []
    for inbound in inbound_ports(proxy, snapshot):
        if not inbound.own_listener:
            out += _port_chains(inbound, proxy=proxy, snapshot=snapshot)
    return out


def _inspected(listener: Listener) -> Listener:
    if any(c.filter_chain_match.transport_protocol for c in listener.filter_chains):
        listener.listener_filters.append(tls_inspector())
    return listener


def _port_chains(inbound: IngressPort, *, proxy: Proxy, snapshot: MeshSnapshot) -> list[lc.FilterChain]:
    mode = mtls_mode(snapshot, namespace=proxy.namespace, labels=proxy.labels, port=inbound.port)
    if inbound.tls is not None and mode == DISABLE:
        return [_user_tls_chain(inbound, snapshot.mesh)]
    return _chains(inbound, mode, snapshot.mesh)


def _chains(inbound: IngressPort, mode: str, mesh: MeshConfig) -> list[lc.FilterChain]:
    cluster = names.inbound_cluster_name(inbound.port)
    out = []
    if mode in (STRICT, PERMISSIVE):
        chain = lc.FilterChain(
            name=f"{cluster}-mtls",
            filter_chain_match=lc.FilterChainMatch(destination_port={"value": inbound.port}, transport_protocol="tls"),
            filters=[_terminal(inbound, inbound.protocol, mesh)],
        )
        chain.transport_socket.name = TLS_SOCKET
        chain.transport_socket.typed_config.CopyFrom(typed(_mtls_context(inbound, mesh)))
        out.append(chain)
    if mode in (PERMISSIVE, DISABLE):
        match = lc.FilterChainMatch(destination_port={"value": inbound.port})
        if mode == PERMISSIVE:
            match.transport_protocol = "raw_buffer"
        out.append(
            lc.FilterChain(name=cluster, filter_chain_match=match, filters=[_terminal(inbound, inbound.protocol, mesh)])
        )
    return out


def _user_tls_chain(inbound: IngressPort, mesh: MeshConfig) -> lc.FilterChain:
    """A Sidecar ingress port terminating the user's TLS (PeerAuthentication leaves the port to it)."""
    protocol = terminated_protocol(inbound.protocol)
    chain = lc.FilterChain(
        name=f"{names.inbound_cluster_name(inbound.port)}-tls",
        filter_chain_match=lc.FilterChainMatch(destination_port={"value": inbound.port}, transport_protocol="tls"),
        filters=[_terminal(inbound, protocol, mesh)],
    )
    chain.transport_socket.name = TLS_SOCKET
    context = translate_ingress_tls(inbound.tls, http=protocol.is_http, mesh=mesh)
    chain.transport_socket.typed_config.CopyFrom(typed(context))
    return chain


def _terminal(inbound: IngressPort, protocol: Protocol, mesh: MeshConfig) -> lc.Filter:
    cluster = names.inbound_cluster_name(inbound.port)
    stat_prefix = f"inbound_{names.listener_name('0.0.0.0', inbound.port)}"
    if protocol.is_http:
        manager = build_http_connection_manager(stat_prefix=stat_prefix, route_name=cluster, mesh=mesh, inbound=True)
        if inbound.from_sidecar:
            # Route configurations follow the registered ports: a Sidecar's port carries its own.
            manager.ClearField("rds")
            manager.route_config.CopyFrom(build_inbound_route_config(inbound))
        return hcm_filter(manager)
    return tcp_proxy_filter(stat_prefix=cluster, clusters=[(cluster, 100)])


def _mtls_context(inbound: IngressPort, mesh: MeshConfig) -> tls_pb2.DownstreamTlsContext:
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
