"""Semantic rules of PeerAuthentication, as Istio's validation webhook applies them.

Port-level mTLS needs a workload selector (a workload port means nothing
for a whole namespace) and, when written, at least one port; port keys are
workload ports 1..65535, and the selector's labels are exact. A selector on a policy in the root namespace
selects workloads in every namespace, which is easy to miss: a warning.
"""

from __future__ import annotations

from collections.abc import Iterable

from malla.api.security.peer_authentication import PeerAuthentication
from malla.config.validation import Finding, Findings, ValidationContext
from malla.config.validation.common_ports import check_port
from malla.config.validation.common_selectors import check_workload_selector


def validate(spec: PeerAuthentication, ctx: ValidationContext) -> Iterable[Finding]:
    findings = Findings()
    check_workload_selector(findings, spec.selector, path="spec.selector")
    has_labels = spec.selector is not None and bool(spec.selector.match_labels)
    if spec.port_level_mtls and not has_labels:
        findings.error(
            "spec.portLevelMtls",
            "portLevelMtls requires a selector with matchLabels: a mesh or namespace wide peer authentication "
            "cannot have port level mTLS; select the workloads whose ports these are",
        )
    if "port_level_mtls" in spec.model_fields_set and not spec.port_level_mtls:
        findings.error("spec.portLevelMtls", "portLevelMtls, if written, must have at least one port; remove it or add a port")
    for port in spec.port_level_mtls:
        problem = check_port(port, "portLevelMtls port")
        if problem:
            findings.error(f"spec.portLevelMtls[{port}]", f"{problem} (a port of the workload, not of its Service)")
    if has_labels and ctx.namespace == ctx.root_namespace:
        findings.warning(
            "spec.selector",
            f"this PeerAuthentication is in the root namespace {ctx.root_namespace}, so its selector matches workloads "
            "in every namespace; put it in the workloads' namespace to limit it there, or remove the selector "
            "to make it the mesh-wide default",
        )
    return findings
