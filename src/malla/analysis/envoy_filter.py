"""EnvoyFilter checks: patch operations Istio ignores, and order-dependent patches (IST0151-IST0155).

A relative operation (INSERT_BEFORE/AFTER, REPLACE, REMOVE, MERGE into a
filter) depends on what other EnvoyFilters did first; without a ``priority`` that order is not
defined (IST0151), and a ``proxyVersion`` match makes it change on upgrade
(IST0155). ADD and REMOVE do nothing on ROUTE_CONFIGURATION and HTTP_ROUTE
(IST0153, IST0154); REPLACE works only on filters and virtual hosts (IST0152).
"""

from __future__ import annotations

from malla.analysis.context import AnalysisContext
from malla.analysis.registry import analyzer
from malla.api.networking.envoy_filter import EnvoyConfigObjectPatch
from malla.config.model import Config

_ROUTE_TARGETS = ("ROUTE_CONFIGURATION", "HTTP_ROUTE")
# Istio's REPLACE handles named filters and, since 1.20, virtual hosts.
_REPLACEABLE = ("HTTP_FILTER", "NETWORK_FILTER", "VIRTUAL_HOST")
_INSERTS = ("INSERT_BEFORE", "INSERT_AFTER")
# A MERGE depends on patch order only when it targets a filter another EnvoyFilter may insert;
# merging into a listener, filter chain, cluster or route does not (Istio reports none for those).
_ORDERED_MERGE_TARGETS = ("HTTP_FILTER", "NETWORK_FILTER", "LISTENER_FILTER")


def _patched_name(patch: EnvoyConfigObjectPatch) -> str:
    """The name of the thing a patch installs or targets: ``value.name``, else the matched filter."""
    value = patch.patch.value if patch.patch else None
    if not value:
        return ""
    if value.get("name") is not None:
        return str(value["name"])
    listener = patch.match.listener if patch.match else None
    chain = listener.filter_chain if listener else None
    return (chain.filter.name or "") if chain and chain.filter else ""


def _relative(ctx: AnalysisContext, ef: Config, index: int, name: str, versioned: list[str]) -> None:
    if ef.spec.priority:
        return
    message = "EnvoyFilterUsesRelativeOperationWithProxyVersion" if name in versioned else "EnvoyFilterUsesRelativeOperation"
    ctx.report(ef, message, field=f"spec.configPatches[{index}].patch.operation")


def _check_patch(ctx: AnalysisContext, ef: Config, index: int, patch: EnvoyConfigObjectPatch, versioned: list[str]) -> None:
    operation = patch.patch.operation if patch.patch else None
    apply_to = patch.apply_to or ""
    name = _patched_name(patch)
    field = f"spec.configPatches[{index}]"
    if operation == "ADD":
        if apply_to in _ROUTE_TARGETS:
            ctx.report(ef, "EnvoyFilterUsesAddOperationIncorrectly", field=f"{field}.applyTo")
    elif operation == "REMOVE":
        if apply_to in _ROUTE_TARGETS:
            ctx.report(ef, "EnvoyFilterUsesRemoveOperationIncorrectly", field=f"{field}.applyTo")
        else:
            _relative(ctx, ef, index, name, versioned)
    elif operation == "REPLACE":
        if apply_to not in _REPLACEABLE:
            ctx.report(ef, "EnvoyFilterUsesReplaceOperationIncorrectly", field=f"{field}.applyTo")
        else:
            _relative(ctx, ef, index, name, versioned)
    elif operation in _INSERTS or (operation == "MERGE" and apply_to in _ORDERED_MERGE_TARGETS):
        _relative(ctx, ef, index, name, versioned)


@analyzer(
    "envoyfilter.EnvoyPatchAnalyzer",
    "Checks an envoyFilters",
    "EnvoyFilterUsesRelativeOperation",
    "EnvoyFilterUsesRelativeOperationWithProxyVersion",
    "EnvoyFilterUsesReplaceOperationIncorrectly",
    "EnvoyFilterUsesAddOperationIncorrectly",
    "EnvoyFilterUsesRemoveOperationIncorrectly",
)
def envoy_patch_analyzer(ctx: AnalysisContext) -> None:
    # Names patched under a proxyVersion match, by any EnvoyFilter seen so far (Istio's order: by name).
    versioned: list[str] = []
    for ef in ctx.configs("EnvoyFilter"):
        for index, patch in enumerate(ef.spec.config_patches):
            if patch.patch is None:
                break
            _check_patch(ctx, ef, index, patch, versioned)
            if patch.match and patch.match.proxy and patch.match.proxy.proxy_version:
                versioned.append(_patched_name(patch))


ANALYZERS = (envoy_patch_analyzer,)
