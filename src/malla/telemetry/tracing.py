"""Tracing from Istio's Telemetry API: the merged settings for one side of a proxy (pure).

In: the Telemetry chain of a proxy (``policy.applicable_telemetries``,
least specific first), the ``MeshConfig`` and the traffic side (CLIENT:
outbound listeners of a sidecar and every gateway listener; SERVER: a
sidecar's inbound). Out: a ``TracingSpec``, or None when no Telemetry in
the chain has a tracing entry, so ``MeshConfig`` alone decides, as before.

Merging follows Istio's ``Telemetries.Tracing``: every entry whose
``match.mode`` covers the side, in order, overrides what it sets: the
provider (the first named), ``disableSpanReporting``, ``customTags`` (the
whole map, not per tag), ``randomSamplingPercentage``,
``useRequestIdForTraceSampling`` (default true), ``enableIstioTags``
(default true) and ``disableContextPropagation`` (default false). Unset
sampling falls back to ``MeshConfig.trace_sampling``.

In Envoy: ``useRequestIdForTraceSampling`` is the HCM's UUID request-id
extension (true: the sampling decision is taken from, and packed into,
``x-request-id``, so every hop that sees the id decides alike; false: each
proxy draws its own random number); ``enableIstioTags: false`` leaves out
the ``istio.*`` span tags; ``disableContextPropagation`` is the HCM tracing
field ``no_context_propagation`` (in the Envoy malla ships: spans are still
reported, but no B3 headers go upstream).

Providers: malla's mesh config declares no ``extensionProviders``; its one
tracing provider is the Zipkin collector at ``MeshConfig.zipkin_address``
(the built-in one, or an external Zipkin/Jaeger), named ``zipkin`` and the
default provider whenever that address is set. Any other name finds no
provider: that side gets no tracing, as Istio does when a provider lookup
fails (validation warns about the name).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.request_id.uuid.v3 import uuid_pb2
from envoy.type.tracing.v3 import custom_tag_pb2

from malla.api.telemetry.telemetry import CustomTag, Tracing
from malla.pilot.proto_values import boolean, typed
from malla.pilot.snapshot import MeshConfig
from malla.telemetry.policy import AppliedTelemetry

ZIPKIN_PROVIDER = "zipkin"
TRACING_PROVIDERS = (ZIPKIN_PROVIDER,)
CLIENT, SERVER = "CLIENT", "SERVER"
# HttpConnectionManager.Tracing.no_context_propagation (bool, field 13), newer than the
# xds-protos release malla pins; written as its wire encoding when the class lacks it.
NO_CONTEXT_PROPAGATION, NO_CONTEXT_PROPAGATION_FIELD = "no_context_propagation", 13


@dataclass(frozen=True)
class TracingSpec:
    """What one side of a proxy traces: nothing when ``disabled``."""

    disabled: bool
    sampling: float = 1.0
    custom_tags: Mapping[str, CustomTag] = field(default_factory=dict)
    use_request_id_for_sampling: bool = True
    istio_tags: bool = True
    context_propagation: bool = True


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
    merged = TracingSpec(disabled=False)
    sampling: float | None = None
    for entry in entries:
        if not _covers(entry, side):
            continue
        if entry.providers:
            provider = tracing_provider(entry.providers[0].name, mesh)
        if entry.random_sampling_percentage is not None:
            sampling = entry.random_sampling_percentage
        merged = replace(merged, **_overrides(entry))
    if provider is None or merged.disabled:
        return TracingSpec(disabled=True)
    chosen = mesh.trace_sampling if sampling is None else sampling
    return replace(merged, sampling=max(0.0, min(100.0, chosen)))


def _overrides(entry: Tracing) -> dict[str, Any]:
    """What one entry sets besides provider and sampling, as ``TracingSpec`` fields; unset ones keep the parent's."""
    out: dict[str, Any] = {}
    if entry.disable_span_reporting is not None:
        out["disabled"] = entry.disable_span_reporting
    if entry.custom_tags:
        out["custom_tags"] = dict(entry.custom_tags)
    if entry.use_request_id_for_trace_sampling is not None:
        out["use_request_id_for_sampling"] = entry.use_request_id_for_trace_sampling
    if entry.enable_istio_tags is not None:
        out["istio_tags"] = entry.enable_istio_tags
    if entry.disable_context_propagation is not None:
        out["context_propagation"] = not entry.disable_context_propagation
    return out


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


def build_request_id_extension(*, use_for_sampling: bool) -> hcm_pb2.RequestIDExtension:
    """Envoy's UUID request ids, as Istio sets them on every traced connection manager."""
    config = uuid_pb2.UuidRequestIdConfig(use_request_id_for_trace_sampling=boolean(use_for_sampling))
    return hcm_pb2.RequestIDExtension(typed_config=typed(config))


def disable_context_propagation(tracing: hcm_pb2.HttpConnectionManager.Tracing) -> None:
    """Report spans but send no trace headers upstream (Envoy's ``no_context_propagation``)."""
    if NO_CONTEXT_PROPAGATION in tracing.DESCRIPTOR.fields_by_name:
        setattr(tracing, NO_CONTEXT_PROPAGATION, True)
    else:
        # Varint field: tag (number << 3 | 0) then 1; protobuf keeps unknown fields when it re-serialises.
        tracing.MergeFromString(bytes([NO_CONTEXT_PROPAGATION_FIELD << 3, 1]))
