"""AuthorizationPolicy checks: policies that select no workload, source namespaces that do not exist.

auth.AuthorizationPoliciesAnalyzer: a policy with a selector matches an
in-mesh pod in its namespace (or anywhere, in the root namespace), a
namespace-wide policy has in-mesh pods to apply to (IST0127), and every
``namespaces``/``notNamespaces`` pattern matches a known namespace (IST0101).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from malla.analysis import kube
from malla.analysis.context import AnalysisContext
from malla.analysis.registry import analyzer
from malla.config.model import Config


def _mesh_pod_labels(ctx: AnalysisContext) -> dict[str, list[Mapping[str, str]]]:
    """Namespace -> labels of its pods that a proxy (sidecar or ambient) serves."""
    found: dict[str, list[Mapping[str, str]]] = defaultdict(list)
    for pod in ctx.kube("Pod"):
        ns = kube.namespace_of(pod) or ""
        in_mesh = kube.in_mesh(
            labels=pod.labels,
            annotations=kube.annotations(pod),
            pod_containers=kube.containers(kube.spec(pod), init=True),
            namespace_labels=ctx.namespace_labels(ns),
        )
        if in_mesh or kube.pod_in_ambient(pod):
            found[ns].append(pod.labels)
    return found


def _check_workloads(ctx: AnalysisContext, ap: Config, pods: dict[str, list[Mapping[str, str]]]) -> None:
    if ap.spec.target_ref or ap.spec.target_refs:
        return  # attached to a Gateway or Service, not to workloads by label
    selector = dict(ap.spec.selector.match_labels) if ap.spec.selector else None
    if ap.namespace == ctx.mesh.root_namespace:
        candidates = [labels for group in pods.values() for labels in group]
        if selector is not None and not any(kube.labels_match(selector, l) for l in candidates):
            ctx.report(ap, "NoMatchingWorkloadsFound", kube.selector_string(selector), field="spec.selector")
        return
    local = pods.get(ap.namespace, [])
    if selector is None:
        if not local:
            ctx.report(ap, "NoMatchingWorkloadsFound", "")
    elif not any(kube.labels_match(selector, l) for l in local):
        ctx.report(ap, "NoMatchingWorkloadsFound", kube.selector_string(selector), field="spec.selector")


def namespace_matches(namespace: str, pattern: str) -> bool:
    """AuthorizationPolicy namespace patterns: exact, ``*``, ``prefix*`` or ``*suffix``."""
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return namespace.endswith(pattern[1:])
    if pattern.endswith("*"):
        return namespace.startswith(pattern[:-1])
    return namespace.lower() == pattern.lower()


def _check_namespaces(ctx: AnalysisContext, ap: Config, known: set[str]) -> None:
    for i, rule in enumerate(ap.spec.rules):
        for j, rule_from in enumerate(rule.from_):
            source = rule_from.source
            if source is None:
                continue
            for key, patterns in (("namespaces", source.namespaces), ("notNamespaces", source.not_namespaces)):
                for k, pattern in enumerate(patterns):
                    if not any(namespace_matches(ns, pattern) for ns in known):
                        ctx.report(
                            ap, "ReferencedResourceNotFound", "namespace", pattern, field=f"spec.rules[{i}].from[{j}].source.{key}[{k}]"
                        )


@analyzer(
    "auth.AuthorizationPoliciesAnalyzer",
    "Checks the validity of authorization policies",
    "NoMatchingWorkloadsFound",
    "ReferencedResourceNotFound",
)
def authorization_policies_analyzer(ctx: AnalysisContext) -> None:
    pods = _mesh_pod_labels(ctx)
    # Namespaces exist by Namespace object or by having resources in them (malla needs no Namespace objects).
    known = ctx.namespaces()
    for ap in ctx.configs("AuthorizationPolicy"):
        _check_workloads(ctx, ap, pods)
        _check_namespaces(ctx, ap, known)


ANALYZERS = (authorization_policies_analyzer,)
