"""Debounce: many change events in, one merged push request out.

Istio's rule: wait until events have been quiet for ``quiet`` seconds, but
never hold the first event longer than ``max_delay``. Sans-IO: the caller
passes the time in (``now``) and asks ``due(now)``; ``deadline()`` tells
when to ask next. Merging is the caller's ``merge`` function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class DebounceSettings:
    quiet: float = 0.1  # seconds without events before pushing
    max_delay: float = 10.0  # the longest an event may wait

    def __post_init__(self) -> None:
        if self.quiet < 0 or self.max_delay < 0:
            raise ValueError("debounce times must not be negative")


class Debouncer(Generic[T]):
    def __init__(self, settings: DebounceSettings, merge: Callable[[T, T], T]) -> None:
        self.settings = settings
        self._merge = merge
        self._pending: T | None = None
        self._first = 0.0
        self._last = 0.0
        self.events = 0  # events merged into the pending request

    @property
    def pending(self) -> bool:
        return self._pending is not None

    @property
    def first_at(self) -> float:
        """When the first event of the pending request (or of the one last due) came."""
        return self._first

    def add(self, event: T, now: float) -> None:
        if self._pending is None:
            self._pending, self._first, self.events = event, now, 0
        else:
            self._pending = self._merge(self._pending, event)
        self._last = now
        self.events += 1

    def deadline(self) -> float | None:
        """When the pending request becomes due (None when nothing is pending)."""
        if self._pending is None:
            return None
        return min(self._last + self.settings.quiet, self._first + self.settings.max_delay)

    def due(self, now: float) -> T | None:
        """The merged request if it is due at ``now`` (and forget it), else None."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        out, self._pending = self._pending, None
        return out
