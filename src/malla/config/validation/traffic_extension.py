"""Semantic rules of TrafficExtension, as Istio's CRD schema and istiod apply them.

Exactly one filter is given: ``wasm`` or ``lua``. A Wasm filter follows the
module rules it shares with WasmPlugin (``common_wasm``: url scheme, sha256
checksum, name lengths, VM environment); a Lua filter has non-empty inline
code of at most 64 KiB, and a script that defines neither
``envoy_on_request`` nor ``envoy_on_response`` is a warning, since Envoy
would never call it. Selection is ``selector`` or ``targetRefs`` (the
shared policy-attachment rules); traffic selectors are WasmPlugin's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from malla.api.extensions.traffic_extension import LuaConfig, TrafficExtension
from malla.config.validation import Finding, Findings, ValidationContext
from malla.config.validation.common_selectors import check_selection
from malla.config.validation.common_wasm import check_traffic_selectors, check_wasm_module

_MAX_LUA_BYTES = 65536
# Envoy's Lua filter calls only these globals; a script without either does nothing.
# https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/lua_filter#script-examples
_LUA_ENTRY_POINTS = re.compile(r"\benvoy_on_(request|response)\b")


def validate(spec: TrafficExtension, ctx: ValidationContext) -> Iterable[Finding]:
    findings = Findings()
    check_selection(findings, selector=spec.selector, target_refs=spec.target_refs)
    if spec.wasm is None and spec.lua is None:
        findings.error(
            "spec",
            "exactly one of wasm or lua must be set: a WebAssembly module (wasm.url) or inline Lua (lua.inlineCode)",
        )
    elif spec.wasm is not None and spec.lua is not None:
        findings.error("spec.lua", "exactly one of wasm or lua must be set, found both; split them into two TrafficExtensions")
    if spec.wasm is not None:
        check_wasm_module(findings, spec.wasm, path="spec.wasm")
    if spec.lua is not None:
        _check_lua(spec.lua, findings)
    check_traffic_selectors(findings, spec.match, path="spec.match")
    return findings


def _check_lua(lua: LuaConfig, findings: Findings) -> None:
    path = "spec.lua.inlineCode"
    code = lua.inline_code
    if not code:
        findings.error(path, "inlineCode is required: a Lua script defining envoy_on_request and/or envoy_on_response")
        return
    size = len(code.encode("utf-8"))
    if size > _MAX_LUA_BYTES:
        findings.error(
            path,
            f"inlineCode is {size} bytes, more than the 65536 (64 KiB) allowed; use a WebAssembly filter (wasm) for larger code",
        )
    elif not _LUA_ENTRY_POINTS.search(code):
        findings.warning(
            path,
            "the script defines neither envoy_on_request nor envoy_on_response, so Envoy never runs it; "
            "define at least one of them",
        )
