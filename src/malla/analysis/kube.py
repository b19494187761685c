"""Reading the Kubernetes objects found beside Istio config: namespaces, labels, selectors, ports.

Objects arrive as decoded dicts (``KubeObject.body``) and may be partial, as
Istio's analyzer inputs often are, so every read here tolerates missing
fields and values of the wrong shape. Map selectors follow Kubernetes: an
empty map selects everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from malla.config.model import DEFAULT_NAMESPACE, KubeObject

# Kinds that live outside namespaces; any other object without one is in "default".
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "APIService",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "GatewayClass",
        "IngressClass",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "StorageClass",
        "ValidatingWebhookConfiguration",
    }
)


def namespace_of(obj: KubeObject) -> str | None:
    """The object's namespace: its own, "default" when unset, None for cluster-scoped kinds."""
    if obj.kind in CLUSTER_SCOPED_KINDS:
        return None
    return obj.namespace or DEFAULT_NAMESPACE


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one (partial or malformed input)."""
    return value if isinstance(value, Mapping) else {}


def metadata(obj: KubeObject) -> Mapping[str, Any]:
    return mapping(obj.body.get("metadata"))


def annotations(obj: KubeObject) -> Mapping[str, str]:
    return mapping(metadata(obj).get("annotations"))


def spec(obj: KubeObject) -> Mapping[str, Any]:
    return mapping(obj.body.get("spec"))


def labels_match(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """A map selector (``matchLabels`` or a Service/Gateway selector): every pair present."""
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def selector_string(selector: Mapping[str, str] | None) -> str:
    """Kubernetes' rendering of a map selector: ``k1=v1,k2=v2`` in key order."""
    return ",".join(f"{k}={v}" for k, v in sorted((selector or {}).items()))


def _template_metadata(obj: KubeObject) -> Mapping[str, Any]:
    return mapping(mapping(spec(obj).get("template")).get("metadata"))


def pod_template_labels(obj: KubeObject) -> Mapping[str, str]:
    """Labels of the pods a Deployment (or other workload controller) creates."""
    return mapping(_template_metadata(obj).get("labels"))


def service_selector(obj: KubeObject) -> Mapping[str, str]:
    return mapping(spec(obj).get("selector"))


def service_ports(obj: KubeObject) -> list[Mapping[str, Any]]:
    ports = spec(obj).get("ports")
    return [p for p in ports if isinstance(p, Mapping)] if isinstance(ports, list) else []


def port_protocol(port: Mapping[str, Any]) -> str:
    """A Service port's L4 protocol; Kubernetes defaults it to TCP."""
    return str(port.get("protocol") or "TCP")


def pod_template_spec(obj: KubeObject) -> Mapping[str, Any]:
    return mapping(mapping(spec(obj).get("template")).get("spec"))


def pod_template_annotations(obj: KubeObject) -> Mapping[str, str]:
    return mapping(_template_metadata(obj).get("annotations"))


def containers(pod_spec: Mapping[str, Any], *, init: bool = False) -> list[Mapping[str, Any]]:
    keys = ("containers", "initContainers") if init else ("containers",)
    found = [c for key in keys if isinstance(pod_spec.get(key), list) for c in pod_spec[key]]
    return [c for c in found if isinstance(c, Mapping)]


SIDECAR_INJECT = "sidecar.istio.io/inject"
INJECTION_LABEL = "istio-injection"
PROXY_CONTAINER = "istio-proxy"


def in_mesh(
    *,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    pod_containers: list[Mapping[str, Any]],
    namespace_labels: Mapping[str, str] | None,
) -> bool:
    """Whether a pod has (or will get) a sidecar, decided in Istio's order.

    A proxy container with an image wins; then the ``sidecar.istio.io/inject``
    label, then the annotation of that name; then the namespace's
    ``istio-injection`` label when the Namespace object is known.
    """
    if any(c.get("name") == PROXY_CONTAINER and c.get("image") for c in pod_containers):
        return True
    for source in (labels, annotations):
        if SIDECAR_INJECT in source:
            return source[SIDECAR_INJECT] == "true"
    if namespace_labels is not None:
        return namespace_labels.get(INJECTION_LABEL) == "enabled"
    return False


AMBIENT_REDIRECTION = "ambient.istio.io/redirection"
DATAPLANE_MODE = "istio.io/dataplane-mode"
REVISION_LABEL = "istio.io/rev"


def pod_in_ambient(pod: KubeObject) -> bool:
    """The ambient CNI redirects this pod's traffic (no sidecar)."""
    return annotations(pod).get(AMBIENT_REDIRECTION) == "enabled"


def namespace_in_ambient(labels: Mapping[str, str] | None) -> bool:
    """A namespace labelled for ambient mode and not also for sidecar injection."""
    if not labels or labels.get(INJECTION_LABEL) == "enabled" or labels.get(REVISION_LABEL):
        return False
    return labels.get(DATAPLANE_MODE) == "ambient"


def target_port_number(port: Mapping[str, Any]) -> int:
    """Go's IntOrString.IntValue: the number, a numeric string's value, else 0."""
    value = port.get("targetPort")
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        return 0


def target_port_text(port: Mapping[str, Any]) -> str:
    """The targetPort as text, as Istio prints it (IntOrString.String)."""
    value = port.get("targetPort")
    if value is None:
        return "0"
    return str(value)
