"""Semantic rules of WasmPlugin, as Istio's validation webhook applies them.

The module ``url`` is required and must be an oci://, file://, http(s)://
URL or a scheme-less image reference (taken as http); ``sha256`` is 64
lower-case hex digits; VM environment variables are unique and carry a
value only when it is INLINE; traffic selector ports are 1..65535.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from malla.api.extensions.wasm_plugin import VmConfig, WasmPlugin
from malla.config.validation import Finding, Findings, ValidationContext
from malla.config.validation.authorization_policy import check_selection
from malla.config.validation.common import check_port, join

_SCHEMES = ("oci", "file", "http", "https")
_SHA256 = re.compile(r"[a-f0-9]{64}")
_MAX_SECRET_NAME = 253
_MAX_PLUGIN_NAME = 256
_MAX_ENV = 256
_MAX_ENV_NAME = 256
_MAX_ENV_VALUE = 2048


def validate(spec: WasmPlugin, ctx: ValidationContext) -> Iterable[Finding]:
    findings = Findings()
    check_selection(spec, findings)
    problem = _url_problem(spec.url)
    if problem:
        findings.error("spec.url", problem)
    if spec.sha256 and not _SHA256.fullmatch(spec.sha256):
        findings.error(
            "spec.sha256",
            f"sha256 must be 64 lower-case hex digits (the module's SHA-256 checksum), got {len(spec.sha256)} characters",
        )
    if spec.image_pull_secret and len(spec.image_pull_secret) > _MAX_SECRET_NAME:
        findings.error("spec.imagePullSecret", f"imagePullSecret must be at most {_MAX_SECRET_NAME} characters (a Secret name)")
    if spec.plugin_name and len(spec.plugin_name) > _MAX_PLUGIN_NAME:
        findings.error("spec.pluginName", f"pluginName must be at most {_MAX_PLUGIN_NAME} characters")
    if spec.vm_config is not None:
        _check_vm_config(spec.vm_config, findings)
    for i, selector in enumerate(spec.match):
        for j, port in enumerate(selector.ports):
            port_path = join("spec.match", i, "ports", j, "number")
            if port.number is None:
                findings.error(port_path, "port number is required: a destination port between 1 and 65535")
            elif problem := check_port(port.number):
                findings.error(port_path, problem)
    return findings


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


def _check_vm_config(vm_config: VmConfig, findings: Findings) -> None:
    if len(vm_config.env) > _MAX_ENV:
        findings.error("spec.vmConfig.env", f"at most {_MAX_ENV} environment variables are allowed, found {len(vm_config.env)}")
    seen: set[str] = set()
    for k, env in enumerate(vm_config.env):
        path = join("spec.vmConfig.env", k)
        if not env.name:
            findings.error(join(path, "name"), "environment variable name is required")
        elif len(env.name) > _MAX_ENV_NAME:
            findings.error(join(path, "name"), f"environment variable name must be at most {_MAX_ENV_NAME} characters")
        elif env.name in seen:
            findings.error(join(path, "name"), f"duplicate environment variable {env.name!r}; set each variable once")
        seen.add(env.name or "")
        if env.value and (env.value_from or "INLINE") != "INLINE":
            findings.error(
                join(path, "value"),
                "value may only be set when valueFrom is INLINE; with valueFrom HOST the value is read from the "
                "proxy's environment variable of the same name",
            )
        elif env.value and len(env.value) > _MAX_ENV_VALUE:
            findings.error(join(path, "value"), f"environment variable value must be at most {_MAX_ENV_VALUE} characters")
