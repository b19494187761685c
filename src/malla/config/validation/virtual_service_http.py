"""VirtualService HTTP routes, as Istio's validation webhook checks them.

Matches (string matches, RE2 regexes, header names, query parameters),
the route's action (route, redirect, direct response or delegate), header
operations and values, rewrites, retries, timeouts, fault injection,
mirroring and CORS. Destinations, weights and the L4 match attributes
come from ``virtual_service_l4``.
"""

from __future__ import annotations

import base64
import re
from http import HTTPStatus

from malla.api.base import Percent
from malla.api.networking.virtual_service import (
    CorsPolicy,
    FaultAbort,
    FaultDelay,
    HTTPDirectResponse,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPRedirect,
    HTTPRetry,
    HTTPRewrite,
    HTTPRoute,
    Headers,
    StringMatch,
)
from malla.config.validation import Findings
from malla.config.validation.common import check_duration, check_percent, check_regex, is_dns1123_label, join
from malla.config.validation.common_ports import check_port
from malla.config.validation.virtual_service_l4 import check_destination, check_l4_match, check_weights

_KB, _MB = 1024, 1024 * 1024
_REGEX_MAX = 1024  # Envoy's RE2 program-size limit, approximated by length as Istio does
CLAIM_PREFIXES = ("@request.auth.claims.", "@request.auth.claims[")
_PSEUDO_HEADERS = {":method", ":scheme", ":authority", ":path", ":status"}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~A-Za-z0-9]+")  # RFC 7230 header-name characters
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_RETRY_ON = frozenset({
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "retriable-4xx", "refused-stream",
    "retriable-status-codes", "retriable-headers", "envoy-ratelimited", "http3-post-connect-failure",
    "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
})  # fmt: skip
_HTTP_STATUS_CODES = frozenset(s.value for s in HTTPStatus)
_CORS_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*"})
_GRPC_STATUS = frozenset({
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
})  # fmt: skip


# --- Strings, headers ------------------------------------------------------------------------


def _check_string_match(f: Findings, path: str, sm: StringMatch | None, *, empty_prefix_ok: bool = False) -> None:
    if sm is None:
        return
    if sum(v is not None for v in (sm.exact, sm.prefix, sm.regex)) > 1:
        f.error(path, "set only one of exact, prefix and regex")
    if sm.prefix == "" and not empty_prefix_ok:
        f.error(join(path, "prefix"), "a prefix match must not be empty")
    if sm.regex is not None:
        _check_regex(f, join(path, "regex"), sm.regex)


def _check_regex(f: Findings, path: str, pattern: str) -> None:
    if not pattern:
        f.error(path, "a regex match must not be empty")
    elif len(pattern) > _REGEX_MAX:
        f.error(path, f"regex is too long ({len(pattern)} characters): at most {_REGEX_MAX} are allowed")
    elif error := check_regex(pattern):
        f.error(path, error)


def _match_header_name_error(name: str) -> str | None:
    if not name:
        return "header name cannot be empty"
    if name.startswith(CLAIM_PREFIXES) or name in _PSEUDO_HEADERS or _TOKEN.fullmatch(name):
        return None
    return f"invalid header name {name!r}: use letters, digits and -!#$%&'*+.^_`|~"


def _operation_name_error(name: str, *, authority_ok: bool) -> str | None:
    lowered = name.lower()
    if not name:
        return "header name cannot be empty"
    if authority_ok and lowered in (":authority", "host"):
        return None
    if lowered == "host":
        return "the Host header cannot be set or removed here: use rewrite.authority"
    if name.startswith(":"):
        return f"invalid header {name!r}: pseudo-headers (':' prefix) cannot be changed"
    return None


def _variable_end(value: str, start: int) -> int | None:
    """Index of the '%' closing a %VAR% or %VAR(args)% that starts at ``start``."""
    i, depth, quoted = start, 0, False
    while i < len(value):
        ch = value[i]
        if quoted:
            i += 2 if ch == "\\" else 1
            quoted = quoted and ch != '"'
            continue
        if ch == '"' and depth:
            quoted = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "%" and depth == 0:
            return i
        i += 1
    return None


def _header_value_error(value: str) -> str | None:
    """Envoy's header formatter: literal text, '%%' for '%', and %VARIABLE% expressions."""
    if _CONTROL.search(value):
        return f"header value {value!r} contains control characters"
    i = 0
    while i < len(value):
        if value[i] != "%":
            i += 1
        elif value[i + 1 : i + 2] == "%":
            i += 2
        elif (end := _variable_end(value, i + 1)) is None:
            return f"header value {value!r} has an unterminated %VARIABLE%: write a literal '%' as '%%'"
        else:
            i = end + 1
    return None


