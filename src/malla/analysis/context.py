"""What an analyzer sees and how it reports: the indexed resources, mesh settings, the report sink.

``AnalysisContext`` is built once per ``analyze`` call from the loaded
resources. It indexes Istio configs by kind and identity and Kubernetes
objects by kind, resolves the mesh-wide settings analyzers depend on
(root namespace, cluster domain, DNS auto-allocation, the default ingress
workload), and collects ``Diagnostic``s rendered from Istio's catalogue.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Union

from malla.analysis import kube
from malla.analysis.hosts import DEFAULT_CLUSTER_DOMAIN
from malla.analysis.messages import message_type
from malla.config.model import Config, Diagnostic, KubeObject

ROOT_NAMESPACE = "istio-system"

Resource = Union[Config, KubeObject]


@dataclass(frozen=True)
class MeshSettings:
    """The few MeshConfig fields analyzers read, with Istio's defaults.

    Built from a MeshConfig document (camelCase keys, as in Istio's ``mesh``
    ConfigMap entry): ``rootNamespace``, ``ingressService``,
    ``ingressControllerMode``, ``defaultConfig.proxyMetadata``,
    ``extensionProviders``, ``defaultProviders``.
    """

    root_namespace: str = ROOT_NAMESPACE
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN
    ingress_service: str = "istio-ingressgateway"
    ingress_controller_off: bool = False
    proxy_metadata: Mapping[str, str] = field(default_factory=dict)
    extension_providers: tuple[Mapping[str, Any], ...] = ()
    default_providers: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mesh_config(cls, doc: Mapping[str, Any] | None) -> MeshSettings:
        doc = doc or {}
        default_config = doc.get("defaultConfig") or {}
        return cls(
            root_namespace=doc.get("rootNamespace") or ROOT_NAMESPACE,
            ingress_service=doc.get("ingressService") or "istio-ingressgateway",
            ingress_controller_off=str(doc.get("ingressControllerMode", "")).upper() == "OFF",
            proxy_metadata={str(k): str(v) for k, v in (default_config.get("proxyMetadata") or {}).items()},
            extension_providers=tuple(doc.get("extensionProviders") or ()),
            default_providers=dict(doc.get("defaultProviders") or {}),
        )

    @property
    def dns_auto_allocate(self) -> bool:
        """Sidecars capture DNS and hand out addresses for ServiceEntry hosts that have none."""
        meta = self.proxy_metadata
        if meta.get("ISTIO_META_DNS_CAPTURE") != "true":
            return False
        return "true" in (meta.get("ISTIO_META_DNS_AUTO_ALLOCATE"), meta.get("PILOT_ENABLE_IP_AUTOALLOCATE"))


def default_ingress_objects(settings: MeshSettings) -> list[KubeObject]:
    """The stand-in ingress gateway Pod and Service istioctl adds when analyzing files.

    Without them every Gateway selecting ``istio: ingressgateway`` would be
    reported as selecting nothing, though a mesh always has that workload.
    """
    ns, name = settings.root_namespace, settings.ingress_service
    labels = {"istio": "ingressgateway"}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{name}-dummypod", "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "istio-proxy"}]},
    }
    ports = [("http2", 80), ("https", 443), ("tcp", 31400), ("tls", 15443)]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": labels,
            "ports": [{"name": n, "port": p, "protocol": "TCP", "targetPort": p} for n, p in ports],
        },
    }
    return [
        KubeObject("v1", "Pod", f"{name}-dummypod", ns, pod),
        KubeObject("v1", "Service", name, ns, service),
    ]


def namespace_of(resource: Resource) -> str | None:
    if isinstance(resource, Config):
        return resource.namespace
    return kube.namespace_of(resource)


def ref_of(resource: Resource) -> str:
    """Istio's friendly name of a resource: ``Kind namespace/name`` or ``Kind name``."""
    ns = namespace_of(resource)
    return f"{resource.kind} {ns}/{resource.name}" if ns else f"{resource.kind} {resource.name}"


def full_name(resource: Resource) -> str:
    """``namespace/name`` (or ``name`` when cluster-scoped), as messages print it."""
    ns = namespace_of(resource)
    return f"{ns}/{resource.name}" if ns else resource.name


class AnalysisContext:
    """Indexed inputs for one analysis run, and the diagnostics reported so far."""

    def __init__(
        self,
        configs: Iterable[Config],
        kube_objects: Iterable[KubeObject],
        *,
        mesh: MeshSettings,
        now: datetime | None = None,
    ) -> None:
        self.mesh = mesh
        self.now = now  # for certificate validity; None skips time-dependent checks
        self._configs: dict[str, list[Config]] = defaultdict(list)
        self._config_index: dict[tuple[str, str, str], Config] = {}
        for c in configs:
            self._configs[c.kind].append(c)
            self._config_index.setdefault((c.kind, c.namespace, c.name), c)
        for items in self._configs.values():
            items.sort(key=lambda c: (c.namespace, c.name))
        self._kube: dict[str, list[KubeObject]] = defaultdict(list)
        for obj in kube_objects:
            self._kube[obj.kind].append(obj)
        for objs in self._kube.values():
            objs.sort(key=lambda o: (kube.namespace_of(o) or "", o.name))
        self.diagnostics: list[Diagnostic] = []

    # --- reading ----------------------------------------------------------------

    def configs(self, kind: str) -> Sequence[Config]:
        """Istio resources of one kind, in (namespace, name) order."""
        return self._configs.get(kind, ())

    def find(self, kind: str, namespace: str, name: str) -> Config | None:
        return self._config_index.get((kind, namespace, name))

    def kube(self, kind: str) -> Sequence[KubeObject]:
        """Kubernetes objects of one kind, in (namespace, name) order."""
        return self._kube.get(kind, ())

    def find_kube(self, kind: str, namespace: str | None, name: str) -> KubeObject | None:
        for obj in self.kube(kind):
            if obj.name == name and kube.namespace_of(obj) == namespace:
                return obj
        return None

    def namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        """Labels of the Namespace object, or None when the inputs hold no such object."""
        ns = self.find_kube("Namespace", None, namespace)
        return ns.labels if ns else None

    def namespaces(self) -> set[str]:
        """Every namespace the inputs mention: Namespace objects and the namespaces of resources."""
        seen = {obj.name for obj in self.kube("Namespace")}
        seen.update(c.namespace for items in self._configs.values() for c in items)
        for objs in self._kube.values():
            seen.update(ns for o in objs if (ns := kube.namespace_of(o)))
        return seen

    # --- reporting --------------------------------------------------------------

    def report(self, resource: Resource, message: str, *args: Any, field: str | None = None) -> None:
        """Record one catalogue message (by Istio's name) about ``resource``."""
        mt = message_type(message)
        self.diagnostics.append(
            Diagnostic(
                level=mt.level,
                message=mt.render(*args),
                origin=resource.origin,
                resource=ref_of(resource),
                field=field,
                code=mt.code,
            )
        )
