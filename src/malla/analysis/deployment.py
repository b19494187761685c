"""Workload checks: Services that disagree about a Deployment's ports, and the proxy's reserved UID.

IST0116: two Services select a Deployment's pods on one port with different
protocols. IST0137: two Services send one targetPort to different ports.
IST0144: an application container runs as UID 1337, which the sidecar's
traffic capture exempts, so its traffic would bypass the proxy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from malla.analysis import kube
from malla.analysis.context import AnalysisContext, full_name
from malla.analysis.registry import analyzer
from malla.analysis.service import is_istio_control_plane
from malla.config.model import KubeObject

PROXY_UID = 1337
_EXEMPT_CONTAINERS = frozenset({kube.PROXY_CONTAINER, "istio-operator"})


def _deployment_in_mesh(ctx: AnalysisContext, deployment: KubeObject) -> bool:
    ns = kube.namespace_of(deployment) or ""
    return kube.in_mesh(
        labels=kube.pod_template_labels(deployment),
        annotations=kube.pod_template_annotations(deployment),
        pod_containers=kube.containers(kube.pod_template_spec(deployment)),
        namespace_labels=ctx.namespace_labels(ns),
    )


def _selecting_services(ctx: AnalysisContext, deployment: KubeObject) -> list[KubeObject]:
    ns = kube.namespace_of(deployment)
    labels = kube.pod_template_labels(deployment)
    return [
        svc
        for svc in ctx.kube("Service")
        if kube.namespace_of(svc) == ns and kube.service_selector(svc) and kube.labels_match(kube.service_selector(svc), labels)
    ]


def _check_protocols(ctx: AnalysisContext, deployment: KubeObject, services: list[KubeObject]) -> None:
    by_port: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for svc in services:
        for port in kube.service_ports(svc):
            by_port[port.get("port", 0)][kube.port_protocol(port)].append(full_name(svc))
    for number in sorted(by_port, key=str):
        protocols = by_port[number]
        if len(protocols) > 1:
            names = [n for proto in sorted(protocols) for n in protocols[proto]]
            ctx.report(deployment, "DeploymentAssociatedToMultipleServices", deployment.name, number, names, field="metadata.name")


def _target_port_key(port: Mapping[str, Any]) -> str:
    text = kube.target_port_text(port)
    # An unset targetPort defaults to the port itself.
    return str(port.get("port", 0)) if text in ("0", "") else text


def _check_target_ports(ctx: AnalysisContext, deployment: KubeObject, services: list[KubeObject]) -> None:
    by_target: dict[str, dict[int, str]] = defaultdict(dict)
    for svc in services:
        for port in kube.service_ports(svc):
            by_target[_target_port_key(port)][port.get("port", 0)] = full_name(svc)
    for target in sorted(by_target):
        ports = by_target[target]
        if len(ports) > 1:
            numbers = sorted(ports, key=str)
            names = [ports[p] for p in numbers]
            ctx.report(deployment, "DeploymentConflictingPorts", deployment.name, names, target, numbers, field="metadata.name")


@analyzer(
    "deployment.MultiServiceAnalyzer",
    "Checks association between services and pods",
    "DeploymentAssociatedToMultipleServices",
    "DeploymentConflictingPorts",
)
def multi_service_analyzer(ctx: AnalysisContext) -> None:
    for deployment in ctx.kube("Deployment"):
        if not _deployment_in_mesh(ctx, deployment):
            continue
        services = _selecting_services(ctx, deployment)
        _check_protocols(ctx, deployment, services)
        _check_target_ports(ctx, deployment, services)


def _runs_as_proxy_uid(pod_spec: Mapping[str, Any]) -> str | None:
    """The field path of the first securityContext that runs an app as UID 1337, if any."""
    if kube.mapping(pod_spec.get("securityContext")).get("runAsUser") == PROXY_UID:
        return "securityContext.runAsUser"
    for i, container in enumerate(kube.containers(pod_spec)):
        if container.get("name") in _EXEMPT_CONTAINERS:
            continue
        if kube.mapping(container.get("securityContext")).get("runAsUser") == PROXY_UID:
            return f"containers[{i}].securityContext.runAsUser"
    return None


@analyzer("applicationUID.Analyzer", "Checks invalid application UID", "InvalidApplicationUID")
def application_uid_analyzer(ctx: AnalysisContext) -> None:
    for pod in ctx.kube("Pod"):
        if not is_istio_control_plane(pod.labels) and (where := _runs_as_proxy_uid(kube.spec(pod))):
            ctx.report(pod, "InvalidApplicationUID", field=f"spec.{where}")
    for deployment in ctx.kube("Deployment"):
        if is_istio_control_plane(deployment.labels):
            continue
        if where := _runs_as_proxy_uid(kube.pod_template_spec(deployment)):
            ctx.report(deployment, "InvalidApplicationUID", field=f"spec.template.spec.{where}")


ANALYZERS = (multi_service_analyzer, application_uid_analyzer)
