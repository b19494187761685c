"""A sidecar's route configurations: outbound (the app's HTTP proxy, or per port) and inbound.

Outbound, one route configuration serves the HTTP proxy listener: a virtual
host per HTTP service port, whose domains are the names a client in the
proxy's namespace may use with the port (``reviews:9080``,
``reviews.default:9080``, ``reviews.default.svc:9080``, the FQDN, the VIPs;
without the port too for port 80), routed by the VirtualService for the host
or straight to ``outbound|PORT||HOST``. Last, ``*`` goes to
``PassthroughCluster`` (ALLOW_ANY) or is answered 502 (REGISTRY_ONLY), as
Istio's ``allow_any``/``block_all`` virtual hosts.

With transparent capture there is one route configuration per HTTP port
(``9080``), as in Istio, whose domains also include the names without port.
A Sidecar's egress listeners decide which services and VirtualServices a
port's routes hold: the listener that owns the port, else the catch-all;
the HTTP proxy's route configuration answers ``host:PORT`` as the listener
for PORT would. An egress listener on a port of its own (or a Unix socket)
gets the same kind of route configuration, from its services only.

Inbound, ``inbound|PORT||`` has one virtual host sending everything to the app.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from malla.config.model import Config
from malla.pilot import names
from malla.pilot.destination_rules import host_matches
from malla.pilot.proto_values import duration
from malla.pilot.routes_http import RouteContext, default_route, translate_http_route
from malla.pilot.services import Service
from malla.pilot.services import ServicePort
from malla.pilot.sidecar_ingress import IngressPort, inbound_ports
from malla.pilot.sidecar_scope import MESH_GATEWAY, EgressScope, SidecarScope
from malla.pilot.snapshot import InboundPort, MeshSnapshot, Proxy
from malla.pilot.virtual_services import Destinations, expand_delegates, virtual_service_for, vs_hosts

RouteConfiguration = route_pb2.RouteConfiguration
_DEFAULT_HTTP_PORT = 80


def build_outbound_route_config(
    proxy: Proxy,
    snapshot: MeshSnapshot,
    scope: SidecarScope,
    *,
    name: str,
    port: int | None = None,
    egress: EgressScope | None = None,
) -> RouteConfiguration:
    """All HTTP service ports (the explicit proxy's), or one port's (transparent capture, named by the port).

    ``egress``: only that egress listener's services and VirtualServices, whatever the port.
    """
    destinations = Destinations(proxy, snapshot)
    used: set[str] = set()
    vhosts: list[rc.VirtualHost] = []
    for service, sp, listener in _http_service_ports(scope, port=port, egress=egress):
        vs = virtual_service_for(service.hostname, listener.virtual_services, domain=snapshot.mesh.domain)
        domains = service_domains(
            service, sp.port, proxy_namespace=proxy.namespace, domain=snapshot.mesh.domain, bare=port is not None
        )
        vhost = _service_vhost(service, sp.port, _unused(domains, used), vs, proxy, snapshot, destinations)
        if vhost is not None:
            vhosts.append(vhost)
    serviceless = egress or scope.for_port(_DEFAULT_HTTP_PORT)
    if port in (None, _DEFAULT_HTTP_PORT) and serviceless is not None:
        vhosts += _serviceless_vhosts(proxy, snapshot, serviceless, destinations, used)
    vhosts.sort(key=lambda v: v.name)
    if "*" not in used:  # validation forbids "*" on mesh VirtualServices; Envoy would refuse it twice
        vhosts.append(_catch_all(scope.outbound_policy))
    return RouteConfiguration(name=name, virtual_hosts=vhosts, validate_clusters={"value": False})


def _http_service_ports(
    scope: SidecarScope, *, port: int | None, egress: EgressScope | None
) -> list[tuple[Service, ServicePort, EgressScope]]:
    """(service, HTTP port, the egress listener routing it), in service order."""
    out = []
    for service in egress.services if egress is not None else scope.services:
        for sp in service.ports:
            if not sp.protocol.is_http or port not in (None, sp.port):
                continue
            listener = egress or scope.for_port(sp.port)
            if listener is not None and (egress is not None or listener.exposes(service)):
                out.append((service, sp, listener))
    return out


def _service_vhost(
    service: Service,
    port: int,
    domains: list[str],
    vs: Config | None,
    proxy: Proxy,
    snapshot: MeshSnapshot,
    destinations: Destinations,
) -> rc.VirtualHost | None:
    if not domains:
        return None
    routes = _vs_routes(vs, proxy, snapshot, destinations, port=port) if vs else []
    if not routes:
        cluster = names.outbound_cluster_name(service.hostname, port)
        hashing = destinations.hash_policy_for(cluster)
        routes = [default_route(cluster, retries=snapshot.mesh.default_retries, hash_policy=hashing)]
    return rc.VirtualHost(name=f"{service.hostname}:{port}", domains=domains, routes=routes)


def service_domains(service: Service, port: int, *, proxy_namespace: str, domain: str, bare: bool = False) -> list[str]:
    """The Host headers that mean this service port, as Kubernetes DNS resolves names.

    With the port always; without it too for port 80, or when the route configuration
    serves one port only (``bare``), where a name alone cannot be ambiguous.
    """
    hosts = [service.hostname]
    suffix = f".svc.{domain}"
    if service.hostname.endswith(suffix):
        short = service.hostname.removesuffix(suffix)
        name, _, namespace = short.partition(".")
        hosts += [f"{short}.svc", short]
        if namespace == proxy_namespace:
            hosts.append(name)
    hosts += list(service.addresses)
    with_port = [f"{h}:{port}" for h in hosts]
    return hosts + with_port if bare or port == _DEFAULT_HTTP_PORT else with_port


def _unused(domains: Iterable[str], used: set[str]) -> list[str]:
    # Envoy rejects a route configuration naming one domain twice: the first service keeps it.
    fresh = [d for d in dict.fromkeys(domains) if d not in used]
    used.update(fresh)
    return fresh


def _vs_routes(
    vs: Config, proxy: Proxy, snapshot: MeshSnapshot, destinations: Destinations, *, port: int
) -> list[rc.Route]:
    routes: list[rc.Route] = []
    for http, source in expand_delegates(vs, snapshot):
        ctx = RouteContext(
            retries=snapshot.mesh.default_retries,
            port=port,
            proxy_labels=proxy.labels,
            proxy_namespace=proxy.namespace,
            gateway=MESH_GATEWAY,
            cluster_for=lambda d, ns=source.namespace: destinations.cluster_for(d, namespace=ns, port=port),
            hash_policy_for=destinations.hash_policy_for,
            config_namespace=source.namespace,
        )
        routes += translate_http_route(http, ctx)
    return routes


def _serviceless_vhosts(
    proxy: Proxy, snapshot: MeshSnapshot, listener: EgressScope, destinations: Destinations, used: set[str]
) -> list[rc.VirtualHost]:
    """VirtualService hosts no service has (``www.example.com`` routed elsewhere): served on port 80."""
    out = []
    domain = snapshot.mesh.domain
    for vs in listener.virtual_services:
        for host in vs_hosts(vs, domain=domain):
            if any(host_matches(s.hostname, host) for s in listener.services):
                continue
            domains = _unused([host, f"{host}:{_DEFAULT_HTTP_PORT}"], used)
            routes = _vs_routes(vs, proxy, snapshot, destinations, port=_DEFAULT_HTTP_PORT)
            if domains and routes:
                out.append(rc.VirtualHost(name=f"{host}:{_DEFAULT_HTTP_PORT}", domains=domains, routes=routes))
    return out


def _catch_all(policy: str) -> rc.VirtualHost:
    if policy == "REGISTRY_ONLY":
        route = rc.Route(name=names.BLOCK_ALL_VIRTUAL_HOST, match=rc.RouteMatch(prefix="/"))
        route.direct_response.status = 502
        return rc.VirtualHost(name=names.BLOCK_ALL_VIRTUAL_HOST, domains=["*"], routes=[route])
    route = rc.Route(name=names.ALLOW_ANY_VIRTUAL_HOST, match=rc.RouteMatch(prefix="/"))
    route.route.cluster = names.PASSTHROUGH_CLUSTER
    route.route.timeout.CopyFrom(duration(0))
    return rc.VirtualHost(name=names.ALLOW_ANY_VIRTUAL_HOST, domains=["*"], routes=[route])


def build_inbound_route_config(inbound: InboundPort | IngressPort) -> RouteConfiguration:
    cluster = names.inbound_cluster_name(inbound.port)
    route = rc.Route(name="default", match=rc.RouteMatch(prefix="/"))
    route.route.cluster = cluster
    route.route.timeout.CopyFrom(duration(0))
    route.route.max_stream_duration.grpc_timeout_header_max.CopyFrom(duration(0))
    vhost = rc.VirtualHost(name=f"inbound|http|{inbound.port}", domains=["*"], routes=[route])
    return RouteConfiguration(name=cluster, virtual_hosts=[vhost], validate_clusters={"value": False})


def build_inbound_route_configs(proxy: Proxy, snapshot: MeshSnapshot) -> list[RouteConfiguration]:
    """``inbound|PORT||`` for each HTTP port served through RDS.

    The registered ports, unless a Sidecar's ``ingress`` replaced them: those carry their
    routes inline (``listeners_inbound``).
    """
    ports = inbound_ports(proxy, snapshot)
    return [build_inbound_route_config(p) for p in ports if p.protocol.is_http and not p.from_sidecar]
