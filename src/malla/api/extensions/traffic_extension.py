"""istio.extensions.v1alpha1.TrafficExtension (extensions.istio.io v1alpha1).

The successor of WasmPlugin: one filter added to the proxies of selected
workloads, written either as a WebAssembly module (``wasm``) or as inline
Lua (``lua``), placed in the filter chain by ``phase`` and ``priority`` and
limited to some traffic by ``match``. Field lists follow istio/api
``extensions/v1alpha1/traffic_extension.proto``; the Wasm module settings,
VM environment and traffic selector are the messages WasmPlugin already
has, so they are shared with ``wasm_plugin``.
"""

from __future__ import annotations

from pydantic import Field

from malla.api.base import Int32, IstioModel, Str, Struct, proto_enum
from malla.api.extensions.wasm_plugin import FailStrategy, PluginType, PullPolicy, TrafficSelector, VmConfig
from malla.api.security.common import PolicyTargetReference, WorkloadSelector

# TrafficExtension.ExecutionPhase; unlike WasmPlugin.PluginPhase its zero value is plain UNSPECIFIED.
ExecutionPhase = proto_enum("UNSPECIFIED", "AUTHN", "AUTHZ", "STATS")


class WasmConfig(IstioModel):
    """A WebAssembly filter: where the module comes from and how it runs."""

    url: Str | None = None
    sha256: Str | None = None
    image_pull_policy: PullPolicy | None = None
    image_pull_secret: Str | None = None
    verification_key: Str | None = None
    plugin_config: Struct | None = None
    plugin_name: Str | None = None
    fail_strategy: FailStrategy | None = None
    vm_config: VmConfig | None = None
    type: PluginType | None = None


class LuaConfig(IstioModel):
    """A Lua filter given inline: a script defining envoy_on_request and/or envoy_on_response."""

    inline_code: Str | None = None


class TrafficExtension(IstioModel):
    """Spec of a TrafficExtension; ``wasm`` and ``lua`` are the two arms of the filter_config oneof."""

    selector: WorkloadSelector | None = None
    target_refs: list[PolicyTargetReference] = Field(default_factory=list)
    phase: ExecutionPhase | None = None
    priority: Int32 | None = None
    match: list[TrafficSelector] = Field(default_factory=list)
    wasm: WasmConfig | None = None
    lua: LuaConfig | None = None
