"""Text in, typed resources and diagnostics out: Galley's decoding step.

Theory of operation: a YAML stream (YAML 1.2, duplicate keys rejected) is
split into documents; each document is one Kubernetes-style object or a
``List`` of them. Istio kinds become ``Config`` (spec validated by its
pydantic model, then by the kind's semantic rules); every other object with
an ``apiVersion`` and ``kind`` is kept aside as a ``KubeObject``. Nothing is
ever dropped silently: each problem becomes a ``Diagnostic`` naming the file,
the document (1-based), the line, the resource and the field path.

Pure: the caller reads the file and passes its text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from malla.api.kinds import BY_GROUP_KIND, KindInfo
from malla.api.resource import ObjectMeta
from malla.config.errors import describe_pydantic_error
from malla.config.model import DEFAULT_NAMESPACE, Config, Diagnostic, KubeObject, Origin
from malla.config.validation import ValidationContext, validate_spec


@dataclass
class ParseResult:
    """Everything found in one stream: valid configs, kept-aside objects, problems."""

    configs: list[Config] = field(default_factory=list)
    kube: list[KubeObject] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    documents: int = 0
    invalid: int = 0  # Istio documents rejected (not in ``configs``)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.level == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def merge(self, other: ParseResult) -> None:
        self.configs.extend(other.configs)
        self.kube.extend(other.kube)
        self.diagnostics.extend(other.diagnostics)
        self.documents += other.documents
        self.invalid += other.invalid


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.version = (1, 2)
    y.allow_duplicate_keys = False
    return y


def parse_text(text: str, *, path: str, default_namespace: str = DEFAULT_NAMESPACE) -> ParseResult:
    """Parse a whole YAML (or JSON) stream; never raises for bad input."""
    result = ParseResult()
    if path.endswith(".json") and text.lstrip().startswith("{"):
        try:
            docs: list[Any] = [json.loads(text)]
        except json.JSONDecodeError as exc:
            result.diagnostics.append(
                Diagnostic("error", f"invalid JSON: {exc.msg}", Origin(path, 1, exc.lineno))
            )
            return result
        _parse_documents(iter(docs), path=path, default_namespace=default_namespace, result=result)
        return result
    try:
        _parse_documents(_yaml().load_all(text), path=path, default_namespace=default_namespace, result=result)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        result.diagnostics.append(
            Diagnostic("error", f"invalid YAML: {what}", Origin(path, result.documents + 1, line))
        )
    except YAMLError as exc:
        result.diagnostics.append(
            Diagnostic("error", f"invalid YAML: {exc}", Origin(path, result.documents + 1))
        )
    return result


def _parse_documents(docs: Iterator[Any], *, path: str, default_namespace: str, result: ParseResult) -> None:
    # load_all is lazy: a syntax error in document N surfaces after N-1 are parsed.
    for doc in docs:
        if doc is None:
            continue
        result.documents += 1
        origin = Origin(path, result.documents, _line_of(doc, ()))
        _parse_object(doc, origin=origin, prefix=(), default_namespace=default_namespace, result=result)


def _parse_object(
    doc: Any, *, origin: Origin, prefix: tuple[Any, ...], default_namespace: str, result: ParseResult
) -> None:
    where = _path_text(prefix)
    if not isinstance(doc, dict):
        result.diagnostics.append(
            Diagnostic("error", f"expected a mapping with apiVersion and kind, got {_type_name(doc)}", origin, field=where or None)
        )
        return
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
        missing = [k for k, v in (("apiVersion", api_version), ("kind", kind)) if not isinstance(v, str) or not v]
        result.diagnostics.append(
            Diagnostic("error", f"missing or invalid {' and '.join(missing)}: every document needs both", origin, field=where or None)
        )
        return
    if kind == "List" or (kind.endswith("List") and isinstance(doc.get("items"), list)):
        for i, item in enumerate(doc.get("items") or []):
            sub = Origin(origin.path, origin.document, _line_of(doc, ("items", i)))
            _parse_object(item, origin=sub, prefix=(*prefix, "items", i), default_namespace=default_namespace, result=result)
        return
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    info = BY_GROUP_KIND.get((group, kind))
    if info is None:
        if group.endswith(".istio.io"):
            result.diagnostics.append(
                Diagnostic("warning", f"unknown Istio kind {api_version} {kind}: kept aside, not applied", origin, field=where or None)
            )
        result.kube.append(_kube_object(doc, api_version, kind, origin))
        return
    config, diags = decode_config(doc, info=info, origin=origin, prefix=prefix, default_namespace=default_namespace)
    result.diagnostics.extend(diags)
    if config is None or any(d.level == "error" for d in diags):
        result.invalid += 1
    else:
        result.configs.append(config)


def decode_config(
    doc: Any,
    *,
    info: KindInfo,
    origin: Origin,
    prefix: tuple[Any, ...] = (),
    default_namespace: str = DEFAULT_NAMESPACE,
) -> tuple[Config | None, list[Diagnostic]]:
    """Decode one Istio object: schema (model) first, then the kind's rules."""
    diags: list[Diagnostic] = []
    api_version, kind = doc["apiVersion"], doc["kind"]
    version = api_version.rpartition("/")[2]
    plain = to_plain(doc)
    name = _meta_str(plain, "name") or "<unnamed>"
    namespace = _meta_str(plain, "namespace") or default_namespace
    ref = f"{kind} {namespace}/{name}"

    def add(level: str, message: str, loc: tuple[Any, ...], shown: str | None = None) -> None:
        line = _line_of(doc, loc) or origin.line
        text = shown if shown is not None else _path_text(loc)
        if prefix:
            text = f"{_path_text(prefix)}.{text}"
        diags.append(
            Diagnostic(level, message, Origin(origin.path, origin.document, line), ref, text or None)  # type: ignore[arg-type]
        )

    if version not in info.versions:
        add("error", f"unsupported apiVersion {api_version!r} for {kind}: use one of {', '.join(info.api_versions)}", ("apiVersion",))
        return None, diags
    extra = sorted(set(plain) - {"apiVersion", "kind", "metadata", "spec", "status"})
    for key in extra:
        add("error", f"unknown field {key!r}: a {kind} has apiVersion, kind, metadata, spec and status", (key,))
    try:
        meta = ObjectMeta.model_validate(plain.get("metadata") or {})
    except ValidationError as exc:
        for err in exc.errors():
            add("error", describe_pydantic_error(err, ObjectMeta), ("metadata", *err["loc"]))
        return None, diags
    if not meta.name and not meta.generate_name:
        add("error", "metadata.name is required", ("metadata",))
    spec_raw = plain.get("spec")
    if spec_raw is None:
        spec_raw = {}
    if not isinstance(spec_raw, dict):
        add("error", f"spec must be a mapping, got {_type_name(spec_raw)}", ("spec",))
        return None, diags
    try:
        spec = info.spec_model.model_validate(spec_raw)
    except ValidationError as exc:
        for err in exc.errors():
            add("error", describe_pydantic_error(err, info.spec_model), ("spec", *err["loc"]))
        return None, diags
    config = Config(
        api_version=api_version,
        kind=kind,
        name=meta.name or meta.generate_name or "",
        namespace=meta.namespace or default_namespace,
        spec=spec,
        labels=dict(meta.labels),
        annotations=dict(meta.annotations),
        origin=origin,
        raw=plain,
    )
    ctx = ValidationContext(
        kind=kind,
        api_version=api_version,
        name=config.name,
        namespace=config.namespace,
        labels=config.labels,
        annotations=config.annotations,
    )
    for finding in validate_spec(spec, ctx):
        add(finding.level, finding.message, _split_path(finding.field), finding.field)
    return config, diags