def _check_header_ops(f: Findings, path: str, headers: Headers | None) -> None:
    if headers is None:
        return
    for side, ops in (("request", headers.request), ("response", headers.response)):
        if ops is None:
            continue
        where = join(path, side)
        for op in ("set", "add"):
            for name, value in getattr(ops, op).items():
                error = _operation_name_error(name, authority_ok=side == "request") or _header_value_error(value)
                if error:
                    f.error(join(where, op, name), error)
        for i, name in enumerate(ops.remove):
            if error := _operation_name_error(name, authority_ok=False):
                f.error(join(where, "remove", i), error)

# --- HTTP route parts ------------------------------------------------------------------------


def _check_conflicts(f: Findings, path: str, route: HTTPRoute, *, in_delegate: bool) -> None:
    if route.delegate is not None and not in_delegate:
        for field, value in (("redirect", route.redirect), ("route", route.route)):
            if value:
                f.error(join(path, field), f"a route that delegates cannot also set {field}")
        return
    if route.delegate is not None:
        f.error(join(path, "delegate"), "a delegate VirtualService cannot delegate again")
    action = "redirect" if route.redirect else "directResponse" if route.direct_response else None
    if action:
        others = {"route": route.route, "fault": route.fault, "rewrite": route.rewrite}
        if action == "redirect":
            others["directResponse"] = route.direct_response
        for field, value in others.items():
            if value:
                f.error(join(path, field), f"an HTTP route with {action} cannot also set {field}")
    elif not route.route:
        f.error(path, "an HTTP route needs one of route, redirect or directResponse")
    if route.mirror is not None and route.mirrors:
        f.error(join(path, "mirrors"), "set only one of mirror and mirrors")


def _check_match(f: Findings, path: str, match: HTTPMatchRequest) -> None:
    for field, headers in (("headers", match.headers), ("withoutHeaders", match.without_headers)):
        for name, sm in headers.items():
            where = join(path, field, name)
            if error := _match_header_name_error(name):
                f.error(where, error)
            if not (field == "withoutHeaders" and sm.regex == "*"):  # '*' means "present", not a regex
                _check_string_match(f, where, sm)
    _check_string_match(f, join(path, "uri"), match.uri, empty_prefix_ok=True)
    for field in ("scheme", "method", "authority"):
        _check_string_match(f, join(path, field), getattr(match, field))
    for name, sm in match.query_params.items():
        _check_string_match(f, join(path, "queryParams", name), sm)
    check_l4_match(f, path, match)
    if match.source_namespace and not is_dns1123_label(match.source_namespace):
        f.error(
            join(path, "sourceNamespace"),
            f"invalid sourceNamespace {match.source_namespace!r}: must be a namespace name",
        )


def _percentage_error(p: Percent | None) -> str | None:
    if p is not None and (not 0.0 <= p.value <= 100.0 or 0.0 < p.value < 0.0001):
        return f"percentage {p.value} must be 0 or between 0.0001 and 100"
    return None


def _check_abort(f: Findings, path: str, abort: FaultAbort) -> None:
    if error := _percentage_error(abort.percentage):
        f.error(join(path, "percentage", "value"), error)
    given = (("httpStatus", abort.http_status), ("grpcStatus", abort.grpc_status), ("http2Error", abort.http2_error))
    kinds = [k for k, v in given if v is not None]
    if len(kinds) > 1:
        f.error(path, f"set only one of httpStatus, grpcStatus and http2Error, not {' and '.join(kinds)}")
    elif not kinds:
        f.warning(path, "abort has no error type: set httpStatus or grpcStatus")
    if abort.grpc_status is not None and abort.grpc_status not in _GRPC_STATUS:
        f.error(
            join(path, "grpcStatus"),
            f"unknown gRPC status {abort.grpc_status!r}: use a code name such as NOT_FOUND or UNAVAILABLE",
        )
    if abort.http2_error is not None:
        f.error(join(path, "http2Error"), "HTTP/2 error aborts are not supported: use httpStatus or grpcStatus")
    if abort.http_status is not None and not 200 <= abort.http_status <= 599:
        f.error(join(path, "httpStatus"), f"HTTP status {abort.http_status} must be between 200 and 599")


