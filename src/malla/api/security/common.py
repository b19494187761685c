"""Messages of istio.type.v1beta1 that several kinds share.

``WorkloadSelector`` and ``PolicyTargetReference`` say which workloads a
policy applies to (security, telemetry and extensions kinds all use them);
``PortSelector`` and ``WorkloadMode`` are the traffic selectors WasmPlugin
uses. Field lists follow istio/api ``type/v1beta1/selector.proto``.
"""

from __future__ import annotations

from pydantic import Field

from malla.api.base import IstioModel, Str, UInt32, proto_enum


class WorkloadSelector(IstioModel):
    """Pods/VMs a policy applies to, by labels, within the policy's namespace."""

    match_labels: dict[str, Str] = Field(default_factory=dict)


class PolicyTargetReference(IstioModel):
    """A Gateway API style policy target (GEP-713): a Gateway, Service or ServiceEntry."""

    group: Str | None = None
    kind: Str | None = None
    name: Str | None = None
    namespace: Str | None = None


class PortSelector(IstioModel):
    """A listener port a policy applies to."""

    number: UInt32 | None = None


# istio.type.v1beta1.WorkloadMode: which side of the traffic the workload is on.
WorkloadMode = proto_enum("UNDEFINED", "CLIENT", "SERVER", "CLIENT_AND_SERVER")
