"""Labels, workload selectors and policy targets: how a resource says which workloads it is for.

- Labels a workload carries (WorkloadEntry and ServiceEntry endpoint
  labels, WorkloadGroup metadata, DestinationRule subsets, VirtualService
  sourceLabels) follow Istio's ``labels.Instance.Validate``: Kubernetes
  label syntax, with upper case allowed in the key's DNS prefix.
- A workload selector (``selector.matchLabels`` of the policy kinds,
  ``workloadSelector.labels`` of the networking kinds) is checked as
  Istio's webhook and CRD schema do: no empty key, no '*' in a key or a
  value (not even a value of '*' alone: labels match exactly), values of at
  most 63 characters, at most 4096 labels. A selector label that no
  workload could carry is accepted by Istio but never matches: a warning.
- ``targetRef``/``targetRefs`` follow the CRD of PolicyTargetReference;
  where Istio's webhook checks the kind (the security, telemetry and
  extensions kinds) an unsupported kind is an error, elsewhere a warning.
  At most one of selector, targetRef and targetRefs is set.

These checks record their own findings at the paths they are given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from malla.api.networking.destination_rule import MatchLabelsSelector
from malla.api.networking.destination_rule import WorkloadSelector as LabelsSelector
from malla.api.security.common import PolicyTargetReference, WorkloadSelector
from malla.config.validation import Findings
from malla.config.validation.common import DNS1123_LABEL_FORMAT, DNS1123_LABEL_MAX, join, key

_QUALIFIED = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY = re.compile(rf"((?:{DNS1123_LABEL_FORMAT}(?:\.{DNS1123_LABEL_FORMAT})*)/)?({_QUALIFIED})")
_LABEL_VALUE = re.compile(rf"(?:{_QUALIFIED})?")
_PREFIX_MAX = 253
_MAX_SELECTOR_LABELS = 4096
_MAX_TARGET_REFS = 16

# (canonical group, kind) a targetRef may name: Istio's allowedTargetRefs.
_TARGET_KINDS = (
    ("core", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
)
_TARGET_KINDS_TEXT = ", ".join(f"{g}/{k}" for g, k in _TARGET_KINDS)
# The CRD schema of istio.type.v1beta1.PolicyTargetReference.
_GROUP = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*")
_KIND = re.compile(r"[a-zA-Z](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?")
_NAME_MAX = 253


# --- Labels ---------------------------------------------------------------------------


def _label_key_problem(name: str) -> str | None:
    match = _LABEL_KEY.fullmatch(name)
    if match and len(match.group(2)) <= DNS1123_LABEL_MAX and len(match.group(1) or "/") - 1 <= _PREFIX_MAX:
        return None
    return (
        f"invalid label key {name!r}: an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' "
        "or '.', starting and ending with a letter or digit (such as 'app' or 'example.com/tier')"
    )


def _label_value_problem(name: str, value: str) -> str | None:
    if _LABEL_VALUE.fullmatch(value):
        return None
    return (
        f"invalid label value {value!r} for {name!r}: letters, digits, '-', '_' or '.', starting and ending "
        "with a letter or digit, or empty"
    )


def check_labels(f: Findings, labels: Mapping[str, str], *, path: str) -> None:
    """Istio's labels.Instance.Validate: every key and value in Kubernetes label syntax."""
    for name, value in labels.items():
        for problem in (_label_key_problem(name), _label_value_problem(name, value)):
            if problem:
                f.error(key(path, name), problem)


# --- Workload selectors ------------------------------------------------------------------

# istio.type.v1beta1.WorkloadSelector and DestinationRule's selector say matchLabels; the
# networking kinds' WorkloadSelector (Sidecar, ServiceEntry, EnvoyFilter) says labels.
Selector = WorkloadSelector | MatchLabelsSelector | LabelsSelector


def _labels_of(selector: Selector) -> tuple[str, Mapping[str, str]]:
    """The selector's label map and the name of its field."""
    if isinstance(selector, LabelsSelector):
        return "labels", selector.labels
    return "matchLabels", selector.match_labels


def _selector_label_error(name: str, value: str) -> str | None:
    if not name:
        return f"empty label key in selector (value {value!r}): every label needs a key"
    if "*" in name or "*" in value:
        return (
            f"wildcard is not supported in selector {name}={value}: labels are matched exactly, "
            "write the full key and value"
        )
    if len(value) > DNS1123_LABEL_MAX:
        return f"label value for {name!r} is longer than 63 characters: at most 63 are allowed"
    return None


