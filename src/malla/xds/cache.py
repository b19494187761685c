"""Snapshot cache: what each node should hold, serialized once and shared.

In: `set_snapshot(node_id, {type_url: {name: proto}})` from the control plane.
Out: `PreparedSnapshot`s (the `SnapshotView` the protocol machines read) and
response bytes for the gRPC adapter.

Measured on this kind of machine, building and serializing responses per
proxy cost 6-8x more CPU than sharing them. So: each resource is serialized
once and shared by content hash across all nodes (`CachedResource`); each
response body (everything but the nonce) is built once per content and kept
in a small LRU; a stream's nonce is appended as a separate protobuf field,
which parsers merge into the same message.

Watchers are woken after each change of their node; they should only set a
flag (the server merges many changes into one push). `set_snapshot` may be
called from any thread.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from malla.xds import references, resources
from malla.xds.protocol import Send

_log = logging.getLogger(__name__)
_EMPTY: Mapping[str, str] = MappingProxyType({})
_EMPTY_VERSION = resources.set_version({})

Watcher = Callable[[str], None]


class CachedResource:
    """One resource, serialized once; shared by every snapshot holding it."""

    __slots__ = ("type_url", "name", "version", "payload", "references",
                 "_sotw", "_delta", "__weakref__")

    def __init__(self, type_url: str, name: str, payload: bytes, *,
                 refs: tuple[references.Reference, ...] = ()) -> None:
        self.type_url = type_url
        self.name = name
        self.payload = payload
        self.version = resources.resource_version(type_url, name, payload)
        self.references = refs
        self._sotw: bytes | None = None
        self._delta: bytes | None = None

    @property
    def eds_name(self) -> str | None:
        for ref_type, ref_name in self.references:
            if ref_type == resources.ENDPOINT:
                return ref_name
        return None

    def sotw_part(self) -> bytes:
        """This resource as one `resources` field of a DiscoveryResponse."""
        if self._sotw is None:
            packed = any_pb2.Any(type_url=self.type_url, value=self.payload)
            self._sotw = discovery_pb2.DiscoveryResponse(resources=[packed]).SerializeToString()
        return self._sotw

    def delta_part(self) -> bytes:
        """This resource as one `resources` field of a DeltaDiscoveryResponse."""
        if self._delta is None:
            packed = any_pb2.Any(type_url=self.type_url, value=self.payload)
            entry = discovery_pb2.Resource(name=self.name, version=self.version, resource=packed)
            self._delta = discovery_pb2.DeltaDiscoveryResponse(
                resources=[entry]).SerializeToString()
        return self._delta


Snapshot = Mapping[str, Mapping[str, Message | CachedResource]]


class PreparedSnapshot:
    """A node's resources, by type URL and name; immutable once built."""

    __slots__ = ("_resources", "_versions", "_type_versions", "_eds", "version")

    def __init__(self, by_type: Mapping[str, Mapping[str, CachedResource]]) -> None:
        self._resources = {t: dict(entries) for t, entries in by_type.items()}
        self._versions = {t: {n: r.version for n, r in entries.items()}
                          for t, entries in self._resources.items()}
        self._type_versions = {t: resources.set_version(v) for t, v in self._versions.items()}
        clusters = self._resources.get(resources.CLUSTER, {})
        self._eds = {name: eds for name, r in clusters.items()
                     if (eds := r.eds_name) is not None}
        self.version = resources.set_version(self._type_versions)

    def replacing(self, type_url: str, upsert: Mapping[str, CachedResource],
                  remove: Iterable[str] = ()) -> PreparedSnapshot:
        """This snapshot with some resources of one type added, replaced or removed.

        The other types' tables are shared with this snapshot (both are immutable), so a
        change of a few endpoints costs what those endpoints cost, not the whole snapshot.
        """
        entries = dict(self._resources.get(type_url, {}))
        versions = dict(self._versions.get(type_url, {}))
        for name in remove:
            entries.pop(name, None)
            versions.pop(name, None)
        for name, resource in upsert.items():
            entries[name] = resource
            versions[name] = resource.version
        new = PreparedSnapshot.__new__(PreparedSnapshot)
        new._resources = {**self._resources, type_url: entries}
        new._versions = {**self._versions, type_url: versions}
        new._type_versions = {**self._type_versions, type_url: resources.set_version(versions)}
        new._eds = self._eds if type_url != resources.CLUSTER else {
            name: eds for name, r in entries.items() if (eds := r.eds_name) is not None}
        new.version = resources.set_version(new._type_versions)
        return new

    def versions(self, type_url: str) -> Mapping[str, str]:
        return self._versions.get(type_url, _EMPTY)

    def type_version(self, type_url: str) -> str:
        return self._type_versions.get(type_url, _EMPTY_VERSION)

    def eds_name(self, cluster_name: str) -> str | None:
        return self._eds.get(cluster_name)

    def resource(self, type_url: str, name: str) -> CachedResource | None:
        return self._resources.get(type_url, {}).get(name)

    def type_urls(self) -> list[str]:
        return sorted(self._resources, key=resources.push_rank)

    def missing_references(self) -> list[str]:
        return references.missing_references(
            {t: {n: r.references for n, r in entries.items()}
             for t, entries in self._resources.items()})


