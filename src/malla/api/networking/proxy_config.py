"""ProxyConfig (networking.istio.io v1beta1) and its messages.

Field for field the ``istio.networking.v1beta1.ProxyConfig`` proto: which
workloads (``selector`` or ``targetRef``), Envoy's worker thread count,
extra environment variables and the proxy image flavour.

``WorkloadSelector`` (``matchLabels``) and ``PolicyTargetReference`` are the
shared ``istio.type.v1beta1`` messages of ``malla.api.security.common``.

Semantic rules live in ``malla.config.validation.proxy_config``.
"""

from __future__ import annotations

from pydantic import Field

from malla.api.base import Int32, IstioModel, Str
from malla.api.security.common import PolicyTargetReference, WorkloadSelector


class ProxyImage(IstioModel):
    image_type: Str | None = None


class ProxyConfig(IstioModel):
    selector: WorkloadSelector | None = None
    # google.protobuf.Int32Value: unset means Istio's default of 2 workers
    concurrency: Int32 | None = None
    environment_variables: dict[str, Str] = Field(default_factory=dict)
    image: ProxyImage | None = None
    target_ref: PolicyTargetReference | None = None
