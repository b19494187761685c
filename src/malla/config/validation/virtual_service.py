"""Semantic rules for VirtualService, as Istio's validation webhook applies them.

This module owns the top level: hosts (for the mesh or for gateways),
gateway names, delegation, exportTo, and the warnings Istio gives for
rules that can never match. HTTP routes are checked in
``virtual_service_http``, TLS and TCP routes and the destinations every
route shares in ``virtual_service_l4``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from malla.api.base import IstioModel
from malla.api.networking.virtual_service import HTTPRoute, TCPRoute, TLSRoute, VirtualService
from malla.config.validation import Findings, ValidationContext
from malla.config.validation.common import check_export_to, is_ip, join
from malla.config.validation.common_hosts import check_gateway_bound_host, check_wildcard_domain, host_matches
from malla.config.validation.virtual_service_http import CLAIM_PREFIXES, check_http_route
from malla.config.validation.virtual_service_l4 import MESH, check_gateway_names, check_tcp_route, check_tls_route


# --- Rules that can never match ----------------------------------------------------------------


def _match_key(match: IstioModel) -> str:
    """The match as canonical JSON without its name, to spot repeated matches."""
    return json.dumps(match.model_dump(by_alias=True, exclude_none=True, mode="json", exclude={"name"}), sort_keys=True)


def _warn_unreachable(f: Findings, path: str, routes: Sequence[HTTPRoute | TCPRoute | TLSRoute]) -> None:
    """Rules after a catch-all rule, and matches repeated from an earlier rule, never apply."""
    seen: dict[str, int] = {}
    catch_all: int | None = None
    for n, route in enumerate(routes):
        name = f"{route.name!r}" if getattr(route, "name", None) else f"#{n}"
        where = join(path, n)
        if not route.match:
            if catch_all is not None:
                f.warning(where, f"rule {name} is never used: only the last rule can have no matches")
            catch_all = n if catch_all is None else catch_all
            continue
        if catch_all is not None:
            f.warning(where, f"rule {name} is never used: rule #{catch_all} before it matches everything")
            continue
        repeated = 0
        for m, match in enumerate(route.match):
            key = _match_key(match)
            if key in seen:
                repeated += 1
                f.warning(
                    join(where, "match", m),
                    f"match #{m} of rule {name} is never used: rule #{seen[key]} has the same match",
                )
            else:
                seen[key] = n
        if repeated == len(route.match):
            f.warning(where, f"rule {name} is never used: all its matches are used by earlier rules")


# --- VirtualService --------------------------------------------------------------------------


def _check_hosts(f: Findings, spec: VirtualService, *, to_gateway: bool) -> None:
    sni = any(m.sni_hosts for route in spec.tls for m in route.match)
    all_valid = True
    for i, host in enumerate(spec.hosts):
        error = check_gateway_bound_host(host, sni=sni) if to_gateway else check_wildcard_domain(host)
        if error and not is_ip(host):
            f.error(join("spec.hosts", i), error)
            all_valid = False
        elif not error and not to_gateway and host == "*":
            f.error(
                join("spec.hosts", i),
                "the wildcard host '*' is not allowed for a VirtualService applied to the mesh: "
                "list gateways, or name the hosts",
            )
            all_valid = False
    if not all_valid:
        return
    for i, a in enumerate(spec.hosts):
        for b in spec.hosts[i + 1 :]:
            if host_matches(a, b):
                f.error(join("spec.hosts", i), f"duplicate hosts {a!r} and {b!r}: one covers the other")


def _check_delegate(f: Findings, spec: VirtualService) -> None:
    """A VirtualService without hosts is a delegate: only HTTP routes, no gateways."""
    for field, value in (("gateways", spec.gateways), ("tls", spec.tls), ("tcp", spec.tcp)):
        if value:
            f.error(join("spec", field), f"a delegate VirtualService (no hosts) cannot set {field}")


def _check_claim_routing(f: Findings, spec: VirtualService) -> None:
    for i, route in enumerate(spec.http):
        for j, match in enumerate(route.match):
            for field, headers in (("headers", match.headers), ("withoutHeaders", match.without_headers)):
                for name in headers:
                    if name.startswith(CLAIM_PREFIXES):
                        f.error(
                            join("spec.http", i, "match", j, field, name),
                            "JWT claim based routing is only supported for VirtualServices bound to gateways",
                        )


def validate(spec: VirtualService, ctx: ValidationContext) -> Findings:
    f = Findings()
    if not spec.hosts:
        _check_delegate(f, spec)
    check_gateway_names(f, "spec.gateways", spec.gateways)
    to_gateway = bool(spec.gateways) and MESH not in spec.gateways
    if not to_gateway:
        _check_claim_routing(f, spec)
    _check_hosts(f, spec, to_gateway=to_gateway)
    if not (spec.http or spec.tcp or spec.tls):
        f.error("spec", "a VirtualService needs at least one of http, tcp or tls routes")
    for i, route in enumerate(spec.http):
        check_http_route(f, join("spec.http", i), route, in_delegate=not spec.hosts)
    for i, tls_route in enumerate(spec.tls):
        check_tls_route(f, join("spec.tls", i), tls_route, spec)
    for i, tcp_route in enumerate(spec.tcp):
        check_tcp_route(f, join("spec.tcp", i), tcp_route)
    check_export_to(f, spec.export_to, namespace=ctx.namespace)
    _warn_unreachable(f, "spec.http", spec.http)
    _warn_unreachable(f, "spec.tcp", spec.tcp)
    _warn_unreachable(f, "spec.tls", spec.tls)
    return f
