"""VirtualService parts every route kind shares, and the TLS and TCP routes.

Destinations (host, subset, port) and their weights, the L4 match
attributes HTTP, TLS and TCP matches all have (destination subnets, port,
source labels, gateways), gateway names, and the TLS and TCP routes
themselves: SNI hosts must be covered by the VirtualService's hosts.
``check_destination`` is also what Sidecar's egress proxy is checked with.
"""

from __future__ import annotations

from collections.abc import Sequence

from malla.api.networking.virtual_service import (
    Destination,
    HTTPMatchRequest,
    HTTPRouteDestination,
    L4MatchAttributes,
    RouteDestination,
    TCPRoute,
    TLSMatchAttributes,
    TLSRoute,
    VirtualService,
)
from malla.config.validation import Findings
from malla.config.validation.common import check_ip_or_cidr, is_dns1123_label, is_ip, join
from malla.config.validation.common_hosts import (
    check_fqdn,
    check_gateway_bound_host,
    check_subset_name,
    check_wildcard_domain,
    host_subset_of,
)
from malla.config.validation.common_ports import check_port
from malla.config.validation.common_selectors import check_labels

MESH = "mesh"  # the reserved gateway name of the sidecars


# --- Gateways, destinations, L4 match attributes --------------------------------------------


def check_gateway_names(f: Findings, path: str, names: Sequence[str]) -> None:
    """'mesh', '<namespace>/<name>' or (legacy) a gateway name or '<name>.<namespace>'."""
    for i, name in enumerate(names):
        namespace, slash, gw = name.partition("/")
        if not slash:
            if "." in name:
                first, rest = name.split(".", 1)
                f.warning(
                    join(path, i),
                    f"legacy gateway name {name!r}: prefer namespace/name, here '{rest.split('.')[0]}/{first}'",
                )
            if error := check_fqdn(name):
                f.error(join(path, i), error)
            continue
        if not namespace or not gw:
            f.error(join(path, i), f"gateway {name!r}: neither namespace nor name may be empty in namespace/name")
            continue
        if not is_dns1123_label(namespace):
            f.error(join(path, i), f"invalid namespace {namespace!r} in gateway {name!r}: must be a DNS-1123 label")
        if not is_dns1123_label(gw):
            f.error(join(path, i), f"invalid gateway name {gw!r} in {name!r}: must be a DNS-1123 label")


def check_destination(f: Findings, path: str, dest: Destination | None, *, check_host: bool = True) -> None:
    """Host (unless the caller checks it by stricter rules), subset name and port of a destination."""
    if dest is None:
        return
    host = dest.host or ""
    if check_host and host == "*":
        f.error(join(path, "host"), "destination host cannot be '*': name one service")
    elif check_host and (error := check_wildcard_domain(host)):
        f.error(join(path, "host"), error)
    if dest.subset is not None and (error := check_subset_name(dest.subset)):
        f.error(join(path, "subset"), error)
    if dest.port is not None and (error := check_port(dest.port.number)):
        f.error(join(path, "port", "number"), error)


def check_weights(f: Findings, path: str, routes: Sequence[HTTPRouteDestination | RouteDestination]) -> None:
    total = 0
    for i, dest in enumerate(routes):
        where = join(path, i)
        if dest.destination is None:
            f.error(join(where, "destination"), "destination is required")
        check_destination(f, join(where, "destination"), dest.destination)
        weight = dest.weight or 0
        if weight < 0:
            f.error(join(where, "weight"), f"weight must not be negative, got {weight}")
        total += weight
    if len(routes) > 1 and total == 0:
        f.error(path, "the destination weights add up to 0: give at least one destination a positive weight")


def check_l4_match(f: Findings, path: str, match: HTTPMatchRequest | L4MatchAttributes | TLSMatchAttributes) -> None:
    """The match fields HTTP, TCP and TLS routes share: subnets, port, source labels, gateways."""
    for i, subnet in enumerate(getattr(match, "destination_subnets", ())):
        if error := check_ip_or_cidr(subnet):
            f.error(join(path, "destinationSubnets", i), error)
    if match.port and (error := check_port(match.port)):
        f.error(join(path, "port"), error)
    check_labels(f, match.source_labels, path=join(path, "sourceLabels"))
    check_gateway_names(f, join(path, "gateways"), match.gateways)


# --- TLS and TCP routes ----------------------------------------------------------------------


def _check_sni_host(f: Findings, path: str, sni: str, spec: VirtualService) -> None:
    error = check_gateway_bound_host(sni, sni=True) if MESH not in spec.gateways else check_wildcard_domain(sni)
    if error:
        if is_ip(sni):
            f.warning(
                path,
                f"SNI host {sni!r} is an IP address: that goes against the SNI spec and most clients do not send it",
            )
        else:
            f.error(path, error)
        return
    if not any(host_subset_of(sni, host) for host in spec.hosts):
        f.error(
            path,
            f"SNI host {sni!r} is not covered by any of the VirtualService hosts: {', '.join(spec.hosts) or '(none)'}",
        )


def check_tls_route(f: Findings, path: str, route: TLSRoute, spec: VirtualService) -> None:
    if not route.match:
        f.error(join(path, "match"), "a TLS route needs at least one match with sniHosts")
    for i, match in enumerate(route.match):
        where = join(path, "match", i)
        if not match.sni_hosts:
            f.error(join(where, "sniHosts"), "a TLS match needs at least one SNI host")
        for j, sni in enumerate(match.sni_hosts):
            _check_sni_host(f, join(where, "sniHosts", j), sni, spec)
        check_l4_match(f, where, match)
    if not route.route:
        f.error(join(path, "route"), "a TLS route needs at least one destination in route")
    check_weights(f, join(path, "route"), route.route)


def check_tcp_route(f: Findings, path: str, route: TCPRoute) -> None:
    for i, match in enumerate(route.match):
        check_l4_match(f, join(path, "match", i), match)
    if not route.route:
        f.error(join(path, "route"), "a TCP route needs at least one destination in route")
    check_weights(f, join(path, "route"), route.route)

