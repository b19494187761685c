"""Istio's analyzer message catalogue and Go-style rendering of its templates.

The catalogue (``malla/data/analyzer-messages.yaml``, Istio's own file) gives
each message a code (IST0101), a level and a Go ``fmt`` template. Messages are
rendered here as Go's ``fmt.Sprintf`` would, so ``malla analyze`` prints the
same text as ``istioctl analyze``: ``%q`` quotes like ``strconv.Quote``, a list
under ``%v``/``%s``/``%d`` prints as ``[a b c]``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from ruamel.yaml import YAML

from malla.config.model import Level

_LEVELS: Mapping[str, Level] = {"Error": "error", "Warning": "warning", "Info": "info"}


@dataclass(frozen=True)
class MessageType:
    """One catalogue entry: Istio's name (``ReferencedResourceNotFound``), code, level, template."""

    name: str
    code: str
    level: Level
    description: str
    template: str
    arg_names: tuple[str, ...]

    def render(self, *args: Any) -> str:
        if len(args) != len(self.arg_names):
            raise TypeError(f"{self.name} takes {len(self.arg_names)} arguments {self.arg_names}, got {len(args)}")
        return go_sprintf(self.template, args)


@cache
def catalogue() -> Mapping[str, MessageType]:
    """All message types by Istio's name, read once from the packaged YAML."""
    text = resources.files("malla").joinpath("data/analyzer-messages.yaml").read_text(encoding="utf-8")
    doc = YAML(typ="safe", pure=True).load(text)
    out: dict[str, MessageType] = {}
    for entry in doc["messages"]:
        out[entry["name"]] = MessageType(
            name=entry["name"],
            code=entry["code"],
            level=_LEVELS[entry["level"]],
            description=entry.get("description", ""),
            template=entry["template"],
            arg_names=tuple(a["name"] for a in entry.get("args") or ()),
        )
    return out


def message_type(name: str) -> MessageType:
    try:
        return catalogue()[name]
    except KeyError:
        raise KeyError(f"unknown analyzer message {name!r}: not in Istio's catalogue") from None


def code_of(name: str) -> str:
    return message_type(name).code


# --- Go fmt -------------------------------------------------------------------

_VERB = re.compile(r"%([%sqvd])")


def go_sprintf(template: str, args: Sequence[Any]) -> str:
    """Render ``%s %q %v %d %%`` as Go's fmt.Sprintf does for strings, ints and lists."""
    pending = list(args)
    out: list[str] = []
    pos = 0
    for m in _VERB.finditer(template):
        out.append(template[pos : m.start()])
        pos = m.end()
        verb = m.group(1)
        if verb == "%":
            out.append("%")
        elif not pending:
            out.append(f"%!{verb}(MISSING)")
        else:
            out.append(_format(verb, pending.pop(0)))
    out.append(template[pos:])
    if pending:
        extra = ", ".join(f"{type(a).__name__}={_format('v', a)}" for a in pending)
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _format(verb: str, value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_format(verb, v) for v in value) + "]"
    if verb == "q":
        return go_quote(str(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if verb == "d" and not isinstance(value, int):
        return f"%!d({type(value).__name__}={value})"
    if value is None:
        return "<nil>"
    return str(value)


_ESCAPES = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t", "\v": r"\v", "\\": "\\\\", '"': '\\"'}


def go_quote(text: str) -> str:
    """strconv.Quote: a double-quoted Go string literal, printable Unicode kept as is."""
    parts = ['"']
    for ch in text:
        if ch in _ESCAPES:
            parts.append(_ESCAPES[ch])
        elif ch.isprintable():
            parts.append(ch)
        elif ord(ch) < 0x80:
            parts.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            parts.append(f"\\u{ord(ch):04x}")
        else:
            parts.append(f"\\U{ord(ch):08x}")
    parts.append('"')
    return "".join(parts)
