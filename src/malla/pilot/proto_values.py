"""Small protobuf values every builder needs: durations, wrappers, ``Any``, the ADS source.

Small conversions every builder needs (durations, wrappers, typed configs),
kept in one place so that every builder spells them the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import any_pb2, duration_pb2, struct_pb2, wrappers_pb2
from envoy.config.core.v3 import config_source_pb2
from google.protobuf.message import Message

from malla.api.base import Duration

_NANOS = 1_000_000_000


def duration(value: Duration | int) -> duration_pb2.Duration:
    """A protobuf Duration from an Istio Duration or nanoseconds."""
    nanos = value.nanos if isinstance(value, Duration) else int(value)
    out = duration_pb2.Duration()
    out.FromNanoseconds(nanos)
    return out


def seconds(n: float) -> duration_pb2.Duration:
    return duration(int(n * _NANOS))


def uint32(value: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=value)


def uint64(value: int) -> wrappers_pb2.UInt64Value:
    return wrappers_pb2.UInt64Value(value=value)


def boolean(value: bool) -> wrappers_pb2.BoolValue:
    return wrappers_pb2.BoolValue(value=value)


def typed(message: Message) -> any_pb2.Any:
    """Pack a typed config (``typed_config``, ``typed_per_filter_config`` values)."""
    out = any_pb2.Any()
    out.Pack(message)
    return out


def struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(dict(value))
    return out


MAX_UINT32 = 2**32 - 1


def ads_source() -> config_source_pb2.ConfigSource:
    """Every RDS/EDS/SDS reference in generated resources: over the ADS stream, API v3."""
    source = config_source_pb2.ConfigSource(resource_api_version=config_source_pb2.V3)
    source.ads.SetInParent()
    return source
