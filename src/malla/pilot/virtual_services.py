"""VirtualService plumbing shared by sidecar and gateway routes.

Which VirtualService governs a host (exact host before wildcard, then the
first by namespace and name), delegation (a root route's ``delegate``
replaced by the delegate's routes, each match the conjunction of root and
delegate match; a pair that contradicts itself is dropped, as Istio drops
conflicting delegate routes), and destinations: a ``Destination`` becomes
``outbound|PORT|SUBSET|HOST`` with the port taken from the destination, else
the service's only port, else the port being routed; its DestinationRule
gives the hash policy routes to it carry.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from envoy.config.route.v3 import route_components_pb2 as rc

from malla.config.model import Config
from malla.pilot import names
from malla.pilot.destination_rules import host_matches, resolve_host
from malla.pilot.snapshot import MeshSnapshot, Proxy
from malla.pilot.traffic_policy import translate_hash_policy


def vs_hosts(vs: Config, *, domain: str) -> list[str]:
    return [resolve_host(h, namespace=vs.namespace, domain=domain) for h in vs.spec.hosts]


def virtual_service_for(hostname: str, candidates: Iterable[Config], *, domain: str) -> Config | None:
    """The VirtualService whose hosts name ``hostname`` (exact beats the longest wildcard)."""
    best: tuple[int, int] = (-1, -1)
    chosen: Config | None = None
    for vs in candidates:
        for host in vs_hosts(vs, domain=domain):
            score = (1 if host == hostname else 0, len(host))
            if host_matches(host, hostname) and score > best:
                best, chosen = score, vs
    return chosen


def expand_delegates(vs: Config, snapshot: MeshSnapshot) -> list[tuple[Any, Config]]:
    """The VirtualService's HTTP routes with every ``delegate`` replaced; each with the VS it came from."""
    out: list[tuple[Any, Config]] = []
    for http in vs.spec.http:
        if http.delegate is None:
            out.append((http, vs))
            continue
        target = snapshot.config("VirtualService", http.delegate.namespace or vs.namespace, http.delegate.name or "")
        if target is None or target.spec.hosts:
            continue  # a delegate must exist and have no hosts of its own
        for child in target.spec.http:
            if child.delegate is not None:
                continue  # Istio supports one level of delegation
            merged = merge_matches(http.match, child.match)
            if merged is None:
                continue
            out.append((child.model_copy(update={"match": merged}), target))
    return out


def merge_matches(root: list[Any], child: list[Any]) -> list[Any] | None:
    """Every root match AND every child match; None when no pair can be true together."""
    if not root:
        return list(child)
    if not child:
        return list(root)
    merged = [m for r in root for c in child if (m := _merge_match(r, c)) is not None]
    return merged or None


def _merge_match(root: Any, child: Any) -> Any | None:
    update: dict[str, Any] = {}
    if child.uri is not None:
        if root.uri is not None and not _uri_within(child.uri, root.uri):
            return None
        update["uri"] = child.uri
    for field in ("scheme", "method", "authority", "port", "source_namespace", "ignore_uri_case"):
        value = getattr(child, field)
        if value is not None:
            if getattr(root, field) not in (None, value):
                return None
            update[field] = value
    for field in ("headers", "query_params", "without_headers", "source_labels"):
        combined = dict(getattr(root, field))
        for key, value in getattr(child, field).items():
            if key in combined and combined[key] != value:
                return None
            combined[key] = value
        update[field] = combined
    return root.model_copy(update=update)


def _uri_within(child: Any, root: Any) -> bool:
    if root.prefix is not None:
        inner = child.prefix if child.prefix is not None else child.exact
        return inner is not None and inner.startswith(root.prefix)
    return child == root


class Destinations:
    """Destination -> cluster name and the hash policy its DestinationRule asks of routes, for one proxy."""

    def __init__(self, proxy: Proxy, snapshot: MeshSnapshot) -> None:
        self._proxy = proxy
        self._snapshot = snapshot
        self._hashes: dict[str, list[rc.RouteAction.HashPolicy]] = {}

    def cluster_for(self, destination: Any, *, namespace: str, port: int | None) -> str:
        mesh = self._snapshot.mesh
        host = resolve_host(destination.host or "", namespace=namespace, domain=mesh.domain)
        number = destination.port.number if destination.port is not None and destination.port.number else None
        if number is None:
            service = self._snapshot.registry.service(host, namespace=self._proxy.namespace)
            if service is not None and len(service.ports) == 1:
                number = service.ports[0].port
        return names.outbound_cluster_name(host, number or port or 0, destination.subset or "")

    def hash_policy_for(self, cluster: str) -> list[rc.RouteAction.HashPolicy]:
        if cluster not in self._hashes:
            self._hashes[cluster] = self._hash_policy(cluster)
        return self._hashes[cluster]

    def _hash_policy(self, cluster: str) -> list[rc.RouteAction.HashPolicy]:
        try:
            key = names.parse_cluster_name(cluster)
        except ValueError:
            return []
        service = self._snapshot.registry.service(key.host, namespace=self._proxy.namespace)
        if service is None:
            return []
        rule = self._snapshot.destination_rule(self._proxy, service)
        if rule is None:
            return []
        return translate_hash_policy(rule.policy(port=key.port, subset=key.subset or None).load_balancer)
