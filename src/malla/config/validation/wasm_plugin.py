"""Semantic rules of WasmPlugin, as Istio's validation webhook and CRD schema apply them.

Selection is ``selector``, ``targetRef`` or ``targetRefs`` (the shared
policy-attachment rules); the module fields (url, sha256, imagePullSecret,
pluginName, VM environment) and the traffic selectors follow the Wasm
rules WasmPlugin shares with TrafficExtension (``common_wasm``).
"""

from __future__ import annotations

from collections.abc import Iterable

from malla.api.extensions.wasm_plugin import WasmPlugin
from malla.config.validation import Finding, Findings, ValidationContext
from malla.config.validation.common_selectors import check_selection
from malla.config.validation.common_wasm import check_traffic_selectors, check_wasm_module


def validate(spec: WasmPlugin, ctx: ValidationContext) -> Iterable[Finding]:
    findings = Findings()
    check_selection(findings, selector=spec.selector, target_ref=spec.target_ref, target_refs=spec.target_refs)
    check_wasm_module(findings, spec, path="spec")
    check_traffic_selectors(findings, spec.match, path="spec.match")
    return findings
