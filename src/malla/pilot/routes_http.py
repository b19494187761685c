"""One VirtualService ``HTTPRoute`` -> Envoy routes (one per applicable match).

What an HTTPRoute says becomes: the route action (one cluster or
``weighted_clusters``; ``redirect``; ``directResponse``), ``rewrite``,
``timeout`` (none unless set, as Istio), ``retries`` (the mesh default
unless set; ``attempts: 0`` turns them off), ``fault`` and ``corsPolicy`` as
per-route configs of the fault and CORS filters, ``mirror``/``mirrors`` as
request mirror policies, and ``headers`` as header operations.
Destinations become cluster names through ``RouteContext.cluster_for``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2
from envoy.type.v3 import percent_pb2

from malla.pilot.proto_values import duration, typed
from malla.pilot.routes_match import match_applies, translate_match, translate_string_match
from malla.pilot.snapshot import RetryDefaults

FAULT_FILTER = "envoy.filters.http.fault"
CORS_FILTER = "envoy.filters.http.cors"
_GRPC_CODES = (
    "OK CANCELLED UNKNOWN INVALID_ARGUMENT DEADLINE_EXCEEDED NOT_FOUND ALREADY_EXISTS PERMISSION_DENIED "
    "RESOURCE_EXHAUSTED FAILED_PRECONDITION ABORTED OUT_OF_RANGE UNIMPLEMENTED INTERNAL UNAVAILABLE "
    "DATA_LOSS UNAUTHENTICATED"
).split()
_REDIRECT_CODES = {
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}


@dataclass(frozen=True)
class RouteContext:
    """What translating a route needs beyond the route itself."""

    retries: RetryDefaults
    port: int | None  # the service/listener port the routes are for
    proxy_labels: Any
    proxy_namespace: str
    gateway: str  # "mesh" for sidecars, "namespace/name" for gateways
    config_namespace: str  # the VirtualService's: short names in it resolve there
    cluster_for: Callable[[Any], str]  # Destination -> cluster name
    hash_policy_for: Callable[[str], list[rc.RouteAction.HashPolicy]]


def translate_http_route(http: Any, ctx: RouteContext, *, name_prefix: str = "") -> list[rc.Route]:
    """The Envoy routes for one HTTPRoute: one per match that can apply here (OR)."""
    matches = [m for m in http.match if _applies(m, ctx)] if http.match else [None]
    out = []
    for match in matches:
        route = rc.Route(match=translate_match(match), name=_route_name(http, match, name_prefix))
        _action(route, http, ctx, match=match)
        _headers(route, http.headers)
        if http.fault is not None:
            route.typed_per_filter_config[FAULT_FILTER].CopyFrom(typed(translate_fault(http.fault)))
        if http.cors_policy is not None:
            route.typed_per_filter_config[CORS_FILTER].CopyFrom(typed(translate_cors(http.cors_policy)))
        out.append(route)
    return out


def _applies(match: Any, ctx: RouteContext) -> bool:
    return match_applies(
        match,
        port=ctx.port,
        proxy_labels=ctx.proxy_labels,
        proxy_namespace=ctx.proxy_namespace,
        gateway=ctx.gateway,
        config_namespace=ctx.config_namespace,
    )


def _route_name(http: Any, match: Any, prefix: str) -> str:
    parts = [p for p in (prefix, http.name, match.name if match is not None else None) if p]
    return ".".join(parts)


def _action(route: rc.Route, http: Any, ctx: RouteContext, *, match: Any) -> None:
    if http.direct_response is not None:
        route.direct_response.CopyFrom(translate_direct_response(http.direct_response))
        return
    if http.redirect is not None:
        route.redirect.CopyFrom(translate_redirect(http.redirect, port=ctx.port))
        return
    action = route.route
    _destinations(action, http.route, ctx)
    action.timeout.CopyFrom(duration(http.timeout.nanos if http.timeout is not None else 0))
    hashing = ctx.hash_policy_for(action.cluster) if action.cluster else []
    action.hash_policy.extend(hashing)
    retry = translate_retries(http.retries, defaults=ctx.retries, hashing=bool(hashing))
    if retry is not None:
        action.retry_policy.CopyFrom(retry)
    action.request_mirror_policies.extend(translate_mirrors(http, ctx))
    if http.rewrite is not None:
        _rewrite(action, http.rewrite, match=match)
    authority = _set_header(http.headers, "host") or _set_header(http.headers, ":authority")
    if authority:
        action.host_rewrite_literal = authority


def _destinations(action: rc.RouteAction, destinations: list[Any], ctx: RouteContext) -> None:
    if len(destinations) == 1 and destinations[0].headers is None:
        action.cluster = ctx.cluster_for(destinations[0].destination)
        return
    total = sum(d.weight or 0 for d in destinations)
    for d in destinations:
        weight = d.weight if total else 100 // max(1, len(destinations))
        if total and not weight:
            continue  # Istio drops zero-weight destinations
        wc = action.weighted_clusters.clusters.add(name=ctx.cluster_for(d.destination), weight={"value": weight})
        if d.headers is not None:
            _headers(wc, d.headers)


def translate_retries(retries: Any, *, defaults: RetryDefaults, hashing: bool = False) -> rc.RetryPolicy | None:
    """``retries`` -> RetryPolicy: the mesh default when unset, none for ``attempts: 0``."""
    if retries is not None and (retries.attempts or 0) <= 0:
        return None
    out = rc.RetryPolicy(
        num_retries={"value": retries.attempts if retries is not None else defaults.attempts},
        retry_on=defaults.retry_on,
        retriable_status_codes=list(defaults.retriable_status_codes),
        host_selection_retry_max_attempts=defaults.host_selection_retry_max_attempts,
    )
    ignore_previous = retries is None or retries.retry_ignore_previous_hosts is not False
    if ignore_previous and not hashing:
        out.retry_host_predicate.add(
            name="envoy.retry_host_predicates.previous_hosts",
            typed_config=typed(previous_hosts_pb2.PreviousHostsPredicate()),
        )
    if retries is None:
        return out
    if retries.retry_on:
        out.retry_on, codes = parse_retry_on(retries.retry_on)
        out.ClearField("retriable_status_codes")
        out.retriable_status_codes.extend(codes)
    if retries.per_try_timeout is not None:
        out.per_try_timeout.CopyFrom(duration(retries.per_try_timeout))
    if retries.retry_remote_localities:
        config = previous_priorities_config_pb2.PreviousPrioritiesConfig(update_frequency=2)
        out.retry_priority.name = "envoy.retry_priorities.previous_priorities"
        out.retry_priority.typed_config.CopyFrom(typed(config))
    if retries.backoff is not None:
        out.retry_back_off.base_interval.CopyFrom(duration(retries.backoff))
    return out


def parse_retry_on(text: str) -> tuple[str, list[int]]:
    """``"5xx,503,gateway-error"`` -> ``("5xx,gateway-error,retriable-status-codes", [503])``."""
    policies: list[str] = []
    codes: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if part.isdigit():
            codes.append(int(part))
        elif part and part not in policies:
            policies.append(part)
    if codes and "retriable-status-codes" not in policies:
        policies.append("retriable-status-codes")
    return ",".join(policies), codes


def fractional(value: float | None, *, default: float = 100.0) -> percent_pb2.FractionalPercent:
    """Istio's Percent (0-100, 4 decimals kept) as a FractionalPercent per million."""
    pct = default if value is None else value
    return percent_pb2.FractionalPercent(
        numerator=int(round(pct * 10000)), denominator=percent_pb2.FractionalPercent.MILLION
    )


