"""EnvoyFilter patches of route configurations: ROUTE_CONFIGURATION, VIRTUAL_HOST, HTTP_ROUTE.

As istiod's ``rc_patch``: a route configuration takes MERGE; its virtual
hosts MERGE, REMOVE, REPLACE, then ADD; each virtual host's routes MERGE and
REMOVE, then ADD, INSERT_BEFORE, INSERT_AFTER, INSERT_FIRST. A sidecar's
route configuration matches ``portNumber`` by the port in its name (``9080``,
``inbound|9080||``); a router's (``http.8080``,
``https.443.PORTNAME.GATEWAY.NAMESPACE``) also by ``portName`` and
``gateway`` (``namespace/name``).
"""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc
from google.protobuf.message import Message

from malla.pilot import names
from malla.pilot.envoy_filters_model import CompiledPatch, Memo, Tally
from malla.pilot.envoy_filters_values import copy_of, merge_message
from malla.pilot.snapshot import Proxy

_CLASS = ("ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE")
_ACTIONS = {"route": "ROUTE", "redirect": "REDIRECT", "direct_response": "DIRECT_RESPONSE"}


def route_context(proxy: Proxy, name: str) -> str:
    if proxy.is_router:
        return "GATEWAY"
    return "SIDECAR_INBOUND" if name.startswith("inbound|") else "SIDECAR_OUTBOUND"


def patch_route_configurations(
    proxy: Proxy, routes: dict[str, Message], patches: list[CompiledPatch], *, memo: Memo, tally: Tally
) -> dict[str, Message]:
    mine = [p for p in patches if p.apply_to in _CLASS]
    if not mine:
        return routes
    out: dict[str, Message] = {}
    for name, config in routes.items():
        context = route_context(proxy, name)
        fitting = [p for p in mine if p.fits(context) and config_matches(config, p, gateway=proxy.is_router)]
        if not fitting:
            out[name] = config
            continue
        out[name] = memo.patched(config, lambda c, ps=fitting: _patch_config(c, ps, tally=tally))  # type: ignore[assignment]
    return out


def _patch_config(config: Message, patches: list[CompiledPatch], *, tally: Tally) -> Message:
    out = copy_of(config)
    for p in patches:
        if p.apply_to == "ROUTE_CONFIGURATION":
            if p.operation in ("MERGE", "MERGE_AND_REPLACE_LIST"):
                merge_message(out, p.value, replace_lists=p.operation == "MERGE_AND_REPLACE_LIST")  # type: ignore[arg-type]
                tally.hit(p)
            else:
                tally.skip(p, f"operation {p.operation} does not apply to a route configuration: use MERGE")
    vhost_patches = [p for p in patches if p.apply_to == "VIRTUAL_HOST"]
    route_patches = [p for p in patches if p.apply_to == "HTTP_ROUTE"]
    kept = []
    for vhost in out.virtual_hosts:  # type: ignore[attr-defined]
        patched = _patch_vhost(vhost, vhost_patches, tally=tally)
        if patched is not None:
            _patch_routes(patched, route_patches, tally=tally)
            kept.append(patched)
    for p in vhost_patches:
        if p.operation == "ADD":
            kept.append(copy_of(p.value))  # type: ignore[arg-type]
            tally.hit(p)
    del out.virtual_hosts[:]  # type: ignore[attr-defined]
    out.virtual_hosts.extend(kept)  # type: ignore[attr-defined]
    return out


def _patch_vhost(vhost: rc.VirtualHost, patches: list[CompiledPatch], *, tally: Tally) -> rc.VirtualHost | None:
    for p in patches:
        if p.operation == "ADD" or not vhost_matches(vhost, p):
            continue
        tally.hit(p)
        if p.operation == "REMOVE":
            return None
        if p.operation in ("MERGE", "MERGE_AND_REPLACE_LIST"):
            merge_message(vhost, p.value, replace_lists=p.operation == "MERGE_AND_REPLACE_LIST")  # type: ignore[arg-type]
        elif p.operation == "REPLACE":
            vhost = copy_of(p.value)  # type: ignore[arg-type, assignment]
        else:
            tally.skip(p, f"operation {p.operation} does not apply to a virtual host: use MERGE, ADD, REMOVE or "
                       "REPLACE")
    return vhost


def _patch_routes(vhost: rc.VirtualHost, patches: list[CompiledPatch], *, tally: Tally) -> None:
    matching = [p for p in patches if vhost_matches(vhost, p)]
    routes: list[rc.Route] = []
    for route in vhost.routes:
        kept: rc.Route | None = route
        for p in matching:
            if p.operation in ("MERGE", "MERGE_AND_REPLACE_LIST", "REMOVE") and route_matches(route, p):
                tally.hit(p)
                if p.operation == "REMOVE":
                    kept = None
                    break
                merge_message(route, p.value, replace_lists=p.operation == "MERGE_AND_REPLACE_LIST")  # type: ignore[arg-type]
        if kept is not None:
            routes.append(route)
    for p in matching:
        routes = _insert_route(routes, p, tally=tally)
    del vhost.routes[:]
    vhost.routes.extend(routes)


def _insert_route(routes: list[rc.Route], p: CompiledPatch, *, tally: Tally) -> list[rc.Route]:
    if p.operation not in ("ADD", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST"):
        if p.operation not in ("MERGE", "MERGE_AND_REPLACE_LIST", "REMOVE"):
            tally.skip(p, f"operation {p.operation} does not apply to an HTTP route")
        return routes
    new = copy_of(p.value)  # type: ignore[arg-type]
    has_match = p.match.route_configuration is not None and p.match.route_configuration.vhost is not None and \
        p.match.route_configuration.vhost.route is not None
    if p.operation == "ADD" or (p.operation == "INSERT_AFTER" and not has_match):
        tally.hit(p)
        return [*routes, new]
    if not has_match:
        tally.hit(p)
        return [new, *routes]
    at = next((i for i, r in enumerate(routes) if route_matches(r, p)), None)
    if at is None:
        return routes
    tally.hit(p)
    if p.operation == "INSERT_FIRST":
        return [new, *routes]
    at = at + 1 if p.operation == "INSERT_AFTER" else at
    return [*routes[:at], new, *routes[at:]]


# --- matching ----------------------------------------------------------------------------------


def config_matches(config: Message, p: CompiledPatch, *, gateway: bool) -> bool:
    match = p.match.route_configuration
    if match is None:
        return True
    name = config.name  # type: ignore[attr-defined]
    if match.name and match.name != name:
        return False
    try:
        key = names.parse_route_name(name)
    except ValueError:
        key = names.RouteKey("", 0)
    if match.port_number and match.port_number != key.port:
        return False
    if not gateway:
        return True
    if match.port_name and match.port_name != key.port_name:
        return False
    return not match.gateway or match.gateway == f"{key.namespace}/{key.gateway}"


def vhost_matches(vhost: rc.VirtualHost, p: CompiledPatch) -> bool:
    match = p.match.route_configuration
    if match is None or match.vhost is None:
        return True
    if match.vhost.domain_name and match.vhost.domain_name not in vhost.domains:
        return False
    return not match.vhost.name or match.vhost.name == vhost.name


def route_matches(route: rc.Route, p: CompiledPatch) -> bool:
    match = p.match.route_configuration
    if match is None or match.vhost is None or match.vhost.route is None:
        return True
    wanted = match.vhost.route
    if wanted.name and wanted.name != route.name:
        return False
    if wanted.action in (None, "ANY"):
        return True
    return _ACTIONS.get(route.WhichOneof("action") or "") == wanted.action
