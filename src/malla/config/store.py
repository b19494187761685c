"""The in-memory config store: the set of valid Istio resources the mesh runs on.

Writers (the directory source, ``malla apply``) replace resources by key;
readers get immutable ``Config`` objects. Every change bumps ``revision``
and notifies subscribers with the keys that changed, which is what the
debouncer downstream merges into one push. Thread-safe; no I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from malla.config.model import Config, ConfigKey


@dataclass(frozen=True)
class ChangeEvent:
    revision: int
    updated: tuple[ConfigKey, ...]
    deleted: tuple[ConfigKey, ...]


Listener = Callable[[ChangeEvent], None]


class ConfigStore:
    def __init__(self) -> None:
        self._items: dict[ConfigKey, Config] = {}
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self.revision = 0

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def get(self, kind: str, namespace: str, name: str) -> Config | None:
        with self._lock:
            for key, cfg in self._items.items():
                if key.kind == kind and key.namespace == namespace and key.name == name:
                    return cfg
        return None

    def list(self, kind: str | None = None, namespace: str | None = None) -> list[Config]:
        with self._lock:
            items = list(self._items.values())
        return sorted(
            (c for c in items if (kind is None or c.kind == kind) and (namespace is None or c.namespace == namespace)),
            key=lambda c: c.key,
        )

    def __len__(self) -> int:
        return len(self._items)

    def replace(self, *, upsert: Iterable[Config] = (), delete: Iterable[ConfigKey] = ()) -> ChangeEvent | None:
        """Apply a batch atomically; returns the event, or None when nothing changed."""
        updated: list[ConfigKey] = []
        deleted: list[ConfigKey] = []
        with self._lock:
            for key in delete:
                if self._items.pop(key, None) is not None:
                    deleted.append(key)
            for cfg in upsert:
                old = self._items.get(cfg.key)
                if old is not None and old.to_dict() == cfg.to_dict():
                    continue
                self._items[cfg.key] = cfg
                updated.append(cfg.key)
                if cfg.key in deleted:
                    deleted.remove(cfg.key)
            if not updated and not deleted:
                return None
            self.revision += 1
            event = ChangeEvent(self.revision, tuple(sorted(updated)), tuple(sorted(deleted)))
        for listener in list(self._listeners):
            listener(event)
        return event
