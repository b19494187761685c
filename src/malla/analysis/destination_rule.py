"""DestinationRule checks: unverified upstream TLS, unknown hosts, subsets that select no pod.

- destinationrule.CaCertificateAnalyzer: SIMPLE or MUTUAL origination without
  ``caCertificates`` does not verify the server (IST0128 at the destination,
  IST0129 per port), unless a ``credentialName`` on a selected workload
  supplies the CA.
- destinationrule.SubsetSelectPodAnalyzer: the host is a known Service or
  ServiceEntry host (IST0174) and every subset's labels select some pod
  (IST0173), counting the node topology labels Istio adds to endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping

from malla.analysis import kube
from malla.analysis.context import AnalysisContext
from malla.analysis.host_index import HostIndex
from malla.analysis.registry import analyzer
from malla.api.networking.destination_rule import ClientTLSSettings
from malla.config.model import Config, KubeObject

_VERIFYING_MODES = ("SIMPLE", "MUTUAL")
# Node labels Istio copies onto endpoints (locality), plus the node name as kubernetes.io/hostname.
_TOPOLOGY_LABELS = ("topology.kubernetes.io/region", "topology.kubernetes.io/zone", "topology.istio.io/subzone")
_HOSTNAME_LABEL = "kubernetes.io/hostname"


def _unverified(tls: ClientTLSSettings | None, dr: Config) -> bool:
    if tls is None or tls.mode not in _VERIFYING_MODES or tls.ca_certificates:
        return False
    # A credentialName Secret carries its own CA, but only sidecars selected by workloadSelector read it.
    return not (tls.credential_name and dr.spec.workload_selector is not None)


@analyzer(
    "destinationrule.CaCertificateAnalyzer",
    "Checks if caCertificates is set when TLS mode is SIMPLE/MUTUAL",
    "NoServerCertificateVerificationDestinationLevel",
    "NoServerCertificateVerificationPortLevel",
)
def ca_certificate_analyzer(ctx: AnalysisContext) -> None:
    for dr in ctx.configs("DestinationRule"):
        policy = dr.spec.traffic_policy
        if policy is None:
            continue
        name, host = f"{dr.namespace}/{dr.name}", dr.spec.host or ""
        if _unverified(policy.tls, dr):
            mode = policy.tls.mode if policy.tls else ""
            ctx.report(dr, "NoServerCertificateVerificationDestinationLevel", name, dr.namespace, mode, host, field="spec.trafficPolicy.tls")
        for i, pls in enumerate(policy.port_level_settings):
            if _unverified(pls.tls, dr):
                port = f"number:{pls.port.number}" if pls.port and pls.port.number else ""
                mode = pls.tls.mode if pls.tls else ""
                ctx.report(
                    dr,
                    "NoServerCertificateVerificationPortLevel",
                    name,
                    dr.namespace,
                    mode,
                    host,
                    port,
                    field=f"spec.trafficPolicy.portLevelSettings[{i}].tls",
                )


def _endpoint_labels(pod: KubeObject, nodes: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """A pod's labels as its endpoint carries them: plus its node's non-empty locality labels."""
    labels = dict(pod.labels)
    node_name = kube.spec(pod).get("nodeName")
    if not node_name or node_name not in nodes:
        return labels
    node_labels = nodes[node_name]
    labels.update({k: node_labels[k] for k in _TOPOLOGY_LABELS if node_labels.get(k)})
    labels[_HOSTNAME_LABEL] = node_name
    return labels


@analyzer(
    "destinationrule.SubsetSelectPodAnalyzer",
    "Checks if pods are selected by subsets in destination rules.",
    "UnknownDestinationRuleHost",
    "DestinationRuleSubsetNotSelectPods",
)
def subset_select_pod_analyzer(ctx: AnalysisContext) -> None:
    index = HostIndex(ctx)
    nodes = {n.name: n.labels for n in ctx.kube("Node")}
    endpoints = [_endpoint_labels(pod, nodes) for pod in ctx.kube("Pod")]
    for dr in ctx.configs("DestinationRule"):
        host = dr.spec.host or ""
        entry = index.lookup(host, namespace=dr.namespace, export_to=dr.spec.export_to)
        if entry is None:
            ctx.report(dr, "UnknownDestinationRuleHost", host, field="spec.host")
            continue
        for i, subset in enumerate(dr.spec.subsets):
            selector = {**entry.workload_selector, **subset.labels}
            if not any(kube.labels_match(selector, labels) for labels in endpoints):
                ctx.report(dr, "DestinationRuleSubsetNotSelectPods", subset.name or "", field=f"spec.subsets[{i}]")


ANALYZERS = (ca_certificate_analyzer, subset_select_pod_analyzer)
