"""Gateway servers with ``tls.mode: AUTO_PASSTHROUGH``: mesh mTLS routed by its SNI, no VirtualService.

A sidecar calling ``reviews`` on port 9080 (subset v2) sends Istio's SNI
``outbound_.9080_.v2_.reviews.default.svc.cluster.local`` in its mTLS
handshake. An AUTO_PASSTHROUGH server (Istio's east-west gateways, hosts
such as ``*.local``) reads that SNI and forwards the still-encrypted
connection to the service's endpoints, where their sidecars terminate the
mTLS: one filter chain per service port and subset whose host one of the
server's hosts covers, matching that SNI and Istio's mTLS ALPNs (so plain
TLS from outside the mesh finds no chain), as Istio's
``builtAutoPassthroughFilterChains`` does.

The chain's cluster is named like the SNI (Istio's SNI-DNAT cluster): the
outbound cluster of the same port and subset without any TLS of its own,
since the bytes it carries are the caller's TLS. An EDS one shares the
endpoints of ``outbound|PORT|SUBSET|HOST`` (same ``service_name``).
The hash policy of the service's DestinationRule applies; its tunnel does not.
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc

from malla.pilot import names
from malla.pilot.destination_rules import host_matches
from malla.pilot.gateways import GatewayServer, servers_by_port
from malla.pilot.protocol import Protocol
from malla.pilot.services import Service
from malla.pilot.sidecar_scope import build_scope
from malla.pilot.snapshot import MeshSnapshot, Proxy
from malla.pilot.tcp_proxy_policy import tcp_proxy_to

AUTO_PASSTHROUGH = "AUTO_PASSTHROUGH"
# What Istio's sidecars offer as ALPN in mesh mTLS (malla's send "istio").
ISTIO_MTLS_ALPNS = ("istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2")
Cluster = cluster_pb2.Cluster


def is_auto_passthrough(server: GatewayServer) -> bool:
    return server.server.tls is not None and server.server.tls.mode == AUTO_PASSTHROUGH


def auto_passthrough_snis(server: GatewayServer, proxy: Proxy, snapshot: MeshSnapshot) -> list[str]:
    """Istio's SNI of every service port and subset the server's hosts cover, in service order."""
    out = []
    for service in build_scope(proxy, snapshot).services:
        if service.mesh_external or not _covered(service, server):
            continue
        rule = snapshot.destination_rule(proxy, service)
        subsets = ["", *(s.name or "" for s in rule.subsets)] if rule is not None else [""]
        for port in service.ports:
            if port.protocol is Protocol.UDP:
                continue
            for subset in subsets:
                out.append(
                    names.format_sni(names.Direction.OUTBOUND, port=port.port, subset=subset, host=service.hostname)
                )
    return out


def auto_passthrough_chains(
    server: GatewayServer, proxy: Proxy, snapshot: MeshSnapshot, *, claimed: set[tuple[str, ...]]
) -> list[lc.FilterChain]:
    """One chain per SNI the server accepts, to the SNI-named cluster; SNIs in ``claimed`` are skipped."""
    out = []
    for sni in auto_passthrough_snis(server, proxy, snapshot):
        if (sni,) in claimed:
            continue
        claimed.add((sni,))
        match = lc.FilterChainMatch(server_names=[sni], application_protocols=list(ISTIO_MTLS_ALPNS))
        terminal = tcp_proxy_to([(sni, 100)], stat_prefix=sni, proxy=proxy, snapshot=snapshot, tunnel=False)
        out.append(lc.FilterChain(name=sni, filter_chain_match=match, filters=[terminal]))
    return out


def build_sni_dnat_clusters(proxy: Proxy, snapshot: MeshSnapshot, outbound: Sequence[Cluster]) -> list[Cluster]:
    """The SNI-named copies of a router's ``outbound`` clusters that its AUTO_PASSTHROUGH servers send to."""
    if not proxy.is_router:
        return []
    servers = [s for members in servers_by_port(proxy, snapshot).values() for s in members if is_auto_passthrough(s)]
    wanted = {sni for server in servers for sni in auto_passthrough_snis(server, proxy, snapshot)}
    out = []
    for cluster in outbound:
        try:
            key = names.parse_cluster_name(cluster.name)
        except ValueError:
            continue
        sni = names.format_sni(key.direction, port=key.port, subset=key.subset, host=key.host)
        if sni in wanted:
            out.append(sni_dnat_cluster(cluster, sni))
    return out


def sni_dnat_cluster(outbound: Cluster, name: str) -> Cluster:
    """``outbound`` renamed, without TLS: it carries the caller's own mTLS to the endpoints."""
    out = Cluster()
    out.CopyFrom(outbound)
    out.name = name
    out.ClearField("transport_socket")
    out.ClearField("transport_socket_matches")
    if out.type == Cluster.EDS and not out.eds_cluster_config.service_name:
        out.eds_cluster_config.service_name = outbound.name
    if out.HasField("load_assignment"):
        out.load_assignment.cluster_name = name
    return out


def _covered(service: Service, server: GatewayServer) -> bool:
    return any(ns in ("*", service.namespace) and host_matches(host, service.hostname) for ns, host in server.hosts())
