"""Printing for the CLI: rich tables and messages for people, JSON/YAML for scripts."""

from __future__ import annotations

import enum
import json
import sys
from typing import Any

from rich.console import Console

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class OutputFormat(str, enum.Enum):
    text = "text"
    json = "json"
    yaml = "yaml"


def emit_data(data: Any, fmt: OutputFormat) -> None:
    """Write machine-readable output to stdout, exactly (no markup, no wrapping)."""
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    else:
        from ruamel.yaml import YAML

        y = YAML(typ="safe", pure=True)
        y.default_flow_style = False
        y.dump(data, sys.stdout)


def style_for(level: str) -> str:
    return {"error": "red", "warning": "yellow", "info": "cyan"}.get(level, "")
