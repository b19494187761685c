"""Sidecar checks: selectors that match nothing or overlap, and Sidecars with no effect.

sidecar.SelectorAnalyzer: a workload selector matches a pod in the Sidecar's
namespace (IST0101); one pod is selected by one Sidecar only (IST0110); one
namespace has at most one Sidecar without a selector (IST0111); a Sidecar
for ambient-mode pods or namespaces has no proxy to configure (IST0167).
"""

from __future__ import annotations

from malla.analysis import kube
from malla.analysis.context import AnalysisContext
from malla.analysis.registry import analyzer
from malla.analysis.workload_selectors import names, select
from malla.config.model import Config


def _sidecar_labels(sc: Config) -> dict[str, str]:
    return dict(sc.spec.workload_selector.labels) if sc.spec.workload_selector else {}


@analyzer(
    "sidecar.SelectorAnalyzer",
    "Validates that sidecars that define a workload selector match at least one pod, "
    "and that there aren't multiple sidecar resources that select overlapping pods",
    "ReferencedResourceNotFound",
    "ConflictingSidecarWorkloadSelectors",
    "MultipleSidecarsWithoutWorkloadSelectors",
    "IneffectivePolicy",
)
def selector_analyzer(ctx: AnalysisContext) -> None:
    selection = select(ctx, "Sidecar", labels_of=_sidecar_labels)
    for sc, selector in selection.unselected:
        ctx.report(sc, "ReferencedResourceNotFound", "selector", selector, field="spec.workloadSelector")
    ineffective: set[str] = set()
    for (ns, pod_name), sidecars in sorted(selection.by_pod.items()):
        ambient = kube.pod_in_ambient(selection.pods[(ns, pod_name)])
        if len(sidecars) == 1 and not ambient:
            continue
        for sc in sidecars:
            if ambient:
                if sc.ref not in ineffective:
                    ineffective.add(sc.ref)
                    ctx.report(sc, "IneffectivePolicy", "selected workload is in ambient mode, the policy has no impact")
                continue
            ctx.report(sc, "ConflictingSidecarWorkloadSelectors", names(sidecars), ns, pod_name, field="metadata.name")
    for ns, sidecars in sorted(selection.namespace_wide.items()):
        if kube.namespace_in_ambient(ctx.namespace_labels(ns)):
            for sc in sidecars:
                if sc.ref not in ineffective:
                    ineffective.add(sc.ref)
                    ctx.report(sc, "IneffectivePolicy", "namespace is in ambient mode, the policy has no impact")
            continue
        if len(sidecars) > 1:
            for sc in sidecars:
                ctx.report(sc, "MultipleSidecarsWithoutWorkloadSelectors", names(sidecars), ns, field="metadata.name")


ANALYZERS = (selector_analyzer,)
