"""Which security policies attach to a proxy, as Istio decides it (pure).

Istio's ``getConfigsForWorkload`` with ``WorkloadPolicyMatcher.ShouldAttachPolicy``
(``pilot/pkg/model/authentication.go``, ``policyattachment.go``): every
policy of the proxy's namespace and of the root namespace
(``MeshConfig.root_namespace``) that

* has ``targetRef(s)``: only when one names the Kubernetes Gateway
  (``gateway.networking.k8s.io``, kind ``Gateway``) the proxy was deployed
  for (its ``gateway.networking.k8s.io/gateway-name`` label) in the proxy's
  namespace; references to Services or ServiceEntries attach to waypoints,
  which malla does not run, so they select nothing here;
* else has no selector labels: the whole namespace (the mesh, from the root
  namespace);
* else whose ``selector.matchLabels`` are all among the proxy's labels; a
  selector in the root namespace picks matching workloads of every
  namespace, as Istio's lookup does for RequestAuthentication and
  AuthorizationPolicy.

They come back in Istio's order: the proxy's namespace first, then the root
namespace, each oldest first (``metadata.creationTimestamp``; resources
without one, such as files, count as oldest), then by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from malla.config.model import Config
from malla.pilot.services import labels_match
from malla.pilot.snapshot import MeshSnapshot, Proxy

GATEWAY_API_GROUP = "gateway.networking.k8s.io"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
_OLDEST = datetime.min.replace(tzinfo=UTC)


def attached_policies(proxy: Proxy, snapshot: MeshSnapshot, *, kind: str) -> tuple[Config, ...]:
    """The ``kind`` resources (RequestAuthentication, AuthorizationPolicy) that apply to ``proxy``, in Istio's order."""
    namespaces = [proxy.namespace]
    if snapshot.mesh.root_namespace != proxy.namespace:
        namespaces.append(snapshot.mesh.root_namespace)
    out: list[Config] = []
    for namespace in namespaces:
        configs = sorted(snapshot.configs_of(kind, namespace), key=lambda c: (created_at(c.raw), c.name))
        out += [c for c in configs if attaches(c.spec, proxy, namespace=c.namespace)]
    return tuple(out)


def attaches(spec: Any, proxy: Proxy, *, namespace: str) -> bool:
    """Whether a policy of ``namespace`` with ``selector``/``targetRef``/``targetRefs`` picks ``proxy``."""
    refs = [spec.target_ref] if spec.target_ref is not None else list(spec.target_refs)
    if refs:
        gateway = proxy.labels.get(GATEWAY_NAME_LABEL)
        return gateway is not None and any(
            (ref.group or "") == GATEWAY_API_GROUP
            and ref.kind == "Gateway"
            and ref.name == gateway
            and (ref.namespace or namespace) == proxy.namespace
            for ref in refs
        )
    selector = spec.selector.match_labels if spec.selector is not None else {}
    return labels_match(selector, proxy.labels)


def created_at(raw: Mapping[str, Any]) -> datetime:
    """``metadata.creationTimestamp`` as an aware datetime; absent or unreadable: the oldest time."""
    value = (raw.get("metadata") or {}).get("creationTimestamp") if isinstance(raw, Mapping) else None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return _OLDEST
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return _OLDEST
