"""istio.extensions.v1alpha1.WasmPlugin (extensions.istio.io v1alpha1).

A WebAssembly filter added to the proxies of selected workloads: where the
module comes from (OCI image, file or HTTP URL), its configuration, where
in the filter chain it runs and for which traffic. Field lists follow
istio/api ``extensions/v1alpha1/wasm.proto``.
"""

from __future__ import annotations

from pydantic import Field

from malla.api.base import Int32, IstioModel, Str, Struct, proto_enum
from malla.api.security.common import PolicyTargetReference, PortSelector, WorkloadMode, WorkloadSelector

PluginPhase = proto_enum("UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS")
PullPolicy = proto_enum("UNSPECIFIED_POLICY", "IfNotPresent", "Always")
EnvValueSource = proto_enum("INLINE", "HOST")
FailStrategy = proto_enum("FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD")
PluginType = proto_enum("UNSPECIFIED_PLUGIN_TYPE", "HTTP", "NETWORK")


class EnvVar(IstioModel):
    """An environment variable of the Wasm VM: inline ``value`` or copied from the proxy's host."""

    name: Str | None = None
    value_from: EnvValueSource | None = None
    value: Str | None = None


class VmConfig(IstioModel):
    """Configuration of the Wasm VM."""

    env: list[EnvVar] = Field(default_factory=list)


class TrafficSelector(IstioModel):
    """WasmPlugin.TrafficSelector: traffic direction and destination ports the plugin sees."""

    mode: WorkloadMode | None = None
    ports: list[PortSelector] = Field(default_factory=list)


class WasmPlugin(IstioModel):
    """Spec of a WasmPlugin."""

    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] = Field(default_factory=list)
    url: Str | None = None
    sha256: Str | None = None
    image_pull_policy: PullPolicy | None = None
    image_pull_secret: Str | None = None
    verification_key: Str | None = None
    plugin_config: Struct | None = None
    plugin_name: Str | None = None
    phase: PluginPhase | None = None
    priority: Int32 | None = None
    fail_strategy: FailStrategy | None = None
    vm_config: VmConfig | None = None
    match: list[TrafficSelector] = Field(default_factory=list)
    type: PluginType | None = None
