"""Sharing generated config among proxies with equal inputs (Istio's per-SidecarScope caches).

At 1,000 services a sidecar's outbound clusters, endpoints and routes cost
~0.4 s of CPU to build; a hundred sidecars in one namespace would pay that a
hundred times for identical output. ``SharedGeneration`` remembers, for one
snapshot, what was built for a *class* of proxies: everything outbound
generation reads of a proxy, and nothing else (``outbound_key``). Proxies of
one class get the very same protobuf objects, which the xDS cache then also
serializes once.

What outbound generation reads of a proxy: its kind, namespace, capture
mode, outbound port, locality, the Sidecar resource that applies to it, and
its labels only where some config selects by workload labels
(DestinationRule ``workloadSelector``, VirtualService ``sourceLabels``,
locality ``failoverPriority``). A proxy's IP and inbound ports shape only its
listeners and inbound clusters, which stay per proxy.

``carry_over`` makes the memo of the next snapshot when only endpoints
changed: everything but the assignments of the changed hosts stays valid.
Values are pure functions of (snapshot, key), so a race between two threads
building the same key costs time, never correctness; ``dict.setdefault`` and
in-place set updates are atomic under CPython's GIL, so the memo needs no
lock (and pilot stays free of threading).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from google.protobuf.message import Message

from malla.config.model import Config
from malla.pilot import names
from malla.pilot.services import Endpoint, Resolution
from malla.pilot.snapshot import MeshSnapshot, Proxy

T = TypeVar("T")

_LABEL_KEYS = ("workloadSelector", "sourceLabels", "failoverPriority")


class SharedGeneration:
    """Memo of generated pieces for one snapshot, keyed by proxy class."""

    def __init__(self, snapshot: MeshSnapshot, *, labels_matter: bool | None = None) -> None:
        self.snapshot = snapshot
        self.labels_matter = _labels_matter(snapshot) if labels_matter is None else labels_matter
        self._memo: dict[tuple[Any, ...], Any] = {}
        self._held: set[int] = set()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...], build: Callable[[], T]) -> T:
        """The value remembered for ``key``, building it the first time."""
        try:
            value = self._memo[key]
        except KeyError:
            pass
        else:
            self.hits += 1
            return value  # type: ignore[no-any-return]
        self.misses += 1
        value = build()
        kept = self._memo.setdefault(key, value)
        if kept is value:
            self._held |= _message_ids(value)
        return kept  # type: ignore[no-any-return]

    def holds(self, message: Message) -> bool:
        """Whether ``message`` is one of the shared objects (alive as long as this memo)."""
        return id(message) in self._held

    @property
    def held(self) -> frozenset[int]:
        """The ids of the shared messages."""
        return frozenset(self._held)

    def outbound_key(self, proxy: Proxy) -> tuple[Any, ...]:
        """Everything outbound generation reads of ``proxy``: equal keys, equal outbound config."""
        sidecar = None if proxy.is_router else self.snapshot.sidecar_scope(proxy)
        return (
            proxy.kind,
            proxy.namespace,
            proxy.capture,
            proxy.locality,
            (sidecar.namespace, sidecar.name) if sidecar is not None else None,
            tuple(sorted(proxy.labels.items())) if self.labels_matter else None,
        )

    def endpoint_key(self, proxy: Proxy, cluster_name: str) -> tuple[Any, ...]:
        """What one assignment reads of a proxy: the service as its namespace sees it, its locality."""
        labels = tuple(sorted(proxy.labels.items())) if self.labels_matter else None
        return ("eds", cluster_name, proxy.namespace, proxy.locality, labels)

    def carry_over(self, snapshot: MeshSnapshot, *, changed_hosts: Iterable[str]) -> SharedGeneration:
        """The memo for ``snapshot``, which differs from this one's only in the endpoints of ``changed_hosts``."""
        changed = set(changed_hosts)
        nxt = SharedGeneration(snapshot, labels_matter=self.labels_matter)
        items = list(self._memo.items())
        nxt._memo = {k: v for k, v in items if not (k[0] == "eds" and names.host_of_cluster(k[1]) in changed)}
        for value in nxt._memo.values():
            nxt._held |= _message_ids(value)
        return nxt


def _message_ids(value: Any) -> set[int]:
    if isinstance(value, Message):
        return {id(value)}
    if isinstance(value, list | tuple):
        return {id(v) for v in value if isinstance(v, Message)}
    return set()


def endpoints_only_change(old: MeshSnapshot, new: MeshSnapshot) -> frozenset[str] | None:
    """The hosts whose endpoints alone changed from ``old`` to ``new``; None if anything else changed.

    Services (hosts, ports, resolution, export) must be equal, and every config
    but ServiceEntry and WorkloadEntry too, whose other effects all show in the
    services. A changed host resolved by DNS has its endpoints inlined in its
    cluster, so that is not an endpoint-only change either.
    """
    if old.mesh != new.mesh or old.registry.services != new.registry.services:
        return None
    if not _same(_other_configs(old), _other_configs(new)):
        return None
    keys = set(old.registry.endpoints) | set(new.registry.endpoints)
    changed = {k for k in keys if old.registry.endpoints.get(k) != new.registry.endpoints.get(k)}
    by_key = {s.key: s for s in new.registry.services}
    for key in changed:
        service = by_key.get(key)
        if service is not None and service.resolution is not Resolution.CLIENT_SIDE_LB:
            return None
        # Clusters verify the server against the service accounts of its endpoints (Istio's SANs).
        if _accounts(old.registry.endpoints.get(key)) != _accounts(new.registry.endpoints.get(key)):
            return None
    return frozenset(host for _ns, host in changed)


def changed_addresses(old: MeshSnapshot, new: MeshSnapshot, hosts: frozenset[str]) -> frozenset[str]:
    """Endpoint addresses of ``hosts`` that came or went: those proxies' own listeners may change."""
    out: set[str] = set()
    for snapshot in (old, new):
        for (_ns, host), by_port in snapshot.registry.endpoints.items():
            if host in hosts:
                out |= {e.address for endpoints in by_port.values() for e in endpoints}
    return frozenset(out)


def _accounts(by_port: Mapping[int, tuple[Endpoint, ...]] | None) -> dict[int, frozenset[str]]:
    return {port: frozenset(e.service_account for e in eps) for port, eps in (by_port or {}).items()}


def _same(a: tuple[Config, ...], b: tuple[Config, ...]) -> bool:
    """The same config objects (the store hands out the object it holds until it changes)."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def _other_configs(snapshot: MeshSnapshot) -> tuple[Config, ...]:
    return tuple(c for c in snapshot.configs if c.kind not in ("ServiceEntry", "WorkloadEntry"))


def _labels_matter(snapshot: MeshSnapshot) -> bool:
    """Whether any config selects outbound behaviour by the calling workload's labels."""
    for kind in ("DestinationRule", "VirtualService"):
        for config in snapshot.configs_of(kind):
            if _mentions(config.to_dict().get("spec"), _LABEL_KEYS):
                return True
    return False


def _mentions(node: Any, keys: tuple[str, ...]) -> bool:
    if isinstance(node, dict):
        return any(k in keys and v for k, v in node.items()) or any(_mentions(v, keys) for v in node.values())
    if isinstance(node, list):
        return any(_mentions(v, keys) for v in node)
    return False
