"""Policies that select a Kubernetes Gateway's pods by label, which Istio ignores (IST0166).

A Kubernetes Gateway's deployment is managed for it; policies reach it
through ``targetRef``, and a ``selector`` on the generated pods' labels has
no effect.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from malla.analysis import kube
from malla.analysis.context import AnalysisContext
from malla.analysis.registry import analyzer

GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
_POLICY_KINDS = ("AuthorizationPolicy", "RequestAuthentication", "Telemetry", "WasmPlugin")


@analyzer(
    "k8sgateway.SelectorAnalyzer",
    "Check that selectors are effective for Kubernetes gateway",
    "IneffectiveSelector",
)
def selector_analyzer(ctx: AnalysisContext) -> None:
    gateway_pods: dict[str, list[Mapping[str, str]]] = defaultdict(list)
    for pod in ctx.kube("Pod"):
        if GATEWAY_NAME_LABEL in pod.labels:
            gateway_pods[kube.namespace_of(pod) or ""].append(pod.labels)
    for kind in _POLICY_KINDS:
        for policy in ctx.configs(kind):
            spec = policy.spec
            if spec.target_ref or spec.target_refs or spec.selector is None:
                continue
            for labels in gateway_pods.get(policy.namespace, []):
                if kube.labels_match(spec.selector.match_labels, labels):
                    ctx.report(policy, "IneffectiveSelector", labels[GATEWAY_NAME_LABEL], field="spec.selector")


ANALYZERS = (selector_analyzer,)
