"""Semantic validation of Istio config, as Istio's validation webhook does it.

What comes in: one typed resource (its spec model plus name, namespace and
labels). What goes out: ``Finding``s, each an error or a warning with the
field path it is about (``spec.http[0].route[1].weight``) and what is
allowed. Schema errors (wrong types, unknown fields) are found earlier, by
the models; these are the rules the schema cannot say.

Each kind has one module here exposing ``validate(spec, ctx)``; ``_MODULES``
maps the kind name to it. Before the kind's rules, ``validate_spec`` applies
the metadata rules Istio's webhook applies to every kind. Checks several
kinds share live in ``common`` and the themed ``common_*`` modules.
Pure: no I/O.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

Level = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One problem in one resource: ``field`` is a path such as ``spec.http[0].timeout``."""

    level: Level
    field: str
    message: str


@dataclass(frozen=True)
class ValidationContext:
    """What a validator may know besides the spec: the resource's identity."""

    kind: str
    api_version: str
    name: str
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    root_namespace: str = "istio-system"


class Findings:
    """Collects findings with path helpers, so validators read as the rules they are.

    >>> f = Findings()
    >>> f.error("spec.http[0].route", "weights must sum to 100")
    """

    def __init__(self) -> None:
        self.items: list[Finding] = []

    def error(self, path: str, message: str) -> None:
        self.items.append(Finding("error", path, message))

    def warning(self, path: str, message: str) -> None:
        self.items.append(Finding("warning", path, message))

    def extend(self, findings: Iterable[Finding]) -> None:
        self.items.extend(findings)

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


Validator = Callable[[Any, ValidationContext], Iterable[Finding]]

_MODULES = {
    "VirtualService": "virtual_service",
    "DestinationRule": "destination_rule",
    "Gateway": "gateway",
    "ServiceEntry": "service_entry",
    "WorkloadEntry": "workload_entry",
    "WorkloadGroup": "workload_group",
    "Sidecar": "sidecar",
    "EnvoyFilter": "envoy_filter",
    "ProxyConfig": "proxy_config",
    "AuthorizationPolicy": "authorization_policy",
    "PeerAuthentication": "peer_authentication",
    "RequestAuthentication": "request_authentication",
    "Telemetry": "telemetry",
    "WasmPlugin": "wasm_plugin",
    "TrafficExtension": "traffic_extension",
}


def validator_for(kind: str) -> Validator | None:
    module = _MODULES.get(kind)
    if module is None:
        return None
    try:
        mod = importlib.import_module(f"{__name__}.{module}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{module}":
            return None
        raise
    return mod.validate


# Istio's metadata rules (pkg/config/validation validateMetadata): dry-run is an
# AuthorizationPolicy feature; the always-reject annotation exists to test the webhook.
DRY_RUN_ANNOTATION = "istio.io/dry-run"
ALWAYS_REJECT_ANNOTATION = "internal.istio.io/webhook-always-reject"


def _check_metadata(ctx: ValidationContext) -> Iterator[Finding]:
    if DRY_RUN_ANNOTATION in ctx.annotations and ctx.kind != "AuthorizationPolicy":
        yield Finding(
            "error",
            f"metadata.annotations[{DRY_RUN_ANNOTATION}]",
            f"the {DRY_RUN_ANNOTATION} annotation is only supported on AuthorizationPolicy, not on {ctx.kind}: "
            "remove it",
        )
    if ALWAYS_REJECT_ANNOTATION in ctx.annotations:
        yield Finding(
            "error",
            f"metadata.annotations[{ALWAYS_REJECT_ANNOTATION}]",
            f"the {ALWAYS_REJECT_ANNOTATION} annotation makes Istio refuse the resource whatever its value (it "
            "exists to test the validation webhook): remove it",
        )


def validate_spec(spec: Any, ctx: ValidationContext) -> list[Finding]:
    """All findings for one resource: the metadata rules first, then the kind's rules in the order they found them.

    Istio's webhook stops at a metadata error; here the kind's rules still run,
    so the user sees every problem of the resource at once.
    """
    findings = list(_check_metadata(ctx))
    check = validator_for(ctx.kind)
    if check is not None:
        findings.extend(check(spec, ctx))
    return findings
