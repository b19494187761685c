"""A gateway's route configurations: ``http.PORT`` and ``https.PORT.NAME.GATEWAY.NAMESPACE``.

Plain-HTTP servers of one port share ``http.PORT``; a server that terminates
TLS has its own. Each host a bound VirtualService serves becomes one virtual
host (several VirtualServices for one host are merged in order, as Istio
merges them on gateways); ``httpsRedirect`` makes its virtual hosts demand
TLS. A route configuration with nothing bound answers 404, as Istio's
``blackhole`` virtual host.
"""

from __future__ import annotations

from collections import defaultdict

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from malla.pilot.gateways import GatewayServer, bound_hosts, servers_by_port
from malla.pilot.routes_http import RouteContext, translate_http_route
from malla.pilot.snapshot import MeshSnapshot, Proxy
from malla.pilot.virtual_services import Destinations, expand_delegates

RouteConfiguration = route_pb2.RouteConfiguration


def http_servers(servers: list[GatewayServer]) -> dict[str, list[GatewayServer]]:
    """Servers that speak HTTP to the gateway, grouped by the route configuration they use."""
    out: dict[str, list[GatewayServer]] = defaultdict(list)
    for s in servers:
        if s.passthrough:
            continue
        if s.protocol.is_http or (s.terminates_tls and s.protocol.value == "HTTPS"):
            out[s.route_name].append(s)
    return dict(out)


def build_gateway_route_configs(proxy: Proxy, snapshot: MeshSnapshot) -> list[RouteConfiguration]:
    destinations = Destinations(proxy, snapshot)
    out = []
    for port, servers in servers_by_port(proxy, snapshot).items():
        for name, members in sorted(http_servers(servers).items()):
            out.append(_route_config(name, members, port, proxy, snapshot, destinations))
    return out


def _route_config(
    name: str, servers: list[GatewayServer], port: int, proxy: Proxy, snapshot: MeshSnapshot, destinations: Destinations
) -> RouteConfiguration:
    vhosts: dict[str, rc.VirtualHost] = {}
    seen: set[tuple[str, str, str]] = set()
    for server in servers:
        redirect = server.server.tls is not None and bool(server.server.tls.https_redirect)
        for host, vs in bound_hosts(server, proxy, snapshot):
            if (host, vs.namespace, vs.name) in seen:
                continue
            seen.add((host, vs.namespace, vs.name))
            vhost = vhosts.setdefault(host, rc.VirtualHost(name=f"{host}:{port}", domains=[host]))
            if redirect:
                vhost.require_tls = rc.VirtualHost.ALL
            for http, source in expand_delegates(vs, snapshot):
                ctx = RouteContext(
                    retries=snapshot.mesh.default_retries,
                    port=port,
                    proxy_labels=proxy.labels,
                    proxy_namespace=proxy.namespace,
                    gateway=server.key,
                    cluster_for=lambda d, ns=source.namespace: destinations.cluster_for(d, namespace=ns, port=port),
                    hash_policy_for=destinations.hash_policy_for,
                    config_namespace=source.namespace,
                )
                vhost.routes.extend(translate_http_route(http, ctx))
    ordered = [vhosts[h] for h in sorted(vhosts)]
    if not ordered:
        ordered = [rc.VirtualHost(name=f"blackhole:{port}", domains=["*"])]
    return RouteConfiguration(name=name, virtual_hosts=ordered, validate_clusters={"value": False})
