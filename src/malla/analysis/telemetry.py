"""Telemetry checks: selectors, namespace-wide conflicts, empty access-log providers, Lightstep.

- telemetry.SelectorAnalyzer: a selector matches a pod in its namespace
  (IST0101); one pod has one selecting Telemetry (IST0159).
- telemetry.DefaultSelectorAnalyzer: at most one selector-less Telemetry per
  namespace (IST0160).
- telemetry.ProviderAnalyzer: with no default access-log provider in
  MeshConfig, an access-logging entry without providers does nothing (IST0157).
- telemetry.LightstepAnalyzer: tracing through a Lightstep provider, which
  Istio deprecated (IST0002).
"""

from __future__ import annotations

from malla.analysis.context import AnalysisContext
from malla.analysis.registry import analyzer
from malla.analysis.workload_selectors import names, select
from malla.config.model import Config


def _telemetry_labels(t: Config) -> dict[str, str]:
    return dict(t.spec.selector.match_labels) if t.spec.selector else {}


@analyzer(
    "telemetry.SelectorAnalyzer",
    "Validates that telemetries that define a selector match at least one pod, "
    "and that there aren't multiple telemetry resources that select overlapping pods",
    "ReferencedResourceNotFound",
    "ConflictingTelemetryWorkloadSelectors",
)
def selector_analyzer(ctx: AnalysisContext) -> None:
    selection = select(ctx, "Telemetry", labels_of=_telemetry_labels)
    for t, selector in selection.unselected:
        ctx.report(t, "ReferencedResourceNotFound", "selector", selector, field="spec.selector")
    for (ns, pod_name), telemetries in sorted(selection.by_pod.items()):
        if len(telemetries) > 1:
            for t in telemetries:
                ctx.report(t, "ConflictingTelemetryWorkloadSelectors", names(telemetries), ns, pod_name, field="metadata.name")


@analyzer(
    "telemetry.DefaultSelectorAnalyzer",
    "Validates that there aren't multiple telemetry resources that have no selector",
    "MultipleTelemetriesWithoutWorkloadSelectors",
)
def default_selector_analyzer(ctx: AnalysisContext) -> None:
    selection = select(ctx, "Telemetry", labels_of=_telemetry_labels)
    for ns, telemetries in sorted(selection.namespace_wide.items()):
        if len(telemetries) > 1:
            for t in telemetries:
                ctx.report(t, "MultipleTelemetriesWithoutWorkloadSelectors", names(telemetries), ns, field="metadata.name")


def _default_access_log_providers(ctx: AnalysisContext) -> bool:
    return bool(ctx.mesh.default_providers.get("accessLogging"))


@analyzer(
    "telemetry.ProviderAnalyzer",
    "Validates that providers in telemetry resource is valid",
    "InvalidTelemetryProvider",
)
def provider_analyzer(ctx: AnalysisContext) -> None:
    if _default_access_log_providers(ctx):
        return
    for t in ctx.configs("Telemetry"):
        for i, logging in enumerate(t.spec.access_logging):
            if not logging.disabled and not logging.providers:
                ctx.report(t, "InvalidTelemetryProvider", t.name, t.namespace, field=f"spec.accessLogging[{i}]")


@analyzer(
    "telemetry.LightstepAnalyzer",
    "Validates that lightstep provider is still used",
    "Deprecated",
)
def lightstep_analyzer(ctx: AnalysisContext) -> None:
    lightstep = {str(p.get("name")) for p in ctx.mesh.extension_providers if isinstance(p, dict) and "lightstep" in p}
    if not lightstep:
        return
    for t in ctx.configs("Telemetry"):
        for i, tracing in enumerate(t.spec.tracing):
            for j, provider in enumerate(tracing.providers):
                if provider.name in lightstep:
                    ctx.report(
                        t,
                        "Deprecated",
                        f"The Lightstep provider {provider.name} is deprecated, use the OpenTelemetry provider instead",
                        field=f"spec.tracing[{i}].providers[{j}]",
                    )


ANALYZERS = (selector_analyzer, default_selector_analyzer, provider_analyzer, lightstep_analyzer)
