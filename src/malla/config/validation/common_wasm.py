"""The Wasm module fields WasmPlugin and TrafficExtension's ``wasm`` share, and their traffic selectors.

From Istio's webhook (``validateWasmPluginURL``, ``validateWasmPluginVMConfig``)
and the CRD schema of ``extensions/v1alpha1/wasm.proto``: the ``url`` is an
oci://, file://, http(s):// URL or a scheme-less image reference (taken as
http); ``sha256`` is 64 lower-case hex digits; ``imagePullSecret`` and
``pluginName``, when written, are 1..253 and 1..256 characters; VM
environment variables (at most 256) are named once each and carry a value
only when it is INLINE; traffic selector ports are 1..65535 and, the list
being keyed by number, listed once each.

These checks record their own findings under the path they are given.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from malla.api.extensions.traffic_extension import WasmConfig
from malla.api.extensions.wasm_plugin import TrafficSelector, VmConfig, WasmPlugin
from malla.config.validation import Findings
from malla.config.validation.common import join
from malla.config.validation.common_ports import check_port

_SCHEMES = ("oci", "file", "http", "https")
_SHA256 = re.compile(r"[a-f0-9]{64}")
_MAX_SECRET_NAME = 253
_MAX_PLUGIN_NAME = 256
_MAX_ENV = 256
_MAX_ENV_NAME = 256
_MAX_ENV_VALUE = 2048


def _url_problem(url: str | None) -> str | None:
    if not url:
        return "url is required: an OCI image (oci://registry/image:tag), a file:// path or an http(s):// URL"
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return f"invalid url {url!r}: spaces and control characters are not allowed"
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme and scheme not in _SCHEMES:
        return f"url scheme {scheme!r} is not supported: use oci://, file://, http:// or https://"
    if not scheme and not url.startswith("/"):
        # Istio reads a scheme-less reference such as docker.io/org/plugin:v1 as http://<reference>.
        parts = urlsplit("http://" + url)
        scheme = "http"
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
    except ValueError:
        return f"invalid port in url {url!r}: a number between 1 and 65535"
    if scheme in ("oci", "http", "https") and not parts.hostname:
        return f"url {url!r} has no host: write it as {scheme}://host/path"
    return None


def check_wasm_url(f: Findings, url: str | None, *, path: str) -> None:
    """Where the module comes from: required, and a URL or image reference of a supported scheme."""
    if problem := _url_problem(url):
        f.error(path, problem)


def _check_length(f: Findings, value: str | None, *, path: str, limit: int, what: str) -> None:
    # The CRD gives these strings minLength 1: an empty string is an error, unlike leaving the field out.
    if value is None:
        return
    if not value:
        f.error(path, f"{what} must not be empty: leave the field out or give 1 to {limit} characters")
    elif len(value) > limit:
        f.error(path, f"{what} must be at most {limit} characters, got {len(value)}")


def check_vm_config(f: Findings, vm_config: VmConfig | None, *, path: str) -> None:
    """The VM's environment: named variables, each once, with a value only when valueFrom is INLINE."""
    if vm_config is None:
        return
    env_path = join(path, "env")
    if len(vm_config.env) > _MAX_ENV:
        f.error(env_path, f"at most {_MAX_ENV} environment variables are allowed, found {len(vm_config.env)}")
    seen: set[str] = set()
    for k, env in enumerate(vm_config.env):
        item = join(env_path, k)
        if not env.name:
            f.error(join(item, "name"), "environment variable name is required")
        elif len(env.name) > _MAX_ENV_NAME:
            f.error(join(item, "name"), f"environment variable name must be at most {_MAX_ENV_NAME} characters")
        elif env.name in seen:
            f.error(join(item, "name"), f"duplicate environment variable {env.name!r}; set each variable once")
        seen.add(env.name or "")
        if env.value and (env.value_from or "INLINE") != "INLINE":
            f.error(
                join(item, "value"),
                "value may only be set when valueFrom is INLINE; with valueFrom HOST the value is read from the "
                "proxy's environment variable of the same name",
            )
        elif env.value and len(env.value) > _MAX_ENV_VALUE:
            f.error(join(item, "value"), f"environment variable value must be at most {_MAX_ENV_VALUE} characters")


def check_wasm_module(f: Findings, module: WasmPlugin | WasmConfig, *, path: str) -> None:
    """url, sha256, imagePullSecret, pluginName and vmConfig of a WasmPlugin spec or a TrafficExtension's wasm."""
    check_wasm_url(f, module.url, path=join(path, "url"))
    if module.sha256 and not _SHA256.fullmatch(module.sha256):
        f.error(
            join(path, "sha256"),
            f"sha256 must be 64 lower-case hex digits (the module's SHA-256 checksum), got {len(module.sha256)} characters",
        )
    _check_length(
        f, module.image_pull_secret, path=join(path, "imagePullSecret"), limit=_MAX_SECRET_NAME, what="imagePullSecret"
    )
    _check_length(f, module.plugin_name, path=join(path, "pluginName"), limit=_MAX_PLUGIN_NAME, what="pluginName")
    check_vm_config(f, module.vm_config, path=join(path, "vmConfig"))


def check_traffic_selectors(f: Findings, selectors: Sequence[TrafficSelector], *, path: str) -> None:
    """Destination ports of each traffic selector: 1..65535, each once."""
    for i, selector in enumerate(selectors):
        seen: set[int] = set()
        for j, port in enumerate(selector.ports):
            port_path = join(path, i, "ports", j, "number")
            if port.number is None:
                f.error(port_path, "port number is required: a destination port between 1 and 65535")
            elif problem := check_port(port.number):
                f.error(port_path, problem)
            elif port.number in seen:
                # ports is a list-map keyed by number in the CRD: Kubernetes rejects a repeated key.
                f.error(port_path, f"duplicate port {port.number}; list each port once")
            if port.number is not None:
                seen.add(port.number)
