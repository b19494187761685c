"""istio.telemetry.v1alpha1.Telemetry (telemetry.istio.io v1 and v1alpha1).

How workloads generate traces, metrics and access logs: which providers
(named in MeshConfig) receive them, sampling, custom span tags, metric
overrides and log filters. Field lists follow istio/api
``telemetry/v1alpha1/telemetry.proto``.
"""

from __future__ import annotations

from pydantic import Field

from malla.api.base import Bool, Double, Duration, IstioModel, Str, proto_enum
from malla.api.security.common import PolicyTargetReference, WorkloadSelector

# istio.telemetry.v1alpha1.WorkloadMode (not the same numbering as istio.type's).
WorkloadMode = proto_enum("CLIENT_AND_SERVER", "CLIENT", "SERVER")

IstioMetric = proto_enum(
    "ALL_METRICS",
    "REQUEST_COUNT",
    "REQUEST_DURATION",
    "REQUEST_SIZE",
    "RESPONSE_SIZE",
    "TCP_OPENED_CONNECTIONS",
    "TCP_CLOSED_CONNECTIONS",
    "TCP_SENT_BYTES",
    "TCP_RECEIVED_BYTES",
    "GRPC_REQUEST_MESSAGES",
    "GRPC_RESPONSE_MESSAGES",
)

TagOperation = proto_enum("UPSERT", "REMOVE")


class ProviderRef(IstioModel):
    """A telemetry provider declared in MeshConfig.extensionProviders."""

    name: Str | None = None


# --- Tracing ------------------------------------------------------------------


class TracingSelector(IstioModel):
    """Tracing.TracingSelector: traffic direction the tracing entry applies to."""

    mode: WorkloadMode | None = None


class TracingLiteral(IstioModel):
    """Tracing.Literal: the same value on every span."""

    value: Str | None = None


class TracingEnvironment(IstioModel):
    """Tracing.Environment: the value of a proxy environment variable."""

    name: Str | None = None
    default_value: Str | None = None


class TracingRequestHeader(IstioModel):
    """Tracing.RequestHeader: the value of a request header."""

    name: Str | None = None
    default_value: Str | None = None


class TracingFormatter(IstioModel):
    """Tracing.Formatter: an access-log substitution formatter such as %REQ(:PATH)%."""

    value: Str | None = None


class CustomTag(IstioModel):
    """Tracing.CustomTag: a oneof, exactly one of the four sources must be set."""

    literal: TracingLiteral | None = None
    environment: TracingEnvironment | None = None
    header: TracingRequestHeader | None = None
    formatter: TracingFormatter | None = None


class Tracing(IstioModel):
    """Tracing behaviour: providers, sampling, span reporting and custom tags."""

    match: TracingSelector | None = None
    providers: list[ProviderRef] = Field(default_factory=list)
    random_sampling_percentage: Double | None = None
    disable_span_reporting: Bool | None = None
    custom_tags: dict[str, CustomTag] = Field(default_factory=dict)
    use_request_id_for_trace_sampling: Bool | None = None
    enable_istio_tags: Bool | None = None
    disable_context_propagation: Bool | None = None


# --- Metrics ------------------------------------------------------------------


class MetricSelector(IstioModel):
    """Which metric(s) an override applies to: ``metric`` and ``custom_metric`` are a oneof."""

    metric: IstioMetric | None = None
    custom_metric: Str | None = None
    mode: WorkloadMode | None = None


class TagOverride(IstioModel):
    """MetricsOverrides.TagOverride: upsert a dimension (a CEL expression) or remove it."""

    operation: TagOperation | None = None
    value: Str | None = None


class MetricsOverrides(IstioModel):
    """An override of metric generation, applied in order."""

    match: MetricSelector | None = None
    disabled: Bool | None = None
    tag_overrides: dict[str, TagOverride] = Field(default_factory=dict)


class Metrics(IstioModel):
    """Metrics behaviour for some providers."""

    providers: list[ProviderRef] = Field(default_factory=list)
    overrides: list[MetricsOverrides] = Field(default_factory=list)
    reporting_interval: Duration | None = None


# --- Access logging -----------------------------------------------------------


class LogSelector(IstioModel):
    """AccessLogging.LogSelector: traffic direction the logging entry applies to."""

    mode: WorkloadMode | None = None


class AccessLogFilter(IstioModel):
    """AccessLogging.Filter: a CEL expression choosing which requests are logged."""

    expression: Str | None = None


class AccessLogging(IstioModel):
    """Access logging behaviour for some providers."""

    match: LogSelector | None = None
    providers: list[ProviderRef] = Field(default_factory=list)
    disabled: Bool | None = None
    filter: AccessLogFilter | None = None


class Telemetry(IstioModel):
    """Spec of a Telemetry resource."""

    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] = Field(default_factory=list)
    tracing: list[Tracing] = Field(default_factory=list)
    metrics: list[Metrics] = Field(default_factory=list)
    access_logging: list[AccessLogging] = Field(default_factory=list)
