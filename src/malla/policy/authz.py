"""AuthorizationPolicy as Envoy's ``rbac`` filters, on the side that receives traffic.

Which policies apply to a proxy (Istio's ``ListAuthorizationPolicies``):
those of the root namespace (``MeshConfig.root_namespace``) and of the
proxy's own namespace that either select nothing (the whole namespace; the
root namespace's: the whole mesh), or whose ``selector.matchLabels`` are
all among the proxy's labels, or whose ``targetRef(s)`` name the Kubernetes
Gateway the proxy runs for (its ``gateway.networking.k8s.io/gateway-name``
label, same namespace). ``targetRefs`` to Services attach to waypoints in
Istio, which malla has none of, so they select nothing.

The filters, in the order Envoy runs them:

1. AUDIT: shadow rules only (stats ``istio_audit_*``, dynamic metadata
   ``shadow_effective_policy_id``); they never change what happens.
2. CUSTOM: malla's MeshConfig declares no extension providers, so an
   external authorizer can never be asked: the requests a CUSTOM policy
   would have sent for checking are denied (fail closed).
3. DENY: a request matching any rule is denied.
4. ALLOW: once any ALLOW policy applies, only requests matching one of
   their rules pass. An ALLOW policy without rules (``spec: {}``) allows
   nothing; ``rules: [{}]`` allows everything.

A policy annotated ``istio.io/dry-run: "true"`` (ALLOW or DENY) goes into
its filter's shadow rules instead. HTTP denials answer 403 ``RBAC: access
denied``; TCP denials close the connection.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2

from malla.api.security.authorization_policy import AuthorizationPolicy
from malla.config.model import Config
from malla.config.validation import DRY_RUN_ANNOTATION
from malla.pilot.proto_values import typed
from malla.pilot.snapshot import MeshSnapshot, Proxy
from malla.policy.attachment import attached_policies
from malla.policy.authz_rules import RuleScope, translate_rule

KIND = "AuthorizationPolicy"
HTTP_RBAC_FILTER = "envoy.filters.http.rbac"
NETWORK_RBAC_FILTER = "envoy.filters.network.rbac"
TCP_STAT_PREFIX = "tcp."
# Enforced actions in evaluation order; AUDIT is shadow only and runs first so it sees every request.
_ENFORCED = ("CUSTOM", "DENY", "ALLOW")
_SHADOW_PREFIX = {"AUDIT": "istio_audit_", "DENY": "istio_dry_run_deny_", "ALLOW": "istio_dry_run_allow_"}
_ENVOY_ACTION = {"ALLOW": rbac_pb2.RBAC.ALLOW, "DENY": rbac_pb2.RBAC.DENY, "CUSTOM": rbac_pb2.RBAC.DENY,
                 "AUDIT": rbac_pb2.RBAC.DENY}


@dataclass(frozen=True)
class Stage:
    """The RBAC rules of one action on one chain: enforced ``rules`` and/or ``shadow`` (None: absent)."""

    action: str
    rules: rbac_pb2.RBAC | None
    shadow: rbac_pb2.RBAC | None


def applicable_policies(proxy: Proxy, snapshot: MeshSnapshot) -> tuple[Config, ...]:
    """The AuthorizationPolicies that apply to ``proxy`` (``malla.policy.attachment``, Istio's order)."""
    return attached_policies(proxy, snapshot, kind=KIND)


def http_filters(proxy: Proxy, snapshot: MeshSnapshot, *, port: int) -> list[hcm_pb2.HttpFilter]:
    """The HTTP ``rbac`` filters for ``port`` of ``proxy`` (none while no AuthorizationPolicy applies)."""
    out = []
    for stage in build_stages(proxy, snapshot, port=port, for_tcp=False):
        config = http_rbac_pb2.RBAC()
        if stage.rules is not None:
            config.rules.CopyFrom(stage.rules)
        if stage.shadow is not None:
            config.shadow_rules.CopyFrom(stage.shadow)
            config.shadow_rules_stat_prefix = _SHADOW_PREFIX[stage.action]
        out.append(hcm_pb2.HttpFilter(name=HTTP_RBAC_FILTER, typed_config=typed(config)))
    return out


def network_filters(proxy: Proxy, snapshot: MeshSnapshot, *, port: int) -> list[lc.Filter]:
    """The network ``rbac`` filters for a TCP ``port`` of ``proxy``: a denied connection is closed."""
    out = []
    for stage in build_stages(proxy, snapshot, port=port, for_tcp=True):
        config = network_rbac_pb2.RBAC(stat_prefix=TCP_STAT_PREFIX)
        if stage.rules is not None:
            config.rules.CopyFrom(stage.rules)
        if stage.shadow is not None:
            config.shadow_rules.CopyFrom(stage.shadow)
            config.shadow_rules_stat_prefix = _SHADOW_PREFIX[stage.action]
        out.append(lc.Filter(name=NETWORK_RBAC_FILTER, typed_config=typed(config)))
    return out


def build_stages(proxy: Proxy, snapshot: MeshSnapshot, *, port: int, for_tcp: bool) -> list[Stage]:
    """The RBAC stages for one chain, in evaluation order (empty when no policy applies)."""
    policies = applicable_policies(proxy, snapshot)
    if not policies:
        return []
    local_ports = _local_ports(proxy, port)
    enforced: dict[str, dict[str, rbac_pb2.Policy]] = {}
    shadow: dict[str, dict[str, rbac_pb2.Policy]] = {}
    for config in policies:
        spec: AuthorizationPolicy = config.spec
        action = spec.action or "ALLOW"
        into = shadow if action == "AUDIT" or _dry_run(config, action) else enforced
        bucket = into.setdefault(action, {})
        scope = RuleScope(action=action, namespace=config.namespace, for_tcp=for_tcp, local_ports=local_ports)
        bucket.update(_translate_policy(config, scope=scope))
    stages = []
    for action in ("AUDIT", *_ENFORCED):
        if action not in enforced and action not in shadow:
            continue
        stages.append(Stage(action=action, rules=_rbac(action, enforced.get(action)), shadow=_rbac(action, shadow.get(action))))
    return stages


def _translate_policy(config: Config, *, scope: RuleScope) -> Iterable[tuple[str, rbac_pb2.Policy]]:
    for index, rule in enumerate(config.spec.rules):
        policy = translate_rule(rule, scope=scope)
        if policy is not None:
            yield f"ns[{config.namespace}]-policy[{config.name}]-rule[{index}]", policy


def _rbac(action: str, policies: dict[str, rbac_pb2.Policy] | None) -> rbac_pb2.RBAC | None:
    if policies is None:
        return None
    # An ALLOW with no policies denies everything: what an ALLOW policy with no (usable) rules means.
    return rbac_pb2.RBAC(action=_ENVOY_ACTION[action], policies=dict(sorted(policies.items())))


def _dry_run(config: Config, action: str) -> bool:
    if action not in ("ALLOW", "DENY"):
        return False
    # Istio reads the value with Go's ParseBool.
    return config.annotations.get(DRY_RUN_ANNOTATION, "") in ("1", "t", "T", "TRUE", "true", "True")


def _local_ports(proxy: Proxy, port: int) -> frozenset[int]:
    """The chain's port and, for a sidecar's inbound port, the app port behind it (what users write)."""
    ports = {port}
    ports.update(p.app_port for p in proxy.inbound if p.port == port)
    return frozenset(ports)
