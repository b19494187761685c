"""What the EnvoyFilter pass passes around: compiled patches, the tally of what applied, the copy memo.

``CompiledPatch`` is one config patch with its value parsed; ``Tally``
records, for one proxy, the patches applied and those skipped with a reason;
``Memo`` shares a patched copy of a shared message among proxies with the
same EnvoyFilters (see ``malla.pilot.envoy_filters``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from malla.api.networking.envoy_filter import EnvoyConfigObjectMatch
from malla.pilot.shared import SharedGeneration


@dataclass(frozen=True)
class CompiledPatch:
    """One config patch, ready to apply: its value parsed as the Envoy message it patches."""

    where: str  # "EnvoyFilter ns/name spec.configPatches[i]"
    apply_to: str
    operation: str
    context: str
    match: EnvoyConfigObjectMatch
    value: Message | None
    filter_class: str = ""

    def fits(self, context: str) -> bool:
        return self.context in ("ANY", context)


@dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class Tally:
    """What happened to the patches of one proxy: the ones applied, and those skipped with a reason."""

    applied: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)

    def hit(self, patch: CompiledPatch) -> None:
        self.applied.add(patch.where)

    def skip(self, patch: CompiledPatch, message: str) -> None:
        self.problems.append(Problem(patch.where, message))



class Memo:
    """Remembers a patched copy of a shared message for every proxy with the same EnvoyFilters."""

    def __init__(self, shared: SharedGeneration | None, key: tuple[Any, ...]) -> None:
        self.shared, self.key = shared, key

    def patched(self, message: Message, patch: Callable[[Message], Message | None]) -> Message | None:
        # Only shared messages live as long as the memo: the id of any other may be reused.
        if self.shared is None or not self.shared.holds(message):
            return patch(message)
        return self.shared.get(("envoyfilter", self.key, id(message)), lambda: patch(message))
