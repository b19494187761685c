"""Shared logic for namespace-scoped resources that pick their workloads by label (Sidecar, Telemetry).

Only one such resource may apply to a pod: several selecting the same pod,
or several in one namespace without any selector, leave the choice
undefined. A selector that matches no pod in its namespace selects nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from malla.analysis import kube
from malla.analysis.context import AnalysisContext
from malla.config.model import Config, KubeObject


@dataclass(frozen=True)
class Selection:
    """Which pods each selecting resource picks, and which resources pick none at all."""

    by_pod: Mapping[tuple[str, str], list[Config]]  # (namespace, pod name) -> resources
    pods: Mapping[tuple[str, str], KubeObject]
    unselected: list[tuple[Config, str]]  # resource, its selector as text
    namespace_wide: Mapping[str, list[Config]]  # namespace -> resources without a selector


def select(ctx: AnalysisContext, kind: str, *, labels_of: Callable[[Config], Mapping[str, str]]) -> Selection:
    by_pod: dict[tuple[str, str], list[Config]] = defaultdict(list)
    pods: dict[tuple[str, str], KubeObject] = {}
    unselected: list[tuple[Config, str]] = []
    namespace_wide: dict[str, list[Config]] = defaultdict(list)
    for res in ctx.configs(kind):
        selector = labels_of(res)
        if not selector:
            namespace_wide[res.namespace].append(res)
            continue
        found = False
        for pod in ctx.kube("Pod"):
            if kube.namespace_of(pod) == res.namespace and kube.labels_match(selector, pod.labels):
                found = True
                key = (res.namespace, pod.name)
                by_pod[key].append(res)
                pods[key] = pod
        if not found:
            unselected.append((res, kube.selector_string(selector)))
    return Selection(by_pod, pods, unselected, namespace_wide)


def names(resources: list[Config]) -> list[str]:
    return sorted(r.name for r in resources)
