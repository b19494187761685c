"""Test-only builder: YAML documents -> ``Config`` / ``KubeObject``, without the loader's validation.

Istio's analyzers run on whatever the API server accepted, including
resources its stricter validation would reject (duplicate matches,
conflicting ports); so do these tests. An Istio document whose spec the
typed model refuses is recorded in ``Loaded.rejected``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML

from malla.analysis import analyze
from malla.api.kinds import BY_GROUP_KIND
from malla.config.model import DEFAULT_NAMESPACE, Config, Diagnostic, KubeObject, Origin
from tests.conformance import ANALYZER_TESTDATA

TESTDATA = ANALYZER_TESTDATA


@dataclass
class Loaded:
    configs: list[Config] = field(default_factory=list)
    kube: list[KubeObject] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


def build(docs: list[Any], *, path: str = "<test>", into: Loaded | None = None) -> Loaded:
    out = into or Loaded()
    for index, doc in enumerate(docs, start=1):
        if not isinstance(doc, dict) or "kind" not in doc:
            continue
        if doc["kind"] == "List":
            build(list(doc.get("items") or ()), path=path, into=out)
            continue
        _add(doc, origin=Origin(path, index), out=out)
    return out


def _add(doc: dict[str, Any], *, origin: Origin, out: Loaded) -> None:
    api_version = str(doc.get("apiVersion", ""))
    kind = str(doc["kind"])
    meta = doc.get("metadata") or {}
    name = str(meta.get("name", ""))
    info = BY_GROUP_KIND.get((api_version.partition("/")[0], kind))
    if info is None:
        out.kube.append(KubeObject(api_version, kind, name, meta.get("namespace"), doc, origin))
        return
    try:
        spec = info.spec_model.model_validate(doc.get("spec") or {})
    except ValidationError as exc:
        out.rejected.append(f"{origin} {kind} {name}: {exc.errors()[0]['loc']} {exc.errors()[0]['msg']}")
        return
    out.configs.append(
        Config(
            api_version=api_version,
            kind=kind,
            name=name,
            namespace=meta.get("namespace") or DEFAULT_NAMESPACE,
            spec=spec,
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            origin=origin,
            raw=doc,
        )
    )


def load_text(text: str, *, path: str = "<test>") -> Loaded:
    return build(list(YAML(typ="safe", pure=True).load_all(text)), path=path)


def load_files(*names: str) -> Loaded:
    out = Loaded()
    for name in names:
        p = TESTDATA / name
        build(list(YAML(typ="safe", pure=True).load_all(p.read_text())), path=str(p), into=out)
    return out


def findings(text: str, analyzer: str, **options: Any) -> list[Diagnostic]:
    """Run one analyzer over a YAML stream; ``options`` go to ``analyze``."""
    loaded = load_text(text)
    assert loaded.rejected == []
    return analyze(loaded.configs, loaded.kube, analyzers=[analyzer], **options)


def pairs(found: list[Diagnostic]) -> list[tuple[str | None, str | None]]:
    return [(d.code, d.resource) for d in found]
