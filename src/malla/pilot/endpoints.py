"""Registry endpoints -> ClusterLoadAssignments (EDS, and the inline ones of DNS clusters).

Endpoints are grouped by locality, sorted, filtered by a subset's labels,
and carry the metadata Envoy and telemetry read: ``tlsMode`` for auto mTLS
(``envoy.transport_socket_match``) and the workload in ``istio``. Unhealthy
endpoints are left out (Istio's default); draining ones are sent as DRAINING.

Locality load balancing applies, as in Istio, only when the cluster has
outlier detection: ``distribute`` sets locality weights; otherwise
endpoints get priorities by how much of region/zone/subzone they share with
the proxy (``failover`` names the region to try after the proxy's own,
``failoverPriority`` ranks by matching labels first).
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from envoy.config.core.v3 import address_pb2, base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec
from envoy.config.endpoint.v3 import endpoint_pb2

from malla.pilot import names
from malla.pilot.cluster_tls import TLS_MODE_METADATA
from malla.pilot.peer_authentication import DISABLE, mtls_mode
from malla.pilot.proto_values import struct, uint32
from malla.pilot.services import Endpoint, Health, labels_match
from malla.pilot.snapshot import MeshSnapshot, Proxy

ClusterLoadAssignment = endpoint_pb2.ClusterLoadAssignment
_HEALTH = {Health.HEALTHY: health_check_pb2.HEALTHY, Health.DRAINING: health_check_pb2.DRAINING}


def build_endpoints(proxy: Proxy, snapshot: MeshSnapshot, cluster_names: Iterable[str]) -> list[ClusterLoadAssignment]:
    """The assignments for the named outbound EDS clusters that exist for this proxy, sorted by name."""
    out = []
    for name in sorted(set(cluster_names)):
        cla = build_cluster_load_assignment(proxy, snapshot, name)
        if cla is not None:
            out.append(cla)
    return out


def build_cluster_load_assignment(
    proxy: Proxy, snapshot: MeshSnapshot, cluster_name: str
) -> ClusterLoadAssignment | None:
    try:
        key = names.parse_cluster_name(cluster_name)
    except ValueError:
        return None
    if key.direction is not names.Direction.OUTBOUND:
        return None
    service = snapshot.registry.service(key.host, namespace=proxy.namespace)
    if service is None or service.port(key.port) is None:
        return None
    mesh = snapshot.mesh
    rule = snapshot.destination_rule(proxy, service)
    selector: dict[str, str] = {}
    if key.subset:
        subset = rule.subset(key.subset) if rule else None
        if subset is None:
            return None
        selector = dict(subset.labels)
    policy = rule.policy(port=key.port, subset=key.subset or None) if rule else None
    locality = locality_policy(policy, enabled_by_default=mesh.locality_lb_enabled)
    return assignment(
        cluster_name,
        select_endpoints(snapshot.registry.endpoints_of(service, key.port), selector, snapshot=snapshot),
        proxy=proxy,
        locality_lb=locality,
    )


def select_endpoints(
    endpoints: Iterable[Endpoint], selector: dict[str, str], *, snapshot: MeshSnapshot
) -> list[Endpoint]:
    """Healthy endpoints a subset selects; a sidecar whose PeerAuthentication says DISABLE gets plaintext."""
    out = []
    for e in endpoints:
        if not labels_match(selector, e.labels) or e.health is Health.UNHEALTHY:
            continue
        if e.tls_mode == "istio" and e.namespace:
            if mtls_mode(snapshot, namespace=e.namespace, labels=e.labels, port=e.port) == DISABLE:
                e = replace(e, tls_mode="disabled")
        out.append(e)
    return out


def locality_policy(policy: Any, *, enabled_by_default: bool) -> Any:
    """The locality settings in force for a cluster, or None (Istio needs outlier detection for them)."""
    if policy is None or policy.outlier_detection is None:
        return None
    lb = policy.load_balancer
    setting = lb.locality_lb_setting if lb is not None else None
    enabled = enabled_by_default if setting is None or setting.enabled is None else setting.enabled
    if not enabled:
        return None
    return setting if setting is not None else _DEFAULT_LOCALITY


@dataclass(frozen=True)
class _DefaultLocality:
    """Locality load balancing with nothing configured: plain region/zone/subzone failover."""

    distribute: tuple = ()
    failover: tuple = ()
    failover_priority: tuple = ()


_DEFAULT_LOCALITY = _DefaultLocality()


def assignment(
    cluster_name: str, endpoints: Iterable[Endpoint], *, proxy: Proxy, locality_lb: Any = None
) -> ClusterLoadAssignment:
    endpoints = list(endpoints)
    levels = [_priority(e, proxy, locality_lb) for e in endpoints]
    # Envoy wants priorities 0..N without gaps: keep the order, close the gaps.
    compact = {level: i for i, level in enumerate(sorted(set(levels)))}
    groups: dict[tuple[str, int], list[Endpoint]] = defaultdict(list)
    for e, level in zip(endpoints, levels, strict=True):
        groups[(e.locality, compact[level])].append(e)
    weights = _distribute_weights(locality_lb, proxy.locality, {loc for loc, _ in groups})
    cla = ClusterLoadAssignment(cluster_name=cluster_name)
    for (locality, priority), members in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if weights is not None and not weights.get(locality):
            continue
        group = cla.endpoints.add(priority=priority)
        region, zone, subzone = (locality.split("/") + ["", "", ""])[:3]
        if locality:
            group.locality.region, group.locality.zone, group.locality.sub_zone = region, zone, subzone
        group.lb_endpoints.extend(lb_endpoint(e) for e in sorted(members, key=lambda e: e.sort_key))
        if weights is not None:
            group.load_balancing_weight.CopyFrom(uint32(weights[locality]))
        elif locality_lb is None:
            group.load_balancing_weight.CopyFrom(uint32(sum(e.weight for e in members)))
    return cla


def lb_endpoint(e: Endpoint) -> ec.LbEndpoint:
    out = ec.LbEndpoint(health_status=_HEALTH.get(e.health, health_check_pb2.UNKNOWN))
    out.endpoint.address.CopyFrom(socket_address(e.address, e.port))
    if not _is_ip(e.address) and not e.address.startswith("unix://"):
        out.endpoint.hostname = e.address
    out.load_balancing_weight.value = max(1, e.weight)
    md = base_pb2.Metadata()
    md.filter_metadata[TLS_MODE_METADATA].CopyFrom(struct({"tlsMode": e.tls_mode}))
    if e.workload:
        md.filter_metadata["istio"].CopyFrom(struct({"workload": e.workload}))
    out.metadata.CopyFrom(md)
    return out


def socket_address(address: str, port: int) -> address_pb2.Address:
    if address.startswith("unix://"):
        return address_pb2.Address(pipe=address_pb2.Pipe(path=address.removeprefix("unix://")))
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=address, port_value=port))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _priority(e: Endpoint, proxy: Proxy, setting: Any) -> int:
    if setting is None or setting.distribute:
        return 0
    if setting.failover_priority:
        return _label_priority(e, proxy, setting.failover_priority)
    mine = (proxy.locality.split("/") + ["", "", ""])[:3]
    theirs = (e.locality.split("/") + ["", "", ""])[:3]
    if not proxy.locality:
        return 0
    shared = 0
    while shared < 3 and mine[shared] == theirs[shared]:
        shared += 1
    if shared == 0:
        targets = [f.to for f in setting.failover if f.from_ == mine[0]]
        return 3 if theirs[0] in targets else 4
    return 3 - shared


def _label_priority(e: Endpoint, proxy: Proxy, keys: Iterable[str]) -> int:
    keys = list(keys)
    for i, key in enumerate(keys):
        if e.labels.get(key) != proxy.labels.get(key):
            return len(keys) - i
    return 0


def _distribute_weights(setting: Any, proxy_locality: str, present: set[str]) -> dict[str, int] | None:
    """``distribute``: the first rule whose ``from`` covers the proxy's locality sets the weights."""
    if setting is None or not setting.distribute:
        return None
    for rule in setting.distribute:
        if _locality_matches(rule.from_ or "", proxy_locality):
            weights: dict[str, int] = {}
            for pattern, weight in rule.to.items():
                covered = [loc for loc in present if _locality_matches(pattern, loc)]
                for loc in covered:
                    weights[loc] = weights.get(loc, 0) + max(1, weight // max(1, len(covered)))
            return weights
    return None


def _locality_matches(pattern: str, locality: str) -> bool:
    """``us-east/*``, ``us-east/zone1/*`` and ``*`` patterns over region/zone/subzone."""
    if pattern in ("*", ""):
        return True
    want = pattern.split("/")
    have = (locality.split("/") + ["", "", ""])[:3]
    return all(w == "*" or w == h for w, h in zip(want, have, strict=False)) and (
        want[-1] == "*" or len(want) >= len(locality.split("/"))
    )
