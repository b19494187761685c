"""WorkloadGroup (networking.istio.io v1, v1beta1, v1alpha3) and its messages.

Field for field the ``istio.networking.v1alpha3.WorkloadGroup`` proto: the
metadata and the WorkloadEntry template given to every workload that joins
the group, and the readiness probe (HTTP GET, TCP connect, exec or gRPC)
the agent runs against it.

Semantic rules live in ``malla.config.validation.workload_group``.
"""

from __future__ import annotations

from pydantic import Field

from malla.api.base import Int32, IstioModel, Str, UInt32
from malla.api.networking.workload_entry import WorkloadEntry


class ObjectMeta(IstioModel):
    """WorkloadGroup.ObjectMeta: labels and annotations copied onto each WorkloadEntry."""

    labels: dict[str, Str] = Field(default_factory=dict)
    annotations: dict[str, Str] = Field(default_factory=dict)


class HTTPHeader(IstioModel):
    name: Str | None = None
    value: Str | None = None


class HTTPHealthCheckConfig(IstioModel):
    path: Str | None = None
    port: UInt32 | None = None
    host: Str | None = None
    scheme: Str | None = None
    http_headers: list[HTTPHeader] = Field(default_factory=list)


class TCPHealthCheckConfig(IstioModel):
    host: Str | None = None
    port: UInt32 | None = None


class ExecHealthCheckConfig(IstioModel):
    command: list[Str] = Field(default_factory=list)


class GrpcHealthCheckConfig(IstioModel):
    port: UInt32 | None = None
    service: Str | None = None


class ReadinessProbe(IstioModel):
    """Timings plus exactly one handler (oneof health_check_method)."""

    initial_delay_seconds: Int32 | None = None
    timeout_seconds: Int32 | None = None
    period_seconds: Int32 | None = None
    success_threshold: Int32 | None = None
    failure_threshold: Int32 | None = None
    http_get: HTTPHealthCheckConfig | None = None
    tcp_socket: TCPHealthCheckConfig | None = None
    exec: ExecHealthCheckConfig | None = None
    grpc: GrpcHealthCheckConfig | None = None


class WorkloadGroup(IstioModel):
    metadata: ObjectMeta | None = None
    template: WorkloadEntry | None = None
    probe: ReadinessProbe | None = None
