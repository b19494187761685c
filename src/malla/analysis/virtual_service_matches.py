"""VirtualService rules that can never be reached, and matches that can never win (IST0130, IST0131).

Envoy tries routes in order, so a rule after one without matches, a rule
whose every match an earlier rule already has, and an HTTP prefix match
covered by an earlier, shorter prefix with the same conditions are dead
config. These are the warnings Istio's VirtualService validation attaches
(istioctl reports them under the schema validation analyzer).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from malla.analysis.context import AnalysisContext
from malla.analysis.messages import go_quote
from malla.analysis.registry import analyzer
from malla.api.base import IstioModel
from malla.api.networking.virtual_service import HTTPMatchRequest, HTTPRoute, StringMatch
from malla.config.model import Config

Unreachable = Callable[[str, str], None]
Ineffective = Callable[[str, str, str], None]


def _rule_name(route: Any, index: int) -> str:
    name = getattr(route, "name", None) if isinstance(route, HTTPRoute) else None
    return go_quote(name) if name else f"#{index}"


def _match_name(match: Any, index: int) -> str:
    name = match.name if isinstance(match, HTTPMatchRequest) else None
    return go_quote(name) if name else f"#{index}"


def _match_key(match: IstioModel) -> str:
    """What a match selects, ignoring its name: two equal keys match the same requests."""
    body = match.model_dump(exclude_none=True, mode="json")
    body.pop("name", None)
    return json.dumps(body, sort_keys=True)


def _analyze_rules(routes: Sequence[Any], unreachable: Unreachable, ineffective: Ineffective) -> list[tuple[str, str, Any]]:
    """Duplicate and shadowed rules; returns (rule name, match name, match) of first-seen matches."""
    seen: dict[str, int] = {}
    empty_rule = -1
    kept: list[tuple[str, str, Any]] = []
    for i, route in enumerate(routes):
        if not route.match:
            if empty_rule >= 0:
                unreachable(_rule_name(route, i), "only the last rule can have no matches")
            empty_rule = i
            continue
        duplicates = 0
        for j, match in enumerate(route.match):
            if empty_rule >= 0:
                unreachable(_rule_name(route, i), "route without matches defined before")
                continue
            key = _match_key(match)
            if key in seen:
                first = seen[key]
                ineffective(_rule_name(route, i), _match_name(match, j), _rule_name(routes[first], first))
                duplicates += 1
                continue
            seen[key] = i
            kept.append((_rule_name(route, i), _match_name(match, j), match))
        if duplicates == len(route.match):
            unreachable(_rule_name(route, i), "all matches used by prior rules")
    return kept


@dataclass(frozen=True)
class _PrefixMatch:
    """An HTTP match on a URI prefix, reduced to the conditions the overlap check compares."""

    rule: str
    match: str
    prefix: str
    port: int
    method: str
    authority: str
    headers: Mapping[str, str]
    query_params: Mapping[str, str]
    without_headers: Mapping[str, str]


def _exact_or_prefix(sm: StringMatch | None) -> str:
    if sm is not None and sm.exact:
        return "exact:" + sm.exact
    if sm is not None and sm.prefix:
        return "prefix:" + sm.prefix
    return ""


def _prefix_match(rule: str, name: str, match: HTTPMatchRequest) -> _PrefixMatch | None:
    if match.uri is None or not match.uri.prefix:
        return None
    return _PrefixMatch(
        rule=rule,
        match=name,
        prefix=match.uri.prefix,
        port=match.port or 0,
        # A match without a method is compared as GET, the method most requests carry.
        method=_exact_or_prefix(match.method) or "exact:GET",
        authority=_exact_or_prefix(match.authority),
        headers={k: _exact_or_prefix(v) for k, v in match.headers.items()},
        query_params={k: _exact_or_prefix(v) for k, v in match.query_params.items()},
        without_headers={k: _exact_or_prefix(v) for k, v in match.without_headers.items()},
    )


def _covers_value(earlier: str, later: str) -> bool:
    return earlier == later or earlier.startswith(later)


def _covers_map(earlier: Mapping[str, str], later: Mapping[str, str]) -> bool:
    if len(earlier) != len(later):
        return False
    return all(k in later and _covers_value(v, later[k]) for k, v in earlier.items())


def _covers(a: _PrefixMatch, b: _PrefixMatch) -> bool:
    """Whether every request ``b`` (later) matches was already taken by ``a`` (earlier)."""
    return (
        b.prefix.startswith(a.prefix)
        and a.port == b.port
        and _covers_value(a.method, b.method)
        and _covers_value(a.authority, b.authority)
        and _covers_map(a.headers, b.headers)
        and _covers_map(a.query_params, b.query_params)
        and _covers_map(a.without_headers, b.without_headers)
    )


def _analyze_overlaps(kept: list[tuple[str, str, Any]], ineffective: Ineffective) -> None:
    prefixes = [p for rule, name, match in kept if (p := _prefix_match(rule, name, match))]
    for i, a in enumerate(prefixes):
        for b in prefixes[i + 1 :]:
            if b.prefix != a.prefix and _covers(a, b):
                ineffective(b.rule, f"{b.match} of prefix {b.prefix}", f"{a.match} of prefix {a.prefix} on {a.rule}")


def _check(ctx: AnalysisContext, vs: Config) -> None:
    def unreachable(rule: str, reason: str) -> None:
        ctx.report(vs, "VirtualServiceUnreachableRule", rule, reason)

    def ineffective(rule: str, match: str, earlier: str) -> None:
        ctx.report(vs, "VirtualServiceIneffectiveMatch", rule, match, earlier)

    kept = _analyze_rules(vs.spec.http, unreachable, ineffective)
    _analyze_overlaps(kept, ineffective)
    _analyze_rules(vs.spec.tcp, unreachable, ineffective)
    _analyze_rules(vs.spec.tls, unreachable, ineffective)


@analyzer(
    "schema.ValidationAnalyzer.VirtualService",
    "Checks VirtualService rules for routes that are never used and matches shadowed by earlier ones",
    "VirtualServiceUnreachableRule",
    "VirtualServiceIneffectiveMatch",
)
def unreachable_rules_analyzer(ctx: AnalysisContext) -> None:
    for vs in ctx.configs("VirtualService"):
        _check(ctx, vs)


ANALYZERS = (unreachable_rules_analyzer,)
