"""ProxyConfig rules, and the checks of ``istio.type.v1beta1`` selectors and target references.

Istio's webhook checks the selector (no empty keys, no wildcards, a warning
when it has no labels) and that ``concurrency`` is not negative. A target
reference obeys the CRD schema of PolicyTargetReference (kind and name
required, no cross-namespace reference) and should name a kind policies
attach to; a resource uses either a selector or target references.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from malla.api.networking.proxy_config import PolicyTargetReference, ProxyConfig
from malla.config.validation import Finding, Findings, ValidationContext
from malla.config.validation.common import join
from malla.config.validation.service_entry import check_selector_labels

# Istio publishes these proxy image flavours; others exist only if a registry carries them.
IMAGE_TYPES = ("default", "debug", "distroless")
# group -> kinds a policy can target (Istio's allowedTargetRefs; "" is the core group).
TARGET_KINDS = {
    "": ("Service",),
    "networking.istio.io": ("ServiceEntry",),
    "gateway.networking.k8s.io": ("Gateway", "GatewayClass"),
}
_GROUP = re.compile(r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_KIND = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")


def check_target_ref(ref: PolicyTargetReference, path: str, f: Findings) -> None:
    group, kind = ref.group or "", ref.kind or ""
    if not kind:
        f.error(join(path, "kind"), "kind is required, such as 'Gateway' or 'Service'")
    elif len(kind) > 63 or not _KIND.match(kind):
        f.error(join(path, "kind"), f"invalid kind {kind!r}: letters, digits and '-', starting with a letter")
    if not ref.name:
        f.error(join(path, "name"), "name is required: the name of the targeted resource")
    elif len(ref.name) > 253:
        f.error(join(path, "name"), "name is longer than 253 characters")
    if ref.namespace:
        f.error(join(path, "namespace"), "namespace must not be set: cross-namespace references are not supported; "
                "the target is looked up in the policy's own namespace")
    if len(group) > 253 or not _GROUP.match(group):
        f.error(join(path, "group"), f"invalid group {group!r}: a DNS subdomain such as 'gateway.networking.k8s.io'")
    elif kind and kind not in TARGET_KINDS.get(group, ()):
        allowed = ", ".join(f"{g or 'core'}/{k}" for g, ks in TARGET_KINDS.items() for k in ks)
        # A warning: the webhook accepts any kind here, but nothing attaches to other kinds.
        f.warning(path, f"policies do not attach to {group or 'core'}/{kind}: target one of {allowed}")


def check_match_labels_selector(labels: dict[str, str], path: str, f: Findings) -> None:
    """istio.type.v1beta1.WorkloadSelector.matchLabels: as any selector; empty means every workload."""
    check_selector_labels(labels, join(path, "matchLabels"), f)
    if not labels:
        f.warning(path, "workload selector has no labels: it selects every workload in the namespace")


def validate(spec: ProxyConfig, ctx: ValidationContext) -> Iterable[Finding]:
    f = Findings()
    if spec.selector is not None:
        check_match_labels_selector(spec.selector.match_labels, "spec.selector", f)
    if spec.target_ref is not None:
        check_target_ref(spec.target_ref, "spec.targetRef", f)
        if spec.selector is not None:
            f.error("spec", "only one of selector or targetRef may be set")
    if spec.concurrency is not None and spec.concurrency < 0:
        f.error("spec.concurrency", f"concurrency must be 0 (use all cores) or more, got {spec.concurrency}")
    for name, value in spec.environment_variables.items():
        if len(value) > 2048:
            f.error(f"spec.environmentVariables[{name}]", "value is longer than 2048 characters")
    image_type = spec.image.image_type if spec.image else None
    if image_type and image_type not in IMAGE_TYPES:
        f.warning("spec.image.imageType", f"unrecognised image type {image_type!r}: Istio publishes "
                  f"{', '.join(IMAGE_TYPES)}; others work only if your registry carries them")
    return f