def _kube_object(doc: Any, api_version: str, kind: str, origin: Origin) -> KubeObject:
    plain = to_plain(doc)
    return KubeObject(
        api_version=api_version,
        kind=kind,
        name=_meta_str(plain, "name") or "",
        namespace=_meta_str(plain, "namespace"),
        body=plain,
        origin=origin,
    )


def to_plain(node: Any) -> Any:
    """ruamel's commented containers -> plain dicts, lists and scalars."""
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, (int, float, bool)) else k: to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def _meta_str(plain: dict[str, Any], key: str) -> str | None:
    meta = plain.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get(key), str):
        return meta[key]
    return None


def _line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest key of ``loc`` that exists in the ruamel tree."""
    line = None
    if isinstance(node, (CommentedMap, CommentedSeq)) and getattr(node, "lc", None) is not None:
        line = node.lc.line + 1 if node.lc.line is not None else None
    for part in loc:
        try:
            if isinstance(node, CommentedMap) and part in node:
                line = node.lc.key(part)[0] + 1
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                line = node.lc.item(part)[0] + 1
                node = node[part]
            else:
                break
        except (KeyError, TypeError, AttributeError, IndexError):
            break
    return line


def _path_text(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_PATH_TOKEN = re.compile(r"\[([^\]]*)\]|([^.\[\]]+)")


def _split_path(path: str) -> tuple[Any, ...]:
    """'spec.http[0].route' -> ('spec', 'http', 0, 'route'); map keys in brackets may hold dots."""
    parts: list[Any] = []
    for bracket, name in _PATH_TOKEN.findall(path):
        if name:
            parts.append(name)
        else:
            parts.append(int(bracket) if bracket.isdigit() else bracket)
    return tuple(parts)


def _type_name(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"[:80]
    return type(value).__name__
