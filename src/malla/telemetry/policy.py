"""Which Telemetry resources apply to a proxy, least specific first (pure).

Istio's rules (``pilot/pkg/model/telemetry.go``, ``applicableTelemetries``):

* mesh level: the root namespace's (``MeshConfig.root_namespace``) Telemetry
  without a selector or target reference;
* namespace level: the proxy's namespace's one without a selector or target
  reference (skipped when the proxy lives in the root namespace, whose
  mesh-level one already counted);
* workload level: the first Telemetry in the proxy's namespace whose
  ``selector.matchLabels`` are all among the proxy's labels, or whose
  ``targetRef(s)`` name the Kubernetes Gateway (``gateway.networking.k8s.io``)
  the proxy was deployed for (its ``gateway.networking.k8s.io/gateway-name``
  label). A selector in the root namespace therefore picks only workloads of
  the root namespace, as in Istio. ``targetRefs`` to a Service or
  ServiceEntry attach to waypoints in Istio, never to sidecars or gateways,
  so they select nothing here.

At each level more than one candidate is a conflict Istio settles by age:
the oldest ``metadata.creationTimestamp`` wins, then the name. Resources
without a timestamp (files) count as the oldest, so among them the name
decides. The caller merges the specs in the returned order, later ones
overriding earlier ones field by field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from malla.api.telemetry.telemetry import Telemetry
from malla.config.model import Config
from malla.pilot.services import labels_match
from malla.pilot.snapshot import MeshSnapshot, Proxy

KIND = "Telemetry"
GATEWAY_API_GROUP = "gateway.networking.k8s.io"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
_ZERO_TIME = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class AppliedTelemetry:
    """One Telemetry resource in a proxy's chain: its identity and spec."""

    name: str
    namespace: str
    spec: Telemetry

    @property
    def ref(self) -> str:
        return f"{KIND} {self.namespace}/{self.name}"


def applicable_telemetries(proxy: Proxy, snapshot: MeshSnapshot) -> tuple[AppliedTelemetry, ...]:
    """The Telemetry resources for ``proxy``: mesh, namespace, workload level (each optional), in that order."""
    root = snapshot.mesh.root_namespace
    chain: list[Config] = []
    mesh_wide = _namespace_wide(_by_age(snapshot.configs_of(KIND, root)))
    if mesh_wide is not None:
        chain.append(mesh_wide)
    own = _by_age(snapshot.configs_of(KIND, proxy.namespace))
    if proxy.namespace != root:
        namespace_wide = _namespace_wide(own)
        if namespace_wide is not None:
            chain.append(namespace_wide)
    workload = next((c for c in own if _selects(c.spec, proxy)), None)
    if workload is not None:
        chain.append(workload)
    return tuple(AppliedTelemetry(name=c.name, namespace=c.namespace, spec=c.spec) for c in chain)


def is_namespace_wide(spec: Telemetry) -> bool:
    """No selector labels and no target reference: the resource covers its whole namespace."""
    has_selector = spec.selector is not None and bool(spec.selector.match_labels)
    return not has_selector and spec.target_ref is None and not spec.target_refs


def _namespace_wide(configs: list[Config]) -> Config | None:
    return next((c for c in configs if is_namespace_wide(c.spec)), None)


def _selects(spec: Telemetry, proxy: Proxy) -> bool:
    if is_namespace_wide(spec):
        return False
    refs = [spec.target_ref] if spec.target_ref is not None else list(spec.target_refs)
    if refs:
        gateway = proxy.labels.get(GATEWAY_NAME_LABEL)
        return gateway is not None and any(
            (ref.group or "") == GATEWAY_API_GROUP and ref.kind == "Gateway" and ref.name == gateway
            and (ref.namespace or proxy.namespace) == proxy.namespace
            for ref in refs
        )
    return spec.selector is not None and labels_match(spec.selector.match_labels, proxy.labels)


def _by_age(configs: tuple[Config, ...]) -> list[Config]:
    return sorted(configs, key=lambda c: (_created(c.raw), c.name))


def _created(raw: Mapping[str, Any]) -> datetime:
    """``metadata.creationTimestamp`` as an aware datetime; absent or unreadable: the zero time (oldest)."""
    value = (raw.get("metadata") or {}).get("creationTimestamp") if isinstance(raw, Mapping) else None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return _ZERO_TIME
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return _ZERO_TIME
