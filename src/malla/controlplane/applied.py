"""``malla apply`` / ``malla delete`` on the control plane side.

Applied resources are files too: each one is written, atomically, to
``<home>/config/applied/<namespace>/<kind>-<name>.yaml`` and loaded through
the same DirectorySource as the user's config directory, so a restart keeps
them and one code path decides what the mesh runs on. Invalid input changes
nothing: every document is validated first and all errors are returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from malla.config.model import Config, Diagnostic
from malla.config.parse import parse_text
from malla.config.source import DirectorySource


@dataclass
class ApplyOutcome:
    results: list[dict[str, str]] = field(default_factory=list)  # {"resource": ref, "action": created|configured|unchanged|deleted|not found}
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(d.level == "error" for d in self.diagnostics)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "results": self.results, "diagnostics": [d.to_json() for d in self.diagnostics]}


def applied_path(root: Path, config: Config) -> Path:
    return root / config.namespace / f"{config.kind.lower()}-{config.name}.yaml"


def apply_text(text: str, *, source: DirectorySource, root: Path, path_label: str, default_namespace: str = "default") -> ApplyOutcome:
    """Validate every document; if all are valid, write and load them."""
    parsed = parse_text(text, path=path_label, default_namespace=default_namespace)
    outcome = ApplyOutcome(diagnostics=list(parsed.diagnostics))
    for cfg in parsed.configs:
        owner = source.owner_of(cfg.key)
        if owner is not None and root not in owner.parents:
            outcome.diagnostics.append(
                Diagnostic("error", f"{cfg.ref} comes from the config directory file {owner}: edit that file instead", cfg.origin, cfg.ref)
            )
    if not outcome.ok:
        return outcome
    for cfg in parsed.configs:
        before = source.store.get(cfg.kind, cfg.namespace, cfg.name)
        path = applied_path(root, cfg)
        _write_atomically(path, _document(cfg))
        source.load_file(path)
        problems = source.problems.get(str(path), [])
        outcome.diagnostics.extend(d for d in problems if d.level == "error")
        if before is None:
            action = "created"
        elif before.to_dict() == cfg.to_dict():
            action = "unchanged"
        else:
            action = "configured"
        outcome.results.append({"resource": cfg.ref, "action": action})
    if parsed.kube:
        outcome.diagnostics.append(
            Diagnostic("warning", f"{len(parsed.kube)} Kubernetes object(s) skipped: malla applies Istio kinds only", None)
        )
    return outcome


def delete_text(text: str, *, source: DirectorySource, root: Path, path_label: str, default_namespace: str = "default") -> ApplyOutcome:
    parsed = parse_text(text, path=path_label, default_namespace=default_namespace)
    # Deleting needs only identities: schema errors in the spec do not block it.
    outcome = ApplyOutcome(diagnostics=[d for d in parsed.diagnostics if d.field is None or not d.field.startswith("spec")])
    configs = list(parsed.configs)
    if not outcome.ok:
        return outcome
    for cfg in configs:
        path = applied_path(root, cfg)
        owner = source.owner_of(cfg.key)
        if owner is not None and root not in owner.parents:
            outcome.diagnostics.append(
                Diagnostic("error", f"{cfg.ref} comes from the config directory file {owner}: remove it there", cfg.origin, cfg.ref)
            )
            continue
        if path.exists():
            path.unlink()
            source.remove_file(path)
            outcome.results.append({"resource": cfg.ref, "action": "deleted"})
        else:
            outcome.results.append({"resource": cfg.ref, "action": "not found"})
    return outcome


def _document(cfg: Config) -> dict[str, Any]:
    doc = dict(cfg.raw) if cfg.raw else cfg.to_dict()
    meta = dict(doc.get("metadata") or {})
    meta["namespace"] = cfg.namespace
    doc["metadata"] = meta
    doc.pop("status", None)
    return doc


def _write_atomically(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    y = YAML(typ="safe", pure=True)
    y.default_flow_style = False
    with tmp.open("w", encoding="utf-8") as fh:
        y.dump(doc, fh)
    tmp.replace(path)