def translate_fault(fault: Any) -> fault_pb2.HTTPFault:
    """``fault`` -> the fault filter's per-route config (unset percentages inject nothing, as Istio)."""
    out = fault_pb2.HTTPFault()
    delay = fault.delay
    if delay is not None and delay.fixed_delay is not None:
        out.delay.fixed_delay.CopyFrom(duration(delay.fixed_delay))
        out.delay.percentage.CopyFrom(_fault_percent(delay.percentage, delay.percent))
    abort = fault.abort
    if abort is not None and (abort.http_status is not None or abort.grpc_status is not None):
        if abort.http_status is not None:
            out.abort.http_status = abort.http_status
        else:
            out.abort.grpc_status = grpc_status_code(abort.grpc_status)
        out.abort.percentage.CopyFrom(_fault_percent(abort.percentage, None))
    return out


def _fault_percent(percentage: Any, percent: int | None) -> percent_pb2.FractionalPercent:
    if percentage is not None:
        return fractional(percentage.value)
    return fractional(float(percent or 0))


def grpc_status_code(name: str) -> int:
    """A gRPC status by name ("UNAVAILABLE") or number ("14")."""
    if name.isdigit():
        return int(name)
    return _GRPC_CODES.index(name.upper())


def translate_cors(cors: Any) -> cors_pb2.CorsPolicy:
    out = cors_pb2.CorsPolicy()
    for origin in cors.allow_origins:
        matcher = translate_string_match(origin)
        if matcher is not None:
            out.allow_origin_string_match.append(matcher)
    for origin in cors.allow_origin:  # deprecated exact origins; "*" allows all
        if origin == "*":
            out.allow_origin_string_match.add(prefix="")
        else:
            out.allow_origin_string_match.add(exact=origin)
    out.allow_methods = ",".join(cors.allow_methods)
    out.allow_headers = ",".join(cors.allow_headers)
    out.expose_headers = ",".join(cors.expose_headers)
    if cors.max_age is not None:
        out.max_age = str(cors.max_age.nanos // 1_000_000_000)
    if cors.allow_credentials is not None:
        out.allow_credentials.value = cors.allow_credentials
    if cors.unmatched_preflights in ("FORWARD", "IGNORE"):
        out.forward_not_matching_preflights.value = cors.unmatched_preflights == "FORWARD"
    out.filter_enabled.default_value.CopyFrom(fractional(100.0))
    return out


def translate_mirrors(http: Any, ctx: RouteContext) -> list[rc.RouteAction.RequestMirrorPolicy]:
    Mirror = rc.RouteAction.RequestMirrorPolicy
    out = []
    if http.mirror is not None:
        if http.mirror_percentage is not None:
            pct = http.mirror_percentage.value
        else:
            pct = float(http.mirror_percent) if http.mirror_percent is not None else 100.0
        policy = Mirror(cluster=ctx.cluster_for(http.mirror), trace_sampled={"value": False})
        policy.runtime_fraction.default_value.CopyFrom(fractional(pct))
        out.append(policy)
    for m in http.mirrors:
        policy = Mirror(cluster=ctx.cluster_for(m.destination), trace_sampled={"value": False})
        policy.runtime_fraction.default_value.CopyFrom(fractional(m.percentage.value if m.percentage else None))
        out.append(policy)
    return out


def translate_redirect(redirect: Any, *, port: int | None) -> rc.RedirectAction:
    out = rc.RedirectAction(
        response_code=_REDIRECT_CODES.get(redirect.redirect_code or 301, rc.RedirectAction.MOVED_PERMANENTLY)
    )
    if redirect.uri:
        out.path_redirect = redirect.uri
    if redirect.authority:
        out.host_redirect = redirect.authority
    if redirect.scheme:
        out.scheme_redirect = redirect.scheme
    if redirect.port:
        out.port_redirect = redirect.port
    elif redirect.derive_port == "FROM_PROTOCOL_DEFAULT":
        out.port_redirect = 443 if (redirect.scheme or "") == "https" else 80
    elif redirect.derive_port == "FROM_REQUEST_PORT" and port:
        out.port_redirect = port
    return out


def translate_direct_response(direct: Any) -> rc.DirectResponseAction:
    out = rc.DirectResponseAction(status=direct.status or 200)
    body = direct.body
    if body is not None and body.string_ is not None:
        out.body.inline_string = body.string_
    elif body is not None and body.bytes_ is not None:
        text = body.bytes_ + "=" * (-len(body.bytes_) % 4)
        out.body.inline_bytes = base64.b64decode(text.replace("-", "+").replace("_", "/"))
    return out


def _rewrite(action: rc.RouteAction, rewrite: Any, *, match: Any) -> None:
    if rewrite.uri_regex_rewrite is not None:
        action.regex_rewrite.pattern.regex = rewrite.uri_regex_rewrite.match or ""
        action.regex_rewrite.substitution = rewrite.uri_regex_rewrite.rewrite or ""
    elif rewrite.uri:
        if match is not None and match.uri is not None and match.uri.regex is not None:
            # Envoy's prefix_rewrite needs a prefix or path match; for a regex match the whole path is replaced.
            action.regex_rewrite.pattern.regex = "^.*$"
            action.regex_rewrite.substitution = rewrite.uri
        else:
            action.prefix_rewrite = rewrite.uri
    if rewrite.authority:
        action.host_rewrite_literal = rewrite.authority


def _set_header(headers: Any, name: str) -> str | None:
    request = headers.request if headers is not None else None
    if request is None:
        return None
    return next((v for k, v in request.set.items() if k.lower() == name), None)


def _headers(target: Any, headers: Any) -> None:
    """``headers.request``/``response`` ``set``/``add``/``remove`` on a route or weighted cluster."""
    if headers is None:
        return
    for ops, add, remove in (
        (headers.request, target.request_headers_to_add, target.request_headers_to_remove),
        (headers.response, target.response_headers_to_add, target.response_headers_to_remove),
    ):
        if ops is None:
            continue
        add.extend(
            _header_options(ops.set, overwrite=True, skip=("host", ":authority") if ops is headers.request else ())
        )
        add.extend(_header_options(ops.add, overwrite=False))
        remove.extend(ops.remove)


def _header_options(
    values: dict[str, str], *, overwrite: bool, skip: Iterable[str] = ()
) -> list[base_pb2.HeaderValueOption]:
    action = (
        base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
        if overwrite
        else base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
    )
    return [
        base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, value=v), append_action=action)
        for k, v in sorted(values.items())
        if k.lower() not in skip
    ]


def default_route(cluster: str, *, retries: RetryDefaults, hash_policy: list[rc.RouteAction.HashPolicy]) -> rc.Route:
    """What a service with no VirtualService gets: everything to its cluster, mesh retries, no timeout."""
    route = rc.Route(name="default", match=rc.RouteMatch(prefix="/"))
    route.route.cluster = cluster
    route.route.timeout.CopyFrom(duration(0))
    route.route.hash_policy.extend(hash_policy)
    retry = translate_retries(None, defaults=retries, hashing=bool(hash_policy))
    if retry is not None:
        route.route.retry_policy.CopyFrom(retry)
    return route
