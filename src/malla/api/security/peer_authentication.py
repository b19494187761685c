"""istio.security.v1beta1.PeerAuthentication (security.istio.io v1 and v1beta1).

Which mutual TLS mode a workload's inbound connections use, for the whole
workload and per workload port. Field lists follow istio/api
``security/v1beta1/peer_authentication.proto``.
"""

from __future__ import annotations

from pydantic import Field

from malla.api.base import IstioModel, UInt32, proto_enum
from malla.api.security.common import WorkloadSelector

# UNSET inherits from the namespace/mesh policy (PERMISSIVE when there is none).
MutualTLSMode = proto_enum("UNSET", "DISABLE", "PERMISSIVE", "STRICT")


class MutualTLS(IstioModel):
    """PeerAuthentication.MutualTLS."""

    mode: MutualTLSMode | None = None


class PeerAuthentication(IstioModel):
    """Spec of a PeerAuthentication; ``port_level_mtls`` is keyed by workload (not Service) port."""

    selector: WorkloadSelector | None = None
    mtls: MutualTLS | None = None
    port_level_mtls: dict[UInt32, MutualTLS] = Field(default_factory=dict)
