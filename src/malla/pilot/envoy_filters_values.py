"""EnvoyFilter patch values: Istio's free-form ``patch.value`` made into the Envoy proto it patches.

What comes in: an ``applyTo`` and the value as YAML gave it (Envoy's JSON,
snake_case or camelCase). What goes out: the parsed message, with every
``TypedStruct`` (``udpa.type.v1`` or ``xds.type.v3``) turned into the real
typed ``Any`` it describes, so that Envoy, the consistency check and any
later MERGE see the real type. Unknown fields are ignored, as istiod does at
translation time (the validator warns about them when the config is applied).

Also here: the merges istiod does. A MERGE of a message is protobuf's
``MergeFrom`` (repeated fields append, maps merge by key, scalars set in the
value overwrite); a MERGE of a filter merges the filter's unpacked
``typed_config`` with the value's, taking the value as the filter's own type
when the type URLs differ (istiod swaps the URL the same way).
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from google.protobuf import any_pb2, json_format, symbol_database
from google.protobuf.message import DecodeError, Message

from malla.config.validation.envoy_filter import PATCHED_TYPES, load_types

TYPED_STRUCT_URLS = frozenset({
    "type.googleapis.com/udpa.type.v1.TypedStruct",
    "type.googleapis.com/xds.type.v3.TypedStruct",
})


class PatchValueError(ValueError):
    """A value that cannot become the Envoy message it patches; the text says why."""


def message_type(apply_to: str) -> type[Message]:
    module, name = PATCHED_TYPES[apply_to]
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def untyped_structs(value: Any) -> Any:
    """``value`` with every TypedStruct replaced by the plain ``{"@type": type_url, ...fields}`` it stands for."""
    if isinstance(value, list):
        return [untyped_structs(v) for v in value]
    if not isinstance(value, dict):
        return value
    if value.get("@type") in TYPED_STRUCT_URLS:
        url = value.get("type_url", value.get("typeUrl"))
        if not isinstance(url, str) or not url:
            raise PatchValueError(f"a TypedStruct needs a type_url naming the real type (in {value.get('@type')})")
        fields = value.get("value") or {}
        if not isinstance(fields, dict):
            raise PatchValueError(f"the value of a TypedStruct for {url} must be a map of its fields")
        return {"@type": url, **{k: untyped_structs(v) for k, v in fields.items()}}
    return {k: untyped_structs(v) for k, v in value.items()}


def parse_value(apply_to: str, value: Any) -> Message:
    """The patch value as the Envoy message ``apply_to`` patches."""
    # YAML loaders hand over subclasses of dict/str/float; protobuf wants plain JSON values.
    plain = untyped_structs(json.loads(json.dumps(value or {}, default=str)))
    load_types(plain)
    kind = message_type(apply_to)
    try:
        return json_format.ParseDict(plain, kind(), ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError, RecursionError) as exc:
        text = str(exc).split("\n", 1)[0]
        raise PatchValueError(f"value is not a valid {kind.DESCRIPTOR.full_name}: {text}") from None


def copy_of(message: Message) -> Message:
    out = type(message)()
    out.CopyFrom(message)
    return out


def _unpack(typed: any_pb2.Any) -> Message:
    try:
        cls = symbol_database.Default().GetSymbol(typed.TypeName())
    except KeyError:
        raise PatchValueError(f"unknown type {typed.type_url}") from None
    out = cls()
    typed.Unpack(out)
    return out  # type: ignore[no-any-return]


def merge_typed(existing: any_pb2.Any, patch: any_pb2.Any) -> any_pb2.Any:
    """``existing`` with ``patch`` merged in, both unpacked; the patch read as the existing type."""
    target = _unpack(existing)
    addition = type(target)()
    try:
        addition.ParseFromString(patch.value)
    except DecodeError:
        raise PatchValueError(f"a {patch.TypeName()} value cannot merge into a {existing.TypeName()}") from None
    target.MergeFrom(addition)
    out = any_pb2.Any()
    out.Pack(target)
    return out


def merge_filter(existing: Message, patch: Message) -> Message:
    """A network or HTTP filter MERGE: a new name if the value gives one, typed configs merged."""
    out = copy_of(existing)
    if patch.name:  # type: ignore[attr-defined]
        out.name = patch.name  # type: ignore[attr-defined]
    if patch.HasField("typed_config") and out.HasField("typed_config"):
        out.typed_config.CopyFrom(merge_typed(out.typed_config, patch.typed_config))  # type: ignore[attr-defined]
    return out


def merge_message(target: Message, value: Message, *, replace_lists: bool = False) -> None:
    """Protobuf merge of ``value`` into ``target``; MERGE_AND_REPLACE_LIST makes repeated fields replace."""
    if not replace_lists:
        target.MergeFrom(value)
        return
    for field, item in value.ListFields():
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        if field.is_repeated and not is_map:
            target.ClearField(field.name)
            getattr(target, field.name).MergeFrom(item)
        elif field.is_repeated:  # maps merge by key, as in a plain MERGE
            getattr(target, field.name).MergeFrom(item)
        elif field.message_type is not None:
            merge_message(getattr(target, field.name), item, replace_lists=True)
        else:
            setattr(target, field.name, item)