def _check_delay(f: Findings, path: str, delay: FaultDelay) -> None:
    if error := _percentage_error(delay.percentage):
        f.error(join(path, "percentage", "value"), error)
    if error := check_percent(delay.percent):
        f.error(join(path, "percent"), error)
    if delay.fixed_delay is not None and delay.exponential_delay is not None:
        f.error(path, "set only one of fixedDelay and exponentialDelay")
    if error := check_duration(delay.fixed_delay, "fixedDelay"):
        f.error(join(path, "fixedDelay"), error)
    if delay.exponential_delay is not None:
        f.error(join(path, "exponentialDelay"), "exponentialDelay is not supported: use fixedDelay")


def _check_fault(f: Findings, path: str, fault: HTTPFaultInjection | None) -> None:
    if fault is None:
        return
    if fault.abort is None and fault.delay is None:
        f.error(path, "fault injection needs an abort, a delay or both")
    if fault.abort is not None:
        _check_abort(f, join(path, "abort"), fault.abort)
    if fault.delay is not None:
        _check_delay(f, join(path, "delay"), fault.delay)


def _check_mirroring(f: Findings, path: str, route: HTTPRoute) -> None:
    if route.mirror_percent is not None:
        f.warning(join(path, "mirrorPercent"), "mirrorPercent is deprecated: use mirrorPercentage")
        if route.mirror_percent > 100:
            f.error(join(path, "mirrorPercent"), f"mirrorPercent must be at most 100, got {route.mirror_percent}")
    for where, pct in [(join(path, "mirrorPercentage"), route.mirror_percentage)] + [
        (join(path, "mirrors", i, "percentage"), m.percentage) for i, m in enumerate(route.mirrors)
    ]:
        if pct is not None and not 0 <= pct.value <= 100:
            f.error(join(where, "value"), f"mirror percentage must be between 0 and 100, got {pct.value}")
    check_destination(f, join(path, "mirror"), route.mirror)
    for i, mirror in enumerate(route.mirrors):
        if mirror.destination is None:
            f.error(join(path, "mirrors", i, "destination"), "a mirror needs a destination")
        check_destination(f, join(path, "mirrors", i, "destination"), mirror.destination)


def _check_redirect(f: Findings, path: str, r: HTTPRedirect | None) -> None:
    if r is None:
        return
    if not (r.uri or r.authority or r.port is not None or r.derive_port is not None or r.scheme):
        f.error(path, "a redirect must set at least one of uri, authority, scheme, port or derivePort")
    if r.port is not None and r.derive_port is not None:
        f.error(path, "set only one of port and derivePort")
    if r.redirect_code and not 300 <= r.redirect_code <= 399:
        f.error(join(path, "redirectCode"), f"redirect code {r.redirect_code} is not a 3xx code")
    if r.scheme and r.scheme not in ("http", "https"):
        f.error(join(path, "scheme"), f"redirect scheme must be 'http' or 'https', got {r.scheme!r}")
    if r.port and (error := check_port(r.port)):
        f.error(join(path, "port"), error)


def _body_size(response: HTTPDirectResponse) -> int:
    body = response.body
    if body is None:
        return 0
    if body.bytes_ is not None:
        text = body.bytes_.strip().replace("-", "+").replace("_", "/")
        return len(base64.b64decode(text + "=" * (-len(text) % 4)))
    return len((body.string_ or "").encode())


def _check_direct_response(f: Findings, path: str, response: HTTPDirectResponse | None) -> None:
    if response is None:
        return
    if not 200 <= (response.status or 0) <= 599:
        f.error(join(path, "status"), f"status {response.status or 0} must be an HTTP status between 200 and 599")
    if response.body is not None and response.body.string_ is not None and response.body.bytes_ is not None:
        f.error(join(path, "body"), "set only one of string and bytes")
    size = _body_size(response)
    if size > _MB:
        f.error(join(path, "body"), f"the body is {size} bytes: direct responses must be smaller than 1MB")
    elif size > 100 * _KB:
        f.warning(join(path, "body"), f"the body is {size} bytes: large direct responses slow down the control plane")


def _check_retry(f: Findings, path: str, retry: HTTPRetry | None) -> None:
    if retry is None:
        return
    attempts = retry.attempts or 0
    if attempts < 0:
        f.error(join(path, "attempts"), f"attempts must not be negative, got {attempts}")
    tuned = retry.per_try_timeout is not None or retry.retry_on or retry.retry_remote_localities is not None
    if attempts == 0 and tuned:
        f.error(
            join(path, "attempts"),
            "retries are disabled (attempts is 0) but perTryTimeout, retryOn or retryRemoteLocalities is set",
        )
    for field, value in (("perTryTimeout", retry.per_try_timeout), ("backoff", retry.backoff)):
        if error := check_duration(value, field):
            f.error(join(path, field), error)
    for policy in retry.retry_on.split(",") if retry.retry_on else ():
        if policy not in _RETRY_ON and not (policy.isdigit() and int(policy) in _HTTP_STATUS_CODES):
            f.error(
                join(path, "retryOn"),
                f"{policy!r} is not a valid retryOn policy: use Envoy's names "
                "(5xx, gateway-error, connect-failure, ...) or HTTP status codes",
            )


