"""Semantic rules of TrafficExtension, as Istio's CRD schema and istiod apply them.

Exactly one filter is given: ``wasm`` or ``lua``. A Wasm filter follows
WasmPlugin's module rules (url scheme, sha256 checksum, name lengths, VM
environment); a Lua filter has non-empty inline code of at most 64 KiB, and
a script that defines neither ``envoy_on_request`` nor ``envoy_on_response``
is a warning, since Envoy would never call it. Selection is ``selector`` or
``targetRefs`` (checked by the shared policy-attachment rules), and traffic
selector ports are 1..65535 and listed once each.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from malla.api.extensions.traffic_extension import LuaConfig, TrafficExtension, WasmConfig
from malla.api.extensions.wasm_plugin import TrafficSelector, VmConfig
from malla.api.security.common import PolicyTargetReference, WorkloadSelector
from malla.config.validation import Finding, Findings, ValidationContext
from malla.config.validation.authorization_policy import check_selection
from malla.config.validation.common import check_port, join
from malla.config.validation.wasm_plugin import _url_problem as wasm_url_problem

_SHA256 = re.compile(r"[a-f0-9]{64}")
_MAX_SECRET_NAME = 253
_MAX_PLUGIN_NAME = 256
_MAX_ENV = 256
_MAX_ENV_NAME = 256
_MAX_ENV_VALUE = 2048
_MAX_LUA_BYTES = 65536
# Envoy's Lua filter calls only these globals; a script without either does nothing.
# https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/lua_filter#script-examples
_LUA_ENTRY_POINTS = re.compile(r"\benvoy_on_(request|response)\b")


class _Selection(NamedTuple):
    """The attachment fields as the shared check reads them (TrafficExtension has no single targetRef)."""

    selector: WorkloadSelector | None
    target_ref: PolicyTargetReference | None
    target_refs: list[PolicyTargetReference]


def validate(spec: TrafficExtension, ctx: ValidationContext) -> Iterable[Finding]:
    findings = Findings()
    check_selection(_Selection(spec.selector, None, spec.target_refs), findings)
    if spec.wasm is None and spec.lua is None:
        findings.error(
            "spec",
            "exactly one of wasm or lua must be set: a WebAssembly module (wasm.url) or inline Lua (lua.inlineCode)",
        )
    elif spec.wasm is not None and spec.lua is not None:
        findings.error("spec.lua", "exactly one of wasm or lua must be set, found both; split them into two TrafficExtensions")
    if spec.wasm is not None:
        _check_wasm(spec.wasm, findings)
    if spec.lua is not None:
        _check_lua(spec.lua, findings)
    for i, selector in enumerate(spec.match):
        _check_traffic_selector(selector, findings, path=join("spec.match", i))
    return findings


def _check_wasm(wasm: WasmConfig, findings: Findings) -> None:
    if problem := wasm_url_problem(wasm.url):
        findings.error("spec.wasm.url", problem)
    if wasm.sha256 and not _SHA256.fullmatch(wasm.sha256):
        findings.error(
            "spec.wasm.sha256",
            f"sha256 must be 64 lower-case hex digits (the module's SHA-256 checksum), got {len(wasm.sha256)} characters",
        )
    _check_length(
        wasm.image_pull_secret, findings, path="spec.wasm.imagePullSecret", limit=_MAX_SECRET_NAME, what="imagePullSecret"
    )
    _check_length(wasm.plugin_name, findings, path="spec.wasm.pluginName", limit=_MAX_PLUGIN_NAME, what="pluginName")
    if wasm.vm_config is not None:
        _check_vm_config(wasm.vm_config, findings, path="spec.wasm.vmConfig")


def _check_length(value: str | None, findings: Findings, *, path: str, limit: int, what: str) -> None:
    # The CRD gives these strings minLength 1: an empty string is an error, unlike leaving the field out.
    if value is None:
        return
    if not value:
        findings.error(path, f"{what} must not be empty: leave the field out or give 1 to {limit} characters")
    elif len(value) > limit:
        findings.error(path, f"{what} must be at most {limit} characters, got {len(value)}")


def _check_vm_config(vm_config: VmConfig, findings: Findings, *, path: str) -> None:
    env_path = join(path, "env")
    if len(vm_config.env) > _MAX_ENV:
        findings.error(env_path, f"at most {_MAX_ENV} environment variables are allowed, found {len(vm_config.env)}")
    seen: set[str] = set()
    for k, env in enumerate(vm_config.env):
        item = join(env_path, k)
        if not env.name:
            findings.error(join(item, "name"), "environment variable name is required")
        elif len(env.name) > _MAX_ENV_NAME:
            findings.error(join(item, "name"), f"environment variable name must be at most {_MAX_ENV_NAME} characters")
        elif env.name in seen:
            findings.error(join(item, "name"), f"duplicate environment variable {env.name!r}; set each variable once")
        seen.add(env.name or "")
        if env.value and (env.value_from or "INLINE") != "INLINE":
            findings.error(
                join(item, "value"),
                "value may only be set when valueFrom is INLINE; with valueFrom HOST the value is read from the "
                "proxy's environment variable of the same name",
            )
        elif env.value and len(env.value) > _MAX_ENV_VALUE:
            findings.error(join(item, "value"), f"environment variable value must be at most {_MAX_ENV_VALUE} characters")


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


def _check_traffic_selector(selector: TrafficSelector, findings: Findings, *, path: str) -> None:
    seen: set[int] = set()
    for j, port in enumerate(selector.ports):
        port_path = join(path, "ports", j, "number")
        if port.number is None:
            findings.error(port_path, "port number is required: a destination port between 1 and 65535")
        elif problem := check_port(port.number):
            findings.error(port_path, problem)
        elif port.number in seen:
            # ports is a list-map keyed by number in the CRD: Kubernetes rejects a repeated key.
            findings.error(port_path, f"duplicate port {port.number}; list each port once")
        if port.number is not None:
            seen.add(port.number)
