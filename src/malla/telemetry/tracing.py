"""Tracing from Istio's Telemetry API: the merged settings for one side of a proxy (pure).

In: the Telemetry chain of a proxy (``policy.applicable_telemetries``,
least specific first), the ``MeshConfig`` and the traffic side (CLIENT:
outbound listeners of a sidecar and every gateway listener; SERVER: a
sidecar's inbound). Out: a ``TracingSpec``, or None when no Telemetry in
the chain has a tracing entry, so ``MeshConfig`` alone decides, as before.

Merging follows Istio's ``Telemetries.Tracing``: every entry whose
``match.mode`` covers the side, in order, overrides what it sets: the
provider (the first named), ``disableSpanReporting``, ``customTags`` (the
whole map, not per tag), ``randomSamplingPercentage``. Unset sampling falls
back to ``MeshConfig.trace_sampling``.

Providers: malla's mesh config declares no ``extensionProviders``; its one
tracing provider is the Zipkin collector at ``MeshConfig.zipkin_address``
(the built-in one, or an external Zipkin/Jaeger), named ``zipkin`` and the
default provider whenever that address is set. Any other name finds no
provider: that side gets no tracing, as Istio does when a provider lookup
fails (validation warns about the name).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from envoy.type.tracing.v3 import custom_tag_pb2

from malla.api.telemetry.telemetry import CustomTag, Tracing
from malla.pilot.snapshot import MeshConfig
from malla.telemetry.policy import AppliedTelemetry

ZIPKIN_PROVIDER = "zipkin"
TRACING_PROVIDERS = (ZIPKIN_PROVIDER,)
CLIENT, SERVER = "CLIENT", "SERVER"


@dataclass(frozen=True)
class TracingSpec:
    """What one side of a proxy traces: nothing when ``disabled``."""

    disabled: bool
    sampling: float = 1.0
    custom_tags: Mapping[str, CustomTag] = field(default_factory=dict)


def tracing_provider(name: str | None, mesh: MeshConfig) -> str | None:
    """The provider ``name`` refers to, if malla has it (names compare case-insensitively, as in Istio)."""
    if name and name.lower() == ZIPKIN_PROVIDER and mesh.zipkin_address:
        return ZIPKIN_PROVIDER
    return None


def tracing_spec(chain: Sequence[AppliedTelemetry], *, mesh: MeshConfig, side: str) -> TracingSpec | None:
    """The merged tracing settings for ``side`` (CLIENT or SERVER); None: no Telemetry says anything."""
    entries = [entry for applied in chain for entry in applied.spec.tracing]
    if not entries:
        return None
    provider = tracing_provider(ZIPKIN_PROVIDER, mesh)
    disabled = False
    sampling: float | None = None
    tags: Mapping[str, CustomTag] = {}
    for entry in entries:
        if not _covers(entry, side):
            continue
        if entry.providers:
            provider = tracing_provider(entry.providers[0].name, mesh)
        if entry.disable_span_reporting is not None:
            disabled = entry.disable_span_reporting
        if entry.custom_tags:
            tags = entry.custom_tags
        if entry.random_sampling_percentage is not None:
            sampling = entry.random_sampling_percentage
    if provider is None or disabled:
        return TracingSpec(disabled=True)
    chosen = mesh.trace_sampling if sampling is None else sampling
    return TracingSpec(disabled=False, sampling=max(0.0, min(100.0, chosen)), custom_tags=dict(tags))


def _covers(entry: Tracing, side: str) -> bool:
    mode = entry.match.mode if entry.match is not None else None
    return mode in (None, "CLIENT_AND_SERVER") or mode == side


def translate_custom_tag(tag: str, source: CustomTag) -> custom_tag_pb2.CustomTag | None:
    """One ``customTags`` entry as Envoy's span tag.

    ``environment`` reads the Envoy process's environment, which is the
    agent's (``malla run`` passes its own on), with ``defaultValue`` when
    the variable is unset; ``formatter`` is an access-log format string.
    """
    out = custom_tag_pb2.CustomTag(tag=tag)
    if source.literal is not None:
        out.literal.value = source.literal.value or ""
    elif source.environment is not None:
        out.environment.name = source.environment.name or ""
        out.environment.default_value = source.environment.default_value or ""
    elif source.header is not None:
        out.request_header.name = source.header.name or ""
        out.request_header.default_value = source.header.default_value or ""
    elif source.formatter is not None:
        out.value = source.formatter.value or ""
    else:
        return None  # no source: validation rejects it; Envoy would refuse the whole listener
    return out