def check_workload_selector(f: Findings, selector: Selector | None, *, path: str) -> None:
    """The labels of a workload selector, if there is one (``path`` is the selector's own path)."""
    if selector is None:
        return
    labels_field, labels = _labels_of(selector)
    labels_path = join(path, labels_field)
    if not labels:
        f.warning(
            path,
            "the workload selector has no labels: a selector without labels selects every workload in the "
            "namespace; add labels or remove the selector",
        )
        return
    if len(labels) > _MAX_SELECTOR_LABELS:
        f.error(labels_path, f"at most {_MAX_SELECTOR_LABELS} labels are allowed, found {len(labels)}")
    for name, value in labels.items():
        if error := _selector_label_error(name, value):
            f.error(key(labels_path, name), error)
            continue
        for problem in (_label_key_problem(name), _label_value_problem(name, value)):
            if problem:
                f.warning(key(labels_path, name), f"{problem}; no workload can carry it, so the selector never matches")


# --- Policy targets ------------------------------------------------------------------------


def _check_target_kind(f: Findings, ref: PolicyTargetReference, *, path: str, enforced: bool) -> None:
    group, kind = ref.group or "", ref.kind or ""
    if len(group) > _NAME_MAX or (group and not _GROUP.fullmatch(group)):
        f.error(join(path, "group"), f"invalid group {group!r}: a DNS subdomain such as 'gateway.networking.k8s.io'")
        return
    if not kind:
        f.error(join(path, "kind"), f"targetRef kind is required; one of {_TARGET_KINDS_TEXT}")
        return
    if len(kind) > DNS1123_LABEL_MAX or not _KIND.fullmatch(kind):
        f.error(join(path, "kind"), f"invalid kind {kind!r}: letters, digits and '-', starting with a letter")
        return
    canonical = group or "core"
    if (canonical, kind) in _TARGET_KINDS:
        return
    if enforced:
        f.error(
            join(path, "kind"),
            f"targetRef to {canonical}/{kind} is not supported; it must be one of {_TARGET_KINDS_TEXT} "
            "(the group of a Service is '' or 'core')",
        )
    else:
        # The webhook accepts any kind for these kinds, but nothing attaches to other kinds.
        f.warning(path, f"policies do not attach to {canonical}/{kind}: target one of {_TARGET_KINDS_TEXT}")


def check_target_ref(f: Findings, ref: PolicyTargetReference, *, path: str, kinds_enforced: bool = True) -> None:
    """One targetRef: a kind policies attach to, a name, and no namespace (no cross-namespace references)."""
    if not ref.name:
        f.error(join(path, "name"), "targetRef name is required: the name of the Gateway, Service or ServiceEntry")
    elif len(ref.name) > _NAME_MAX:
        f.error(join(path, "name"), f"targetRef name is longer than {_NAME_MAX} characters")
    if ref.namespace:
        f.error(
            join(path, "namespace"),
            f"targetRef namespace {ref.namespace!r} is not allowed: cross-namespace references are not supported, "
            "leave it unset (the policy's namespace is used)",
        )
    _check_target_kind(f, ref, path=path, enforced=kinds_enforced)


def check_selection(
    f: Findings,
    *,
    selector: Selector | None,
    target_ref: PolicyTargetReference | None = None,
    target_refs: Sequence[PolicyTargetReference] = (),
    selector_field: str = "selector",
    kinds_enforced: bool = True,
) -> None:
    """At most one of the selector, targetRef and targetRefs, and each of them well formed.

    Kinds without a single targetRef (TrafficExtension, EnvoyFilter) leave
    ``target_ref`` out; EnvoyFilter names its selector ``workloadSelector``.
    """
    present = [
        name
        for name, is_set in (
            (selector_field, selector is not None),
            ("targetRef", target_ref is not None),
            ("targetRefs", bool(target_refs)),
        )
        if is_set
    ]
    if len(present) > 1:
        f.error(
            join("spec", present[-1]),
            f"only one of {', '.join(present[:-1])} and {present[-1]} may be set: they are alternative ways "
            "to choose the workloads",
        )
    check_workload_selector(f, selector, path=join("spec", selector_field))
    if target_ref is not None:
        check_target_ref(f, target_ref, path="spec.targetRef", kinds_enforced=kinds_enforced)
    if len(target_refs) > _MAX_TARGET_REFS:
        f.error("spec.targetRefs", f"at most {_MAX_TARGET_REFS} targetRefs are allowed, found {len(target_refs)}")
    for i, ref in enumerate(target_refs):
        check_target_ref(f, ref, path=join("spec.targetRefs", i), kinds_enforced=kinds_enforced)
