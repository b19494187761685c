"""A config source that mirrors a directory of YAML files into a ConfigStore.

Each file is the unit of change: when a file changes it is parsed whole, and
only when every document in it is valid do its resources replace the ones
it gave before (resources it no longer holds are deleted). A half-written or
broken file never replaces the last good version of that file: its problems
are reported and the store keeps what it had. A resource already given by
another file is refused with an error naming both files.

``sync()`` reads the whole tree once; ``watch()`` follows changes with
watchfiles until its stop event is set.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from malla.config.files import is_config_file, read_text
from malla.config.model import DEFAULT_NAMESPACE, ConfigKey, Diagnostic, Origin
from malla.config.parse import parse_text
from malla.config.store import ConfigStore

log = logging.getLogger(__name__)


@dataclass
class FileState:
    keys: tuple[ConfigKey, ...] = ()
    problems: list[Diagnostic] = field(default_factory=list)
    text: str | None = None


Reporter = Callable[[str, list[Diagnostic]], None]


class DirectorySource:
    """Mirror one or more directory trees (``root`` and ``extra_roots``) into ``store``."""

    def __init__(
        self,
        root: Path,
        store: ConfigStore,
        *,
        extra_roots: tuple[Path, ...] = (),
        default_namespace: str = DEFAULT_NAMESPACE,
        report: Reporter | None = None,
    ) -> None:
        self.root = Path(root)
        self.roots = (self.root, *(Path(r) for r in extra_roots))
        self.store = store
        self.default_namespace = default_namespace
        self._report = report
        self.files: dict[Path, FileState] = {}
        # The watcher and API writers (malla apply) may load files from different threads.
        self._lock = threading.RLock()

    @property
    def problems(self) -> dict[str, list[Diagnostic]]:
        """Current problems per file (empty lists are left out)."""
        return {str(p): s.problems for p, s in sorted(self.files.items()) if s.problems}

    def sync(self) -> None:
        """Read every config file below root; forget files that disappeared."""
        with self._lock:
            self._sync()

    def _sync(self) -> None:
        present = sorted(
            p for root in self.roots if root.is_dir() for p in root.rglob("*") if p.is_file() and is_config_file(p)
        )
        for gone in set(self.files) - set(present):
            self._remove_file(gone)
        for path in present:
            self._load_file(path)

    def load_file(self, path: Path) -> None:
        with self._lock:
            self._load_file(path)

    def _load_file(self, path: Path) -> None:
        state = self.files.setdefault(path, FileState())
        try:
            text = read_text(path)
        except FileNotFoundError:
            self._remove_file(path)
            return
        except (OSError, UnicodeDecodeError) as exc:
            self._set_problems(path, state, [Diagnostic("error", f"cannot read file: {exc}", Origin(str(path), 0))])
            return
        if text == state.text:
            return
        result = parse_text(text, path=str(path), default_namespace=self.default_namespace)
        problems = list(result.diagnostics)
        owners = self._owners(exclude=path)
        clashes = [c for c in result.configs if c.key in owners]
        for cfg in clashes:
            problems.append(
                Diagnostic(
                    "error",
                    f"{cfg.ref} is already defined in {owners[cfg.key]}; each resource may come from one file only",
                    cfg.origin,
                    cfg.ref,
                )
            )
        if any(d.level == "error" for d in problems):
            if state.text is not None or state.keys:
                problems.append(
                    Diagnostic("warning", "keeping the last good version of this file until the errors are fixed", Origin(str(path), 0))
                )
            self._set_problems(path, state, problems)
            return
        new_keys = tuple(sorted(c.key for c in result.configs))
        self.store.replace(upsert=result.configs, delete=[k for k in state.keys if k not in new_keys])
        state.keys, state.text = new_keys, text
        self._set_problems(path, state, problems)

    def owner_of(self, key: ConfigKey) -> Path | None:
        """The file a resource came from, if any."""
        return self._owners(exclude=Path()).get(key)

    def remove_file(self, path: Path) -> None:
        with self._lock:
            self._remove_file(path)

    def _remove_file(self, path: Path) -> None:
        state = self.files.pop(path, None)
        if state is not None and state.keys:
            self.store.replace(delete=state.keys)
        if state is not None and state.problems and self._report:
            self._report(str(path), [])

    def _owners(self, *, exclude: Path) -> dict[ConfigKey, Path]:
        return {k: p for p, s in self.files.items() if p != exclude for k in s.keys}

    def _set_problems(self, path: Path, state: FileState, problems: list[Diagnostic]) -> None:
        changed = [d.format() for d in problems] != [d.format() for d in state.problems]
        state.problems = problems
        if changed and self._report:
            self._report(str(path), problems)
        for d in problems if changed else ():
            log.log(logging.ERROR if d.level == "error" else logging.WARNING, "%s", d.format())

    async def watch(self, stop: asyncio.Event, *, debounce_ms: int = 50) -> None:
        """Follow changes below root until ``stop`` is set (sync() first)."""
        import watchfiles  # imported here: only the long-running control plane needs it

        for root in self.roots:
            root.mkdir(parents=True, exist_ok=True)
        self.sync()
        async for changes in watchfiles.awatch(*self.roots, stop_event=stop, debounce=debounce_ms, recursive=True):
            touched = sorted({Path(p) for _, p in changes})
            for path in touched:
                if path.is_dir():
                    self.sync()
                elif path.exists() and is_config_file(path):
                    self.load_file(path)
                elif path in self.files:
                    self.remove_file(path)
