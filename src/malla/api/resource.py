"""The Kubernetes-style envelope around every Istio spec."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from malla.api.base import Int64, IstioModel, Str


class ObjectMeta(IstioModel):
    """The metadata fields Istio config carries (Kubernetes ObjectMeta)."""

    name: Str | None = None
    generate_name: Str | None = None
    namespace: Str | None = None
    labels: dict[str, Str] = Field(default_factory=dict)
    annotations: dict[str, Str] = Field(default_factory=dict)
    uid: Str | None = None
    resource_version: Str | None = None
    generation: Int64 | None = None
    creation_timestamp: Any = None
    deletion_timestamp: Any = None
    deletion_grace_period_seconds: Int64 | None = None
    finalizers: list[Str] = Field(default_factory=list)
    owner_references: list[dict[str, Any]] = Field(default_factory=list)
    managed_fields: list[dict[str, Any]] = Field(default_factory=list)
    self_link: Str | None = None