class SnapshotCache:
    """Snapshots by node id, shared serialized resources, shared response bodies."""

    def __init__(self, *, body_cache_bytes: int = 64 << 20,
                 check_references: bool = True) -> None:
        self._lock = threading.Lock()
        self._snapshots: dict[str, PreparedSnapshot] = {}
        self._watchers: dict[str, set[Watcher]] = {}
        self._store: weakref.WeakValueDictionary[tuple[str, str], CachedResource] = (
            weakref.WeakValueDictionary())
        self._bodies: OrderedDict[tuple[bool, str, str], bytes] = OrderedDict()
        self._body_bytes = 0
        self._body_budget = body_cache_bytes
        self._check_references = check_references

    # -- snapshots -------------------------------------------------------

    def prepare_resource(self, message: Message, *, type_url: str | None = None) -> CachedResource:
        """Serialize one resource, or reuse the shared copy of equal content."""
        type_url = type_url or resources.type_url_of(message)
        name = resources.resource_name(message)
        payload = resources.serialize(message)
        fresh = CachedResource(type_url, name, payload,
                               refs=references.references_of(type_url, message))
        with self._lock:
            shared = self._store.get((type_url, fresh.version))
            if shared is not None:
                return shared
            self._store[(type_url, fresh.version)] = fresh
        return fresh

    def prepare(self, snapshot: Snapshot) -> PreparedSnapshot:
        """Check and serialize a snapshot without publishing it."""
        by_type: dict[str, dict[str, CachedResource]] = {}
        for type_url, named in snapshot.items():
            entries = by_type.setdefault(type_url, {})
            for key, item in named.items():
                entries[key] = self._prepare_item(type_url, key, item)
        prepared = PreparedSnapshot(by_type)
        if self._check_references:
            problems = prepared.missing_references()
            if problems:
                raise references.InconsistentSnapshotError(
                    "snapshot refused, it refers to resources it lacks: "
                    + "; ".join(problems))
        return prepared

    def set_snapshot(self, node_id: str, snapshot: Snapshot | PreparedSnapshot) -> PreparedSnapshot:
        """Publish what `node_id` should hold and wake its streams."""
        if not node_id:
            raise ValueError("node_id: must not be empty")
        prepared = snapshot if isinstance(snapshot, PreparedSnapshot) else self.prepare(snapshot)
        with self._lock:
            self._snapshots[node_id] = prepared
            watchers = list(self._watchers.get(node_id, ()))
        self._notify(node_id, watchers)
        return prepared

    def update_snapshot(self, node_id: str, type_url: str, *,
                        upsert: Mapping[str, Message | CachedResource],
                        remove: Iterable[str] = ()) -> PreparedSnapshot:
        """Change some resources of one type in what `node_id` holds, and wake its streams."""
        current = self._snapshots.get(node_id)
        if current is None:
            raise LookupError(f"node {node_id!r} holds no snapshot to update")
        entries = {key: self._prepare_item(type_url, key, item) for key, item in upsert.items()}
        prepared = current.replacing(type_url, entries, remove)
        removed = [n for n in remove if n not in entries]
        if self._check_references and removed:
            problems = prepared.missing_references()
            if problems:
                raise references.InconsistentSnapshotError(
                    "update refused, it leaves references unsatisfied: " + "; ".join(problems))
        return self.set_snapshot(node_id, prepared)

    def get_snapshot(self, node_id: str) -> PreparedSnapshot | None:
        return self._snapshots.get(node_id)

    def clear_snapshot(self, node_id: str) -> None:
        with self._lock:
            self._snapshots.pop(node_id, None)

    def node_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._snapshots)

    def watch(self, node_id: str, watcher: Watcher) -> Callable[[], None]:
        """Call `watcher(node_id)` after each change; returns an unsubscribe function."""
        with self._lock:
            self._watchers.setdefault(node_id, set()).add(watcher)

        def cancel() -> None:
            with self._lock:
                group = self._watchers.get(node_id)
                if group is not None:
                    group.discard(watcher)
                    if not group:
                        del self._watchers[node_id]
        return cancel

    # -- responses -------------------------------------------------------

    def encode(self, send: Send, *, delta: bool, view: PreparedSnapshot | None) -> bytes:
        """The serialized response of `send`, with its nonce."""
        body = self._body(send, delta=delta, view=view)
        if delta:
            tail = discovery_pb2.DeltaDiscoveryResponse(nonce=send.nonce).SerializeToString()
        else:
            tail = discovery_pb2.DiscoveryResponse(nonce=send.nonce).SerializeToString()
        return body + tail

    def _body(self, send: Send, *, delta: bool, view: PreparedSnapshot | None) -> bytes:
        key = (delta, send.type_url, send.content_id)
        with self._lock:
            body = self._bodies.get(key)
            if body is not None:
                self._bodies.move_to_end(key)
                return body
        body = self._build_body(send, delta=delta, view=view)
        with self._lock:
            if key not in self._bodies and len(body) <= self._body_budget:
                self._bodies[key] = body
                self._body_bytes += len(body)
                while self._body_bytes > self._body_budget:
                    _, old = self._bodies.popitem(last=False)
                    self._body_bytes -= len(old)
        return body

    def _build_body(self, send: Send, *, delta: bool, view: PreparedSnapshot | None) -> bytes:
        parts: list[bytes] = []
        if delta:
            parts.append(discovery_pb2.DeltaDiscoveryResponse(
                system_version_info=send.version, type_url=send.type_url,
                removed_resources=send.removed).SerializeToString())
        else:
            parts.append(discovery_pb2.DiscoveryResponse(
                version_info=send.version, type_url=send.type_url).SerializeToString())
        for name in sorted(send.resources):
            found = self._find(send.type_url, name, send.resources[name], view)
            parts.append(found.delta_part() if delta else found.sotw_part())
        return b"".join(parts)

    def _find(self, type_url: str, name: str, version: str,
              view: PreparedSnapshot | None) -> CachedResource:
        found = view.resource(type_url, name) if view is not None else None
        if found is None or found.version != version:
            with self._lock:
                found = self._store.get((type_url, version))
        if found is None:
            raise LookupError(f"{resources.short_name(type_url)} {name!r} at version "
                              f"{version} is no longer held by any snapshot")
        return found

    # -- internals -------------------------------------------------------

    def _prepare_item(self, type_url: str, key: str,
                      item: Message | CachedResource) -> CachedResource:
        where = f"snapshot[{resources.short_name(type_url)}][{key!r}]"
        if isinstance(item, CachedResource):
            prepared = item
        else:
            expected = resources.MESSAGE_CLASSES.get(type_url)
            if expected is not None and not isinstance(item, expected):
                raise TypeError(f"{where}: expected {expected.DESCRIPTOR.full_name}, "
                                f"got {type(item).__name__}")
            prepared = self.prepare_resource(item, type_url=type_url)
        if prepared.type_url != type_url:
            raise ValueError(f"{where}: resource has type {prepared.type_url}")
        if prepared.name != key:
            raise ValueError(f"{where}: the resource is named {prepared.name!r}; Envoy "
                             "subscribes by that name, so the key must be the same")
        return prepared

    def _notify(self, node_id: str, watchers: list[Watcher]) -> None:
        for watcher in watchers:
            try:
                watcher(node_id)
            except Exception:  # a broken watcher must not stop the others
                _log.exception("snapshot watcher for node %s failed", node_id)
