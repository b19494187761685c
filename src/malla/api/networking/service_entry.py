"""ServiceEntry (networking.istio.io v1, v1beta1, v1alpha3) and its messages.

Field for field the ``istio.networking.v1alpha3.ServiceEntry`` proto: hosts,
virtual addresses, ports, location, resolution, endpoints (WorkloadEntry
messages) or a workload selector, exportTo and subject alternative names.

``WorkloadSelector`` is the networking flavour (``labels``) shared with
Sidecar and EnvoyFilter; it lives in ``destination_rule``.

Semantic rules live in ``malla.config.validation.service_entry``.
"""

from __future__ import annotations

from pydantic import Field

from malla.api.base import IstioModel, Str, UInt32, proto_enum
from malla.api.networking.destination_rule import WorkloadSelector
from malla.api.networking.workload_entry import WorkloadEntry

Location = proto_enum("MESH_EXTERNAL", "MESH_INTERNAL")
Resolution = proto_enum("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS")


class ServicePort(IstioModel):
    """A port of the service; ``targetPort`` is the endpoint port when it differs."""

    number: UInt32 | None = None
    protocol: Str | None = None
    name: Str | None = None
    target_port: UInt32 | None = None


class ServiceEntry(IstioModel):
    hosts: list[Str] = Field(default_factory=list)
    addresses: list[Str] = Field(default_factory=list)
    ports: list[ServicePort] = Field(default_factory=list)
    location: Location | None = None
    resolution: Resolution | None = None
    endpoints: list[WorkloadEntry] = Field(default_factory=list)
    workload_selector: WorkloadSelector | None = None
    export_to: list[Str] = Field(default_factory=list)
    subject_alt_names: list[Str] = Field(default_factory=list)
