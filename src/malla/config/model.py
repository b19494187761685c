"""What the loader produces: typed Istio resources and the Kubernetes objects kept aside.

``Config`` is one Istio resource (identity + typed spec + where it came
from). ``KubeObject`` is any other Kubernetes object found beside it
(Service, Deployment, Namespace, ...): never a failure, kept for the
analyzers and the registry. ``Diagnostic`` is one problem reported to the
user, naming file, document, resource and field. Pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from malla.api.base import IstioModel

DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class Origin:
    """Where a document came from: file path ('-' for stdin), 1-based document index, line."""

    path: str
    document: int
    line: int | None = None

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where} (document {self.document})"


@dataclass(frozen=True, order=True)
class ConfigKey:
    """Identity of a resource: kind, namespace, name (group kept for uniqueness)."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True, eq=False)
class Config:
    """One Istio resource with its typed spec."""

    api_version: str
    kind: str
    name: str
    namespace: str
    spec: IstioModel
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    origin: Origin | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def group(self) -> str:
        return self.api_version.partition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.partition("/")[2]

    @property
    def key(self) -> ConfigKey:
        return ConfigKey(self.group, self.kind, self.namespace, self.name)

    @property
    def ref(self) -> str:
        """Istio's way to name a resource in messages: 'VirtualService default/reviews'."""
        return f"{self.kind} {self.namespace}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if self.labels:
            meta["labels"] = dict(self.labels)
        if self.annotations:
            meta["annotations"] = dict(self.annotations)
        return {"apiVersion": self.api_version, "kind": self.kind, "metadata": meta, "spec": self.spec.to_dict()}


@dataclass(frozen=True, eq=False)
class KubeObject:
    """A Kubernetes object that is not an Istio kind, kept as decoded."""

    api_version: str
    kind: str
    name: str
    namespace: str | None
    body: dict[str, Any]
    origin: Origin | None = None

    @property
    def labels(self) -> dict[str, str]:
        return dict((self.body.get("metadata") or {}).get("labels") or {})

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


Level = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Diagnostic:
    """One problem for the user: what, where (file, document, resource, field), how bad."""

    level: Level
    message: str
    origin: Origin | None = None
    resource: str | None = None  # "VirtualService default/reviews"
    field: str | None = None  # "spec.http[0].route[1].weight"
    code: str | None = None  # analyzer code, e.g. "IST0101"

    def format(self) -> str:
        """Compiler style, so editors can jump to it: 'file:line: error: Kind ns/name (document N) field: message'."""
        if self.code:
            return self.format_istioctl()
        head = ""
        if self.origin:
            head = f"{self.origin.path}:{self.origin.line}: " if self.origin.line else f"{self.origin.path}: "
        where = []
        if self.resource:
            where.append(self.resource)
        if self.origin and self.origin.document:
            where.append(f"(document {self.origin.document})")
        subject = " ".join(where)
        body = f"{self.field}: {self.message}" if self.field else self.message
        return f"{head}{self.level}: {subject + ': ' if subject else ''}{body}"

    def format_istioctl(self) -> str:
        """istioctl analyze's form: 'Error [IST0101] (VirtualService default/reviews file.yaml:12) text'."""
        level = {"error": "Error", "warning": "Warning", "info": "Info"}[self.level]
        where = []
        if self.resource:
            where.append(self.resource)
        if self.origin:
            where.append(f"{self.origin.path}:{self.origin.line}" if self.origin.line else self.origin.path)
        paren = f" ({' '.join(where)})" if where else ""
        return f"{level} [{self.code}]{paren} {self.message}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"level": self.level, "message": self.message}
        if self.code:
            out["code"] = self.code
        if self.origin:
            out["file"] = self.origin.path
            out["document"] = self.origin.document
            if self.origin.line is not None:
                out["line"] = self.origin.line
        if self.resource:
            out["resource"] = self.resource
        if self.field:
            out["field"] = self.field
        return out
