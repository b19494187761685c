"""Negative status conditions the control plane wrote back on resources (IST0171).

Istio and the Gateway API controllers record why a resource is not in effect
in ``status.conditions`` (for routes, per parent under ``status.parents``);
a condition known to be negative is surfaced as a finding.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from malla.analysis import kube
from malla.analysis.context import AnalysisContext, Resource
from malla.analysis.registry import analyzer
from malla.config.model import Config

_GATEWAY_API = "gateway.networking.k8s.io/"
_ROUTE_CONDITIONS = {"Accepted": "False", "Programmed": "False", "ResolvedRefs": "False"}
# Per kind: condition type -> the status that means "not in effect".
_NEGATIVE: Mapping[str, Mapping[str, str]] = {
    "Service": {"istio.io/WaypointBound": "False"},
    "ServiceEntry": {"istio.io/WaypointBound": "False"},
    "AuthorizationPolicy": {"ZtunnelAccepted": "False", "WaypointAccepted": "False"},
    "Gateway": _ROUTE_CONDITIONS,
    "HTTPRoute": _ROUTE_CONDITIONS,
    "GRPCRoute": _ROUTE_CONDITIONS,
}


def _status(resource: Resource) -> Mapping[str, Any]:
    body = resource.raw if isinstance(resource, Config) else resource.body
    return kube.mapping(kube.mapping(body).get("status"))


def _conditions(resource: Resource) -> Iterator[Mapping[str, Any]]:
    status = _status(resource)
    groups = [status.get("conditions")]
    if resource.kind in ("HTTPRoute", "GRPCRoute"):
        parents = status.get("parents")
        groups = [kube.mapping(p).get("conditions") for p in parents] if isinstance(parents, list) else []
    for group in groups:
        if isinstance(group, list):
            yield from (c for c in group if isinstance(c, Mapping))


def _is_negative(kind: str, condition: Mapping[str, Any]) -> bool:
    ctype, status = str(condition.get("type", "")), str(condition.get("status", ""))
    if _NEGATIVE[kind].get(ctype) == status:
        return True
    # A policy accepted by its waypoint with some targetRefs dropped is reported too.
    return kind == "AuthorizationPolicy" and ctype == "WaypointAccepted" and condition.get("reason") == "PartiallyInvalid"


def _candidates(ctx: AnalysisContext) -> Iterator[Resource]:
    yield from ctx.kube("Service")
    yield from ctx.configs("ServiceEntry")
    yield from ctx.configs("AuthorizationPolicy")
    for kind in ("Gateway", "HTTPRoute", "GRPCRoute"):
        yield from (o for o in ctx.kube(kind) if o.api_version.startswith(_GATEWAY_API))


@analyzer(
    "conditions.ConditionAnalyzer",
    "Checks for negative status conditions on resources",
    "NegativeConditionStatus",
)
def condition_analyzer(ctx: AnalysisContext) -> None:
    for resource in _candidates(ctx):
        for condition in _conditions(resource):
            if _is_negative(resource.kind, condition):
                ctx.report(
                    resource,
                    "NegativeConditionStatus",
                    str(condition.get("type", "")),
                    str(condition.get("reason", "")),
                    str(condition.get("message", "")),
                    field="status.conditions",
                )


ANALYZERS = (condition_analyzer,)
