"""WorkloadEntry (networking.istio.io v1, v1beta1, v1alpha3).

Field for field the ``istio.networking.v1alpha3.WorkloadEntry`` proto: one
non-Kubernetes workload (a VM, a bare-metal process, a whole remote
network) with its address, port map, labels, network, locality, weight and
service account. ServiceEntry endpoints and the WorkloadGroup template are
the same message and import it from here.

Semantic rules live in ``malla.config.validation.workload_entry``.
"""

from __future__ import annotations

from pydantic import Field

from malla.api.base import IstioModel, Str, UInt32


class WorkloadEntry(IstioModel):
    """A workload: an IP, a DNS name or ``unix://`` socket, or only a ``network``."""

    address: Str | None = None
    # service port name -> the port this endpoint listens on
    ports: dict[str, UInt32] = Field(default_factory=dict)
    labels: dict[str, Str] = Field(default_factory=dict)
    network: Str | None = None
    locality: Str | None = None
    weight: UInt32 | None = None
    service_account: Str | None = None
