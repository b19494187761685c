"""Which DestinationRule applies to a service, and the policy it sets for one port and subset.

Lookup follows Istio's order: a rule in the proxy's own namespace (one whose
``workloadSelector`` picks the proxy first), then one exported from the
service's namespace, then one exported from the root namespace. Within a
namespace the most specific host wins (exact, then the longest wildcard);
rules with the same host there merge as Istio merges them: the first rule's
traffic policy, the union of subsets (first one of a name wins).

Policy merging is Istio's ``MergeTrafficPolicy``: top-level fields, replaced
by the subset's fields that are set; a ``portLevelSettings`` entry for the
port replaces load balancer, connection pool, outlier detection and TLS
wholesale (port-level settings do not inherit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from malla.config.model import Config
from malla.pilot.services import Service, labels_match

_POLICY_FIELDS = (
    "load_balancer",
    "connection_pool",
    "outlier_detection",
    "tls",
    "tunnel",
    "proxy_protocol",
    "retry_budget",
)
_PORT_FIELDS = ("load_balancer", "connection_pool", "outlier_detection", "tls")


@dataclass(frozen=True)
class EffectivePolicy:
    """The traffic policy that applies to one cluster (one port, maybe one subset)."""

    load_balancer: Any = None
    connection_pool: Any = None
    outlier_detection: Any = None
    tls: Any = None
    tunnel: Any = None
    proxy_protocol: Any = None
    retry_budget: Any = None


@dataclass(frozen=True)
class MergedRule:
    """The DestinationRules that apply to one host for one proxy, merged."""

    host: str
    namespace: str
    traffic_policy: Any
    subsets: tuple[Any, ...]
    sources: tuple[str, ...] = field(default=())

    def subset(self, name: str) -> Any | None:
        return next((s for s in self.subsets if s.name == name), None)

    def policy(self, *, port: int, subset: str | None = None) -> EffectivePolicy:
        base = merge_traffic_policy(EffectivePolicy(), self.traffic_policy, port=port)
        found = self.subset(subset) if subset else None
        if found is None or found.traffic_policy is None:
            return base
        return merge_traffic_policy(base, found.traffic_policy, port=port)


def merge_traffic_policy(base: EffectivePolicy, policy: Any, *, port: int) -> EffectivePolicy:
    if policy is None:
        return base
    values = {f: getattr(base, f) for f in _POLICY_FIELDS}
    for f in _POLICY_FIELDS:
        if getattr(policy, f, None) is not None:
            values[f] = getattr(policy, f)
    for pls in policy.port_level_settings:
        if pls.port is not None and pls.port.number == port:
            values.update({f: getattr(pls, f) for f in _PORT_FIELDS})
            break
    return EffectivePolicy(**values)


def resolve_host(host: str, *, namespace: str, domain: str) -> str:
    """Istio's short-name rule for config hosts: a name without a dot lives in the config's namespace."""
    if host == "*" or "." in host:
        return host
    return f"{host}.{namespace}.svc.{domain}"


def host_matches(pattern: str, hostname: str) -> bool:
    """``*.example.com`` covers ``a.example.com`` and ``a.b.example.com``; ``*`` covers all."""
    if pattern == hostname or pattern == "*":
        return True
    if pattern.startswith("*."):
        return hostname.endswith(pattern[1:]) or (hostname.startswith("*.") and hostname.endswith(pattern[1:]))
    return False


def exported_to(config: Config, namespace: str, *, default: tuple[str, ...]) -> bool:
    export = config.spec.export_to or list(default)
    if "*" in export:
        return True
    if "~" in export:
        return False
    return namespace in export or (namespace == config.namespace and "." in export)


def destination_rule_for(
    rules: tuple[Config, ...],
    service: Service,
    *,
    proxy_namespace: str,
    proxy_labels: dict[str, str] | Any,
    root_namespace: str,
    domain: str,
    default_export: tuple[str, ...] = ("*",),
) -> MergedRule | None:
    """The DestinationRule(s) a proxy in ``proxy_namespace`` applies to ``service``."""
    own = [r for r in rules if r.namespace == proxy_namespace]
    selected = [r for r in own if _selects(r, proxy_labels)]
    plain = [r for r in own if r.spec.workload_selector is None]
    steps = [selected, plain]
    for ns in (service.namespace, root_namespace):
        if ns != proxy_namespace:
            steps.append(
                [
                    r
                    for r in rules
                    if r.namespace == ns
                    and r.spec.workload_selector is None
                    and exported_to(r, proxy_namespace, default=default_export)
                ]
            )
    for candidates in steps:
        found = _best_match(candidates, service.hostname, domain=domain)
        if found:
            return _merge(found, service.hostname)
    return None


def _selects(rule: Config, labels: Any) -> bool:
    sel = rule.spec.workload_selector
    return sel is not None and bool(sel.match_labels) and labels_match(sel.match_labels, labels)


def _best_match(candidates: list[Config], hostname: str, *, domain: str) -> list[Config]:
    scored: dict[str, list[Config]] = {}
    for r in candidates:
        host = resolve_host(r.spec.host or "", namespace=r.namespace, domain=domain)
        if host_matches(host, hostname):
            scored.setdefault(host, []).append(r)
    if not scored:
        return []
    best = max(scored, key=lambda h: (h == hostname, len(h)))
    return scored[best]


def _merge(rules: list[Config], hostname: str) -> MergedRule:
    policy = next((r.spec.traffic_policy for r in rules if r.spec.traffic_policy is not None), None)
    subsets: dict[str, Any] = {}
    for r in rules:
        for s in r.spec.subsets:
            subsets.setdefault(s.name, s)
    return MergedRule(
        host=hostname,
        namespace=rules[0].namespace,
        traffic_policy=policy,
        subsets=tuple(subsets.values()),
        sources=tuple(r.ref for r in rules),
    )
