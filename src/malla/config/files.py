"""Reading config from files, directories (recursively) and standard input."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from malla.config.model import DEFAULT_NAMESPACE, Diagnostic, Origin
from malla.config.parse import ParseResult, parse_text

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def is_config_file(path: Path) -> bool:
    """Config files by suffix; hidden files and editors' temporary files are not."""
    name = path.name
    if name.startswith(".") or name.endswith("~") or name.startswith("#"):
        return False
    return path.suffix.lower() in CONFIG_SUFFIXES


def expand(paths: Iterable[str]) -> Iterator[tuple[str, Path | None, str | None]]:
    """(shown path, file or None for stdin, error) for every file named or found below a directory."""
    for raw in paths:
        if raw == "-":
            yield "-", None, None
            continue
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_config_file(p))
            for p in found:
                yield str(p), p, None
        elif path.is_file():
            yield raw, path, None
        elif path.exists():
            yield raw, None, f"{raw} is not a regular file or directory"
        else:
            yield raw, None, f"no such file or directory: {raw}"


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def load_paths(paths: Iterable[str], *, default_namespace: str = DEFAULT_NAMESPACE) -> tuple[ParseResult, int]:
    """Parse every document of every file; returns the merged result and the number of files read."""
    result = ParseResult()
    files = 0
    for shown, path, error in expand(paths):
        if error is not None:
            result.diagnostics.append(Diagnostic("error", error, Origin(shown, 0)))
            continue
        try:
            text = sys.stdin.read() if path is None else read_text(path)
        except (OSError, UnicodeDecodeError) as exc:
            result.diagnostics.append(Diagnostic("error", f"cannot read {shown}: {exc}", Origin(shown, 0)))
            continue
        files += 1
        result.merge(parse_text(text, path=shown, default_namespace=default_namespace))
    return result, files
