"""Config validations for the console: every resource with its validation and analysis messages.

Kiali's Istio Config list. In: the store's resources, the problems the
config source recorded per file (schema and webhook rules) and the
registered workloads. The analyzers (``malla.analysis``, istioctl's) run
over the resources with the registry shown to them as Kubernetes would
show it: each registered workload as a Pod and each service it forms as a
Service, so a VirtualService for ``reviews`` is not "host not found" in a
mesh where reviews runs. Out: the JSON behind ``/api/v1/validations``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from malla.analysis import analyze
from malla.config.model import Config, KubeObject
from malla.console.graph import registered_service

_RANK = {"error": 0, "warning": 1, "info": 2}


def registry_objects(workloads: Sequence[Mapping[str, Any]]) -> list[KubeObject]:
    """Pods and Services standing in for the registered workloads (one Service per ``app``/name)."""
    objects: list[KubeObject] = []
    services: dict[tuple[str, str], dict[str, int]] = {}
    for w in workloads:
        ns, name, labels = str(w["namespace"]), str(w["name"]), dict(w.get("labels") or {})
        containers = [{"name": name}] + ([{"name": "istio-proxy"}] if w.get("sidecar", True) else [])
        pod_name = f"{name}-{str(w['address']).replace(':', '-')}"
        body = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": ns, "labels": labels,
                         "annotations": {"sidecar.istio.io/status": "{}"} if w.get("sidecar", True) else {}},
            "spec": {"containers": containers, "serviceAccountName": w.get("serviceAccount") or "default"},
        }
        objects.append(KubeObject("v1", "Pod", pod_name, ns, body))
        ports = services.setdefault((ns, registered_service(w)), {})
        for port_name, number in (w.get("ports") or {}).items():
            ports.setdefault(str(port_name), int(number))
    for (ns, svc), ports in sorted(services.items()):
        body = {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": svc, "namespace": ns},
            "spec": {"selector": {"app": svc},
                     "ports": [{"name": n, "port": p, "targetPort": p, "protocol": "TCP"} for n, p in sorted(ports.items())]},
        }
        objects.append(KubeObject("v1", "Service", svc, ns, body))
    return objects


def _resource_json(c: Config) -> dict[str, Any]:
    origin = None
    if c.origin is not None:
        origin = f"{c.origin.path}:{c.origin.line}" if c.origin.line else c.origin.path
    return {"kind": c.kind, "apiVersion": c.api_version, "namespace": c.namespace, "name": c.name, "origin": origin,
            "ref": c.ref, "messages": []}


def build_validations(configs: Sequence[Config], problems: Mapping[str, list[dict[str, Any]]],
                      workloads: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    resources = {c.ref: _resource_json(c) for c in sorted(configs, key=lambda c: (c.kind, c.namespace, c.name))}
    unattached: list[dict[str, Any]] = []
    for path, found in sorted(problems.items()):
        for problem in found:
            item = {"source": "validation", **problem, "file": problem.get("file") or path}
            target = resources.get(str(problem.get("resource") or ""))
            (target["messages"] if target is not None else unattached).append(item)
    kube = registry_objects(workloads)
    ingress_registered = any((w.get("labels") or {}).get("istio") == "ingressgateway" for w in workloads)
    for d in analyze(list(configs), kube, default_ingress=not ingress_registered):
        item = {"source": "analysis", **d.to_json()}
        target = resources.get(d.resource or "")
        (target["messages"] if target is not None else unattached).append(item)
    items = list(resources.values())
    for r in items:
        r["messages"].sort(key=lambda m: (_RANK.get(m["level"], 3), m.get("code") or "", m["message"]))
        levels = {m["level"] for m in r["messages"]}
        r["status"] = "error" if "error" in levels else "warning" if "warning" in levels else "valid"
    counts = {s: sum(1 for r in items if r["status"] == s) for s in ("valid", "warning", "error")}
    return {"items": items, "otherProblems": unattached, "counts": counts}