def _check_rewrite(f: Findings, path: str, rewrite: HTTPRewrite | None) -> None:
    if rewrite is None:
        return
    if rewrite.uri and rewrite.uri_regex_rewrite is not None:
        f.error(path, "set only one of uri and uriRegexRewrite")
    if not (rewrite.uri or rewrite.uri_regex_rewrite is not None or rewrite.authority):
        f.error(path, "a rewrite must set uri, uriRegexRewrite or authority")
    if (regex := rewrite.uri_regex_rewrite) is not None:
        if not regex.match or not regex.rewrite:
            f.error(join(path, "uriRegexRewrite"), "uriRegexRewrite needs both match and rewrite")
        if regex.match:
            _check_regex(f, join(path, "uriRegexRewrite", "match"), regex.match)


def _check_authority_once(f: Findings, path: str, route: HTTPRoute) -> None:
    """rewrite.authority and a request ':authority'/'host' header both set the authority."""
    current = route.rewrite.authority if route.rewrite else None
    ops = route.headers.request if route.headers else None
    if ops is None:
        return
    for op in ("set", "add"):
        for name, value in getattr(ops, op).items():
            if name.lower() not in (":authority", "host"):
                continue
            if current:
                f.error(
                    join(path, "headers", "request", op, name),
                    f"the authority is set twice ({current!r} and {value!r}): set it in one place",
                )
            current = value


def _check_cors(f: Findings, path: str, cors: CorsPolicy | None) -> None:
    if cors is None:
        return
    if cors.allow_origin:
        f.warning(join(path, "allowOrigin"), "allowOrigin is deprecated: use allowOrigins with exact, prefix or regex")
    for i, origin in enumerate(cors.allow_origins):
        if not (origin.exact or origin.prefix or origin.regex):
            f.error(join(path, "allowOrigins", i), "an allowed origin needs a non-empty exact, prefix or regex")
        _check_string_match(f, join(path, "allowOrigins", i), origin)
    for i, method in enumerate(cors.allow_methods):
        if method not in _CORS_METHODS:
            f.error(
                join(path, "allowMethods", i),
                f"{method!r} is not a supported HTTP method: use GET, POST, PUT, ... or '*'",
            )
    for field in ("allowHeaders", "exposeHeaders"):
        for i, name in enumerate(getattr(cors, "allow_headers" if field == "allowHeaders" else "expose_headers")):
            if name != "*" and not _TOKEN.fullmatch(name):
                f.error(
                    join(path, field, i),
                    f"invalid header name {name!r}: use letters, digits and -!#$%&'*+.^_`|~, or '*'",
                )
    if error := check_duration(cors.max_age, "maxAge"):
        f.error(join(path, "maxAge"), error)
    elif cors.max_age is not None and cors.max_age.nanos % 1_000_000_000:
        f.error(join(path, "maxAge"), f"maxAge is only accurate to whole seconds, got {cors.max_age}")


def check_http_route(f: Findings, path: str, route: HTTPRoute, *, in_delegate: bool) -> None:
    _check_conflicts(f, path, route, in_delegate=in_delegate)
    for i, match in enumerate(route.match):
        _check_match(f, join(path, "match", i), match)
    _check_header_ops(f, join(path, "headers"), route.headers)
    _check_cors(f, join(path, "corsPolicy"), route.cors_policy)
    _check_fault(f, join(path, "fault"), route.fault)
    _check_mirroring(f, path, route)
    _check_redirect(f, join(path, "redirect"), route.redirect)
    _check_direct_response(f, join(path, "directResponse"), route.direct_response)
    _check_retry(f, join(path, "retries"), route.retries)
    _check_rewrite(f, join(path, "rewrite"), route.rewrite)
    _check_authority_once(f, path, route)
    for i, dest in enumerate(route.route):
        _check_header_ops(f, join(path, "route", i, "headers"), dest.headers)
    check_weights(f, join(path, "route"), route.route)
    if error := check_duration(route.timeout, "timeout"):
        f.error(join(path, "timeout"), error)

