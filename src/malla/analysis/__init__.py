"""Config analysis: cross-resource checks behind ``malla analyze`` (Istio's Galley analyzers).

In: the loaded Istio resources (``Config``) and the Kubernetes objects found
beside them (``KubeObject``), optionally a MeshConfig document. Out: sorted
``Diagnostic``s carrying Istio's message codes, levels and texts (IST0101
"Referenced host not found: ..."), so ``malla analyze`` says what
``istioctl analyze`` says about the same files.

Theory of operation: ``analyze`` indexes the inputs once in an
``AnalysisContext`` (adding the stand-in ingress gateway workload istioctl adds
when it analyzes files), runs each selected analyzer over it, and each
analyzer reports catalogue messages against a resource. Analyzers are pure
functions of the context: no I/O, no clock. Each family lives in the module
named after the kind it checks (``virtual_service``, ``gateway``, ...); the
catalogue and Go-style message rendering live in ``messages``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from malla.analysis import (
    authorization,
    conditions,
    deployment,
    destination_rule,
    envoy_filter,
    gateway,
    k8s_gateway,
    service,
    service_entry,
    sidecar,
    telemetry,
    virtual_service,
    virtual_service_gateways,
    virtual_service_matches,
)
from malla.analysis.context import AnalysisContext, MeshSettings, default_ingress_objects
from malla.analysis.registry import Analyzer
from malla.config.model import Config, Diagnostic, KubeObject

__all__ = ["ANALYZERS", "Analyzer", "analyze"]

ANALYZERS: tuple[Analyzer, ...] = tuple(
    sorted(
        (
            *authorization.ANALYZERS,
            *conditions.ANALYZERS,
            *deployment.ANALYZERS,
            *destination_rule.ANALYZERS,
            *envoy_filter.ANALYZERS,
            *gateway.ANALYZERS,
            *k8s_gateway.ANALYZERS,
            *service.ANALYZERS,
            *service_entry.ANALYZERS,
            *sidecar.ANALYZERS,
            *telemetry.ANALYZERS,
            *virtual_service.ANALYZERS,
            *virtual_service_gateways.ANALYZERS,
            *virtual_service_matches.ANALYZERS,
        ),
        key=lambda a: a.name,
    )
)
BY_NAME: Mapping[str, Analyzer] = {a.name: a for a in ANALYZERS}

# Kubernetes' own namespaces: istioctl does not report on what lives there.
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "local-path-storage"})

_LEVEL_ORDER = {"error": 0, "warning": 1, "info": 2}


def analyze(
    configs: Sequence[Config],
    kube: Sequence[KubeObject],
    *,
    namespace: str | None = None,
    analyzers: Collection[str] | None = None,
    mesh_config: Mapping[str, Any] | None = None,
    default_ingress: bool = True,
    now: datetime | None = None,
) -> list[Diagnostic]:
    """Run the analyzers over the resources and return their findings, sorted and de-duplicated.

    ``namespace`` keeps only findings about resources in that namespace (and
    cluster-scoped ones). ``analyzers`` names the analyzers to run (see
    ``ANALYZERS``); unknown names raise ``ValueError`` listing the known ones.
    ``mesh_config`` is a MeshConfig document (camelCase keys).
    ``default_ingress`` adds the stand-in ``istio-ingressgateway`` Pod and
    Service in the root namespace, as ``istioctl analyze`` does for files,
    unless the MeshConfig turns the ingress controller off. ``now`` enables
    certificate expiry checks (the analysis never reads the clock itself).
    """
    selected = _select(analyzers)
    settings = MeshSettings.from_mesh_config(mesh_config)
    objects = list(kube)
    if default_ingress and not settings.ingress_controller_off:
        objects += default_ingress_objects(settings)
    ctx = AnalysisContext(configs, objects, mesh=settings, now=now)
    for a in selected:
        a.run(ctx)
    return _finish(ctx.diagnostics, namespace=namespace)


def _select(names: Collection[str] | None) -> tuple[Analyzer, ...]:
    if names is None:
        return ANALYZERS
    unknown = sorted(set(names) - set(BY_NAME))
    if unknown:
        known = ", ".join(BY_NAME)
        raise ValueError(f"unknown analyzer(s) {', '.join(unknown)}: known analyzers are {known}")
    return tuple(a for a in ANALYZERS if a.name in names)


def _namespace_of_ref(resource: str | None) -> str | None:
    """The namespace in 'Kind namespace/name', or None for a cluster-scoped 'Kind name'."""
    if not resource or "/" not in resource:
        return None
    return resource.split(" ", 1)[1].split("/", 1)[0]


def _finish(found: list[Diagnostic], *, namespace: str | None) -> list[Diagnostic]:
    kept: dict[tuple[Any, ...], Diagnostic] = {}
    for d in found:
        ns = _namespace_of_ref(d.resource)
        if ns in SYSTEM_NAMESPACES or (namespace is not None and ns is not None and ns != namespace):
            continue
        kept.setdefault((d.code, d.resource, d.field, d.message), d)
    return sorted(
        kept.values(),
        key=lambda d: (d.resource or "", _LEVEL_ORDER[d.level], d.code or "", d.field or "", d.message),
    )
