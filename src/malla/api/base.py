"""Shared building blocks of the typed Istio API models.

Every Istio message is a frozen pydantic model whose YAML keys are the
protobuf JSON names (camelCase); the proto's snake_case names are accepted
too, as protojson does. Unknown keys are errors, as kubectl's strict
decoding makes them.

Scalar types follow protobuf JSON: 64-bit integers may come as strings,
``google.protobuf.Duration`` accepts Go-style durations ("1.5s", "100ms",
"1h30m") as Istio's CRD validation does, wrapper types (``BoolValue``,
``UInt32Value``, ...) are plain optional scalars.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, GetCoreSchemaHandler
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError, core_schema


class IstioModel(BaseModel):
    """Base of every Istio API message: camelCase keys, strict about unknown keys."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        # Istio's protos have fields named e.g. "schema"; never shadow BaseModel.
        protected_namespaces=(),
        validate_default=False,
        ser_json_inf_nan="constants",
    )

    def to_dict(self) -> dict[str, Any]:
        """The message as Istio's YAML would spell it (camelCase, unset fields left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# --- Duration -----------------------------------------------------------------

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_MAX_DURATION_NS = 315_576_000_000 * 1_000_000_000  # protobuf Duration's limit


def parse_duration_ns(text: str) -> int:
    """Parse a Go/protobuf duration string into nanoseconds.

    Accepts what Istio accepts: an optional sign, then one or more
    number+unit parts ("1.5s", "100ms", "1h30m", "0s"). Raises ValueError
    with the accepted forms otherwise.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    sign = 1
    if s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    pos = 0
    total = 0.0
    total_ns = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            raise ValueError(
                f"invalid duration {text!r}: use a number with a unit "
                "(ns, us, ms, s, m, h), for example '1.5s', '100ms' or '1h30m'"
            )
        number, unit = m.group(1), m.group(2)
        if "." in number:
            total += float(number) * _UNITS_NS[unit]
        else:
            total_ns += int(number) * _UNITS_NS[unit]
        pos = m.end()
    ns = total_ns + round(total)
    if ns > _MAX_DURATION_NS:
        raise ValueError(f"duration {text!r} is out of range")
    return sign * ns


def format_duration_ns(ns: int) -> str:
    """Canonical protobuf JSON form: seconds with up to 9 decimals ("1.500s")."""
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    secs, frac = divmod(ns, 1_000_000_000)
    if frac == 0:
        return f"{sign}{secs}s"
    text = f"{frac:09d}".rstrip("0")
    return f"{sign}{secs}.{text}s"


class Duration:
    """A protobuf Duration: exact nanoseconds, written back in canonical form."""

    __slots__ = ("nanos",)

    def __init__(self, nanos: int) -> None:
        object.__setattr__(self, "nanos", int(nanos))

    def __setattr__(self, name: str, value: Any) -> None:  # frozen
        raise AttributeError("Duration is immutable")

    @classmethod
    def parse(cls, value: Any) -> Duration:
        if isinstance(value, Duration):
            return value
        if isinstance(value, bool):
            raise ValueError("a duration is a string such as '1.5s', not a boolean")
        if isinstance(value, dict):
            # protobuf's object form {seconds, nanos}
            extra = set(value) - {"seconds", "nanos"}
            if extra:
                raise ValueError(f"unknown duration keys {sorted(extra)}")
            return cls(int(value.get("seconds", 0)) * 1_000_000_000 + int(value.get("nanos", 0)))
        if isinstance(value, str):
            return cls(parse_duration_ns(value))
        raise ValueError("a duration is a string such as '1.5s', '100ms' or '1h'")

    @property
    def seconds(self) -> float:
        return self.nanos / 1e9

    @property
    def millis(self) -> int:
        return self.nanos // 1_000_000

    def to_proto_fields(self) -> tuple[int, int]:
        """(seconds, nanos) as google.protobuf.Duration wants them."""
        secs, nanos = divmod(abs(self.nanos), 1_000_000_000)
        if self.nanos < 0:
            return -secs, -nanos
        return secs, nanos

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Duration) and other.nanos == self.nanos

    def __lt__(self, other: Duration) -> bool:
        return self.nanos < other.nanos

    def __hash__(self) -> int:
        return hash(("Duration", self.nanos))

    def __repr__(self) -> str:
        return f"Duration({format_duration_ns(self.nanos)!r})"

    def __str__(self) -> str:
        return format_duration_ns(self.nanos)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        def validate(value: Any) -> Duration:
            try:
                return cls.parse(value)
            except (ValueError, TypeError) as exc:
                raise PydanticCustomError("duration", "{msg}", {"msg": str(exc)}) from None

        return core_schema.no_info_plain_validator_function(
            validate,
            serialization=core_schema.plain_serializer_function_ser_schema(str, when_used="always"),
            json_schema_input_schema=core_schema.str_schema(),
        )


# --- Scalars ------------------------------------------------------------------


def _int_like(value: Any) -> Any:
    """protobuf JSON writes 64-bit ints as strings and accepts them for any int."""
    if isinstance(value, bool):
        raise ValueError("expected an integer, not a boolean")
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


UInt32 = Annotated[int, BeforeValidator(_int_like), Field(ge=0, le=2**32 - 1)]
Int32 = Annotated[int, BeforeValidator(_int_like), Field(ge=-(2**31), le=2**31 - 1)]
UInt64 = Annotated[int, BeforeValidator(_int_like), Field(ge=0, le=2**64 - 1)]
Int64 = Annotated[int, BeforeValidator(_int_like), Field(ge=-(2**63), le=2**63 - 1)]


def _strict_bool(value: Any) -> Any:
    # YAML 1.2 already gives real booleans; protojson also accepts "true"/"false".
    if value in ("true", "false"):
        return value == "true"
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


Bool = Annotated[bool, BeforeValidator(_strict_bool)]


def _strict_str(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__} {value!r}")
    return value


Str = Annotated[str, BeforeValidator(_strict_str)]


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    return value


Double = Annotated[float, BeforeValidator(_number)]


class Percent(IstioModel):
    """istio.networking.v1alpha3.Percent: a value in [0.0, 100.0]."""

    value: Double = 0.0


# Free-form google.protobuf.Struct / Value (EnvoyFilter patches, WasmPlugin config).
Struct = dict[str, Any]


def proto_enum(*names: str, numbers: dict[str, int] | None = None) -> Any:
    """A protobuf enum field: its name as a string, or its number as protojson allows.

    ``numbers`` gives the numeric values when they are not 0, 1, 2, ... in order.
    The value kept is always the name, so translation compares strings.
    """
    by_number = {v: k for k, v in (numbers or {n: i for i, n in enumerate(names)}).items()}
    allowed = ", ".join(names)

    def check(value: Any) -> str:
        if isinstance(value, bool):
            raise ValueError(f"expected one of {allowed}")
        if isinstance(value, int) and value in by_number:
            return by_number[value]
        if isinstance(value, str) and value in names:
            return value
        raise ValueError(f"unknown value {value!r}: expected one of {allowed}")

    return Annotated[str, BeforeValidator(check)]
