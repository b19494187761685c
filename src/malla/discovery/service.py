"""The discovery service: store and registry changes in, per-proxy snapshots out.

Theory of operation. Every input (a config change from the store, a
workload joining or leaving) becomes a ``Change`` fed to the debouncer. The
push loop (its own thread, so neither the xDS loop nor the API waits on it)
wakes when the merged change is due, builds one frozen ``MeshSnapshot`` and,
for each connected proxy whose inputs matter to the change (the per-type
``*_needs_push`` predicates), generates its resources and publishes them in
the xDS cache. A proxy that connects gets its snapshot at once, from the
current ``MeshSnapshot``, before the xDS server answers it.

Workloads registered by an agent are tied to the agent's xDS node: when
that node's stream ends and does not come back within ``orphan_grace``
seconds, the workload is withdrawn (an agent killed with SIGKILL leaves no
endpoint behind).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from malla.config.model import KubeObject
from malla.config.store import ChangeEvent, ConfigStore
from malla.discovery.debounce import DebounceSettings, Debouncer
from malla.discovery.proxies import NodeMetadataError, proxy_from_node
from malla.pilot.generate import NEEDS_PUSH, Change, Resources, generate, regenerate_endpoints
from malla.pilot.resources import ENDPOINT
from malla.pilot.shared import SharedGeneration, changed_addresses, endpoints_only_change
from malla.pilot.snapshot import MeshConfig, MeshSnapshot, Proxy
from malla.pilot.services import Workload
from malla.xds.cache import CachedResource, SnapshotCache

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def merge_changes(a: Change, b: Change) -> Change:
    return Change(full=a.full or b.full, kinds=a.kinds | b.kinds, endpoints=a.endpoints | b.endpoints)


@dataclass(frozen=True)
class PushRecord:
    """One push, for metrics and ``malla status``."""

    version: str
    proxies: int
    events: int
    seconds: float
    at: float
    convergence: float = 0.0  # seconds from the first change it carries to the end of the push


class DiscoveryService:
    def __init__(
        self,
        *,
        store: ConfigStore,
        cache: SnapshotCache,
        mesh: MeshConfig | None = None,
        debounce: DebounceSettings | None = None,
        clock: Clock = time.monotonic,
        orphan_grace: float = 0.5,
    ) -> None:
        self.store = store
        self.cache = cache
        self.mesh = mesh or MeshConfig()
        self._clock = clock
        self._debouncer: Debouncer[Change] = Debouncer(debounce or DebounceSettings(), merge_changes)
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._workloads: dict[str, Workload] = {}
        self._owners: dict[str, str] = {}  # workload key -> node id of the agent that registered it
        self._orphaned: dict[str, float] = {}  # node id -> when its stream ended
        self._kube: tuple[KubeObject, ...] = ()
        self.orphan_grace = orphan_grace
        self.proxies: dict[str, Proxy] = {}
        self.rejected_nodes: dict[str, str] = {}  # node id -> why it could not be configured
        self.pushes: list[PushRecord] = []
        self.orphan_listeners: list[Callable[[str], None]] = []  # called with the node id of an agent that left
        self.push_listeners: list[Callable[[PushRecord], None]] = []  # called on the push thread after each push
        self.snapshot = self._build_snapshot()
        self._shared = SharedGeneration(self.snapshot)
        self._prepared: dict[int, CachedResource] = {}  # by id() of a message the memo holds
        self._generated: dict[str, Resources] = {}  # node id -> what it was last sent
        store.subscribe(self._on_store_change)

    # -- inputs ------------------------------------------------------------

    def _on_store_change(self, event: ChangeEvent) -> None:
        kinds = frozenset(k.kind for k in (*event.updated, *event.deleted))
        self.request_push(Change(kinds=kinds))

    def set_kube_objects(self, objects: Iterable[KubeObject]) -> None:
        with self._lock:
            self._kube = tuple(objects)
        self.request_push(Change(kinds=frozenset({"Service"})))

    def register_workload(self, workload: Workload, *, node_id: str | None = None) -> str:
        key = workload_key(workload)
        with self._lock:
            self._workloads[key] = workload
            if node_id:
                self._owners[key] = node_id
        self.request_push(Change(kinds=frozenset({"Service"})))
        log.info("workload %s joined at %s %s", key, workload.address, dict(workload.ports))
        return key

    def deregister_workload(self, key: str) -> bool:
        with self._lock:
            gone = self._workloads.pop(key, None)
            self._owners.pop(key, None)
        if gone is not None:
            self.request_push(Change(kinds=frozenset({"Service"})))
            log.info("workload %s left", key)
        return gone is not None

    def workloads(self) -> dict[str, Workload]:
        with self._lock:
            return dict(self._workloads)

    def request_push(self, change: Change) -> None:
        with self._lock:
            self._debouncer.add(change, self._clock())
        self._wake.set()

    # -- xDS hooks (called on the xDS server's loop) ---------------------------

    async def on_connect(self, node: Any) -> None:
        # Translation takes milliseconds to a second per proxy: do it on a worker thread so the
        # xDS loop keeps serving every other stream (and status calls) meanwhile.
        metadata = MessageToDict(node.metadata)
        await asyncio.to_thread(self.connect_node, node.id, metadata, locality=_locality(node))

    def connect_node(self, node_id: str, metadata: Mapping[str, Any], *, locality: str = "") -> Proxy | None:
        try:
            proxy = proxy_from_node(node_id, metadata, locality=locality)
        except NodeMetadataError as exc:
            log.warning("%s", exc)
            self.rejected_nodes[node_id] = str(exc)
            return None
        with self._lock:
            self.proxies[node_id] = proxy
            self._orphaned.pop(node_id, None)
            shared = self._shared
        self._publish(proxy, shared)
        # A push that swapped the snapshot meanwhile may have configured this proxy before the
        # line above overwrote it with the older snapshot's config: send the newest again.
        while shared is not self._shared:
            shared = self._shared
            self._publish(proxy, shared)
        return proxy

    async def on_disconnect(self, node: Any) -> None:
        self.disconnect_node(node.id)

    def disconnect_node(self, node_id: str) -> None:
        with self._lock:
            self.proxies.pop(node_id, None)
            self._generated.pop(node_id, None)
            self._orphaned[node_id] = self._clock()
        self._wake.set()

    # -- the push loop --------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Push until ``stop`` is set (run it in a thread)."""
        while not stop.is_set():
            with self._lock:
                deadline = self._next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            self._wake.wait(timeout if timeout is None else min(timeout, 1.0))
            self._wake.clear()
            if stop.is_set():
                break
            self._reap_orphans()
            with self._lock:
                due = self._debouncer.due(self._clock())
                events, first = self._debouncer.events, self._debouncer.first_at
            if due is not None:
                self.push(due, events=events, changed_at=first)

    def _next_deadline(self) -> float | None:
        deadlines = [d for d in (self._debouncer.deadline(),) if d is not None]
        deadlines += [t + self.orphan_grace for t in self._orphaned.values()]
        return min(deadlines) if deadlines else None

    def _reap_orphans(self) -> None:
        now = self._clock()
        with self._lock:
            expired = [n for n, t in self._orphaned.items() if now - t >= self.orphan_grace and n not in self.proxies]
            self._orphans_gone(expired)
            keys = [k for k, owner in self._owners.items() if owner in expired]
        for key in keys:
            log.warning("workload %s withdrawn: its agent's connection ended and did not come back", key)
            self.deregister_workload(key)
        for node_id in expired:
            for listener in self.orphan_listeners:
                listener(node_id)

    def _orphans_gone(self, expired: list[str]) -> None:
        for n in expired:
            self._orphaned.pop(n, None)

    def push(self, change: Change, *, events: int = 1, changed_at: float | None = None) -> PushRecord:
        started = time.perf_counter()
        snapshot = self._build_snapshot()
        with self._lock:
            previous, old_shared = self.snapshot, self._shared
        hosts = None if change.full else endpoints_only_change(previous, snapshot)
        if hosts is not None:
            shared = old_shared.carry_over(snapshot, changed_hosts=hosts)
            moved = changed_addresses(previous, snapshot, hosts)
        else:
            shared, moved = SharedGeneration(snapshot), frozenset()
        with self._lock:
            self.snapshot, self._shared = snapshot, shared
            held = shared.held if hosts is not None else frozenset()
            self._prepared = {k: v for k, v in self._prepared.items() if k in held}
            proxies = list(self.proxies.values())
        pushed = 0
        for proxy in proxies:
            if hosts is not None and proxy.ip not in moved:
                pushed += self._publish_endpoints(proxy, shared, hosts)
            elif change.full or any(pred(change, proxy) for pred in NEEDS_PUSH.values()):
                self._publish(proxy, shared)
                pushed += 1
        seconds = time.perf_counter() - started
        convergence = self._clock() - changed_at if changed_at is not None else seconds
        record = PushRecord(snapshot.version, pushed, events, seconds, time.time(), convergence)
        with self._lock:
            self.pushes = [*self.pushes[-99:], record]
        for listener in self.push_listeners:
            listener(record)
        log.debug("push %s to %d proxies (%d events) in %.1f ms", record.version, pushed, events, record.seconds * 1e3)
        return record

    def flush(self) -> None:
        """Push what is pending now, ignoring the quiet period (tests, shutdown)."""
        with self._lock:
            pending = self._debouncer.due(float("inf"))
            events = self._debouncer.events
        if pending is not None:
            self.push(pending, events=events)

    def _publish(self, proxy: Proxy, shared: SharedGeneration) -> None:
        try:
            self._send(proxy, generate(proxy, shared.snapshot, shared=shared), shared)
        except Exception as exc:  # one proxy's bad translation must not stop the others' pushes
            log.exception("could not configure proxy %s", proxy.id)
            self.rejected_nodes[proxy.id] = f"translation failed: {exc}"

    def _publish_endpoints(self, proxy: Proxy, shared: SharedGeneration, hosts: frozenset[str]) -> int:
        """Only endpoints changed: send the proxy new assignments of ``hosts``, keep the rest as sent."""
        previous = self._generated.get(proxy.id)
        if previous is None or self.cache.get_snapshot(proxy.id) is None:
            self._publish(proxy, shared)
            return 1
        try:
            update = regenerate_endpoints(proxy, shared.snapshot, previous, hosts, shared=shared)
            if update is None:
                return 0
            upsert = {name: self._prepare(ENDPOINT, m, shared) for name, m in update.upsert.items()}
            self.cache.update_snapshot(proxy.id, ENDPOINT, upsert=upsert, remove=update.remove)
            with self._lock:
                if proxy.id in self.proxies:
                    self._generated[proxy.id] = update.apply(previous)
        except Exception as exc:
            log.exception("could not configure proxy %s", proxy.id)
            self.rejected_nodes[proxy.id] = f"translation failed: {exc}"
            return 0
        return 1

    def _send(self, proxy: Proxy, resources: Resources, shared: SharedGeneration) -> None:
        prepared = {
            type_url: {name: self._prepare(type_url, message, shared) for name, message in named.items()}
            for type_url, named in resources.items()
        }
        self.cache.set_snapshot(proxy.id, prepared)
        with self._lock:
            if proxy.id in self.proxies:
                self._generated[proxy.id] = resources
        self.rejected_nodes.pop(proxy.id, None)

    def _prepare(self, type_url: str, message: Message, shared: SharedGeneration) -> CachedResource:
        """Serialize a message once while the memo shares it among proxies; others each time."""
        if not shared.holds(message):
            return self.cache.prepare_resource(message, type_url=type_url)
        found = self._prepared.get(id(message))
        if found is None:
            found = self.cache.prepare_resource(message, type_url=type_url)
            with self._lock:
                if shared is self._shared:
                    self._prepared[id(message)] = found
        return found

    def _build_snapshot(self) -> MeshSnapshot:
        with self._lock:
            workloads = list(self._workloads.values())
            kube = [k.body for k in self._kube if k.kind == "Service"]
        return MeshSnapshot.build(configs=self.store.list(), kube_services=kube, workloads=workloads, mesh=self.mesh)


def workload_key(workload: Workload) -> str:
    return f"{workload.namespace}/{workload.name}@{workload.address}"


def _locality(node: Any) -> str:
    loc = getattr(node, "locality", None)
    if loc is None:
        return ""
    parts = [loc.region, loc.zone, loc.sub_zone]
    return "/".join(parts).rstrip("/")
