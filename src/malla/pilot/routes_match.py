"""VirtualService ``HTTPMatchRequest`` -> Envoy ``RouteMatch``.

Request attributes become Envoy matchers: ``uri`` the path (exact, prefix or
RE2 regex, ``ignoreUriCase``), ``scheme``/``method``/``authority`` the
``:scheme``/``:method``/``:authority`` pseudo-headers, ``headers`` and
``withoutHeaders`` header matchers (an empty match means "present"),
``queryParams`` query matchers. ``port``, ``sourceLabels``,
``sourceNamespace`` and ``gateways`` are not request attributes: like
Istio, translation decides them per proxy and listener (:func:`match_applies`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import regex_pb2, string_pb2

from malla.pilot.services import labels_match


def match_applies(
    match: Any,
    *,
    port: int | None,
    proxy_labels: Mapping[str, str],
    proxy_namespace: str,
    gateway: str,
    config_namespace: str = "",
) -> bool:
    """Whether a match can ever be true for this proxy, listener port and gateway.

    ``gateway`` is ``mesh`` for sidecars or ``namespace/name``; a short gateway name in the
    match lives in ``config_namespace``, the VirtualService's.
    """
    if match.port and port is not None and match.port != port:
        return False
    if match.source_labels and not labels_match(match.source_labels, proxy_labels):
        return False
    if match.source_namespace and match.source_namespace != proxy_namespace:
        return False
    gateways = {g if g == "mesh" or "/" in g else f"{config_namespace}/{g}" for g in match.gateways}
    return not gateways or gateway in gateways


def translate_string_match(m: Any, *, ignore_case: bool = False) -> string_pb2.StringMatcher | None:
    """Istio StringMatch -> Envoy StringMatcher; None for an empty match (Istio: "present")."""
    if m is None:
        return None
    if m.exact is not None:
        return string_pb2.StringMatcher(exact=m.exact, ignore_case=ignore_case)
    if m.prefix is not None:
        return string_pb2.StringMatcher(prefix=m.prefix, ignore_case=ignore_case)
    if m.regex is not None:
        return string_pb2.StringMatcher(safe_regex=regex(m.regex))
    return None


def regex(pattern: str) -> regex_pb2.RegexMatcher:
    return regex_pb2.RegexMatcher(regex=pattern)


def translate_match(match: Any | None) -> rc.RouteMatch:
    """One HTTPMatchRequest (None: everything) -> RouteMatch."""
    out = rc.RouteMatch(prefix="/")
    if match is None:
        return out
    if match.uri is not None:
        _uri(out, match.uri)
    if match.ignore_uri_case:
        out.case_sensitive.value = False
    for pseudo, value in ((":scheme", match.scheme), (":method", match.method), (":authority", match.authority)):
        if value is not None:
            out.headers.append(header_matcher(pseudo, value))
    for name, value in sorted(match.headers.items()):
        out.headers.append(header_matcher(name, value))
    for name, value in sorted(match.without_headers.items()):
        out.headers.append(header_matcher(name, value, invert=True))
    for name, value in sorted(match.query_params.items()):
        q = rc.QueryParameterMatcher(name=name)
        matcher = translate_string_match(value)
        if matcher is None:
            q.present_match = True
        else:
            q.string_match.CopyFrom(matcher)
        out.query_parameters.append(q)
    return out


def _uri(out: rc.RouteMatch, uri: Any) -> None:
    if uri.exact is not None:
        out.path = uri.exact
    elif uri.prefix is not None:
        out.prefix = uri.prefix
    elif uri.regex is not None:
        out.safe_regex.CopyFrom(regex(uri.regex))


def header_matcher(name: str, value: Any, *, invert: bool = False) -> rc.HeaderMatcher:
    out = rc.HeaderMatcher(name=name.lower(), invert_match=invert)
    matcher = translate_string_match(value)
    if matcher is None:
        out.present_match = True
    else:
        out.string_match.CopyFrom(matcher)
    return out
