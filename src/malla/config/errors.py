"""Turn pydantic's validation errors into messages a user of Istio can act on."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel


def describe_pydantic_error(err: dict[str, Any], root: type[BaseModel]) -> str:
    """One pydantic error -> 'what is wrong; what is allowed'."""
    kind = err.get("type", "")
    loc = tuple(err.get("loc", ()))
    if kind == "extra_forbidden":
        model = model_at(root, loc[:-1])
        allowed = ", ".join(known_fields(model)) if model is not None else ""
        return f"unknown field {loc[-1]!r}" + (f"; known fields here: {allowed}" if allowed else "")
    value = err.get("input")
    shown = _short(value)
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"expected an integer, got {shown}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {shown}"
    if kind in ("string_type",):
        return f"expected a string, got {shown}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {shown}"
    if kind in ("list_type",):
        return f"expected a list, got {shown}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, got {shown}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{err['msg'].replace('Input should be', 'must be')}, got {shown}"
    msg = str(err.get("msg", "invalid value"))
    for lead in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(lead)
    return msg


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def known_fields(model: type[BaseModel]) -> list[str]:
    return sorted((f.alias or name) for name, f in model.model_fields.items())


def model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class found by following ``loc`` (aliases or names, list indexes, map keys)."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = _field(current, part)
            if field is None:
                return None
            current = field.annotation
            continue
        origin = typing.get_origin(current)
        args = typing.get_args(current)
        if origin in (list, tuple, set, frozenset) and args:
            current = args[0]
        elif origin is dict and len(args) == 2:
            current = args[1]
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _field(model: type[BaseModel], part: Any) -> Any:
    for name, f in model.model_fields.items():
        if part in (name, f.alias):
            return f
    return None


def _unwrap(tp: Any) -> Any:
    """Strip Optional[...] and Annotated[...] down to the one real type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            real = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(real) == 1:
                tp = real[0]
                continue
        return tp
