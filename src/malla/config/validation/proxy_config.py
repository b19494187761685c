"""ProxyConfig rules, as Istio's validation webhook and CRD schema apply them.

Istio's webhook checks the selector (no empty keys, no wildcards, a warning
when it has no labels) and that ``concurrency`` is not negative. The
``targetRef`` obeys the CRD schema of PolicyTargetReference (kind and name
required, no cross-namespace reference); the webhook accepts any kind
there, so a kind policies do not attach to is a warning. A resource uses
either a selector or a target reference (``common_selectors``).
"""

from __future__ import annotations

from collections.abc import Iterable

from malla.api.networking.proxy_config import ProxyConfig
from malla.config.validation import Finding, Findings, ValidationContext
from malla.config.validation.common_selectors import check_selection

# Istio publishes these proxy image flavours; others exist only if a registry carries them.
IMAGE_TYPES = ("default", "debug", "distroless")
_MAX_ENV_VALUE = 2048


def validate(spec: ProxyConfig, ctx: ValidationContext) -> Iterable[Finding]:
    f = Findings()
    check_selection(f, selector=spec.selector, target_ref=spec.target_ref, kinds_enforced=False)
    if spec.concurrency is not None and spec.concurrency < 0:
        f.error("spec.concurrency", f"concurrency must be 0 (use all cores) or more, got {spec.concurrency}")
    for name, value in spec.environment_variables.items():
        if len(value) > _MAX_ENV_VALUE:
            f.error(f"spec.environmentVariables[{name}]", f"value is longer than {_MAX_ENV_VALUE} characters")
    image_type = spec.image.image_type if spec.image else None
    if image_type and image_type not in IMAGE_TYPES:
        f.warning("spec.image.imageType", f"unrecognised image type {image_type!r}: Istio publishes "
                  f"{', '.join(IMAGE_TYPES)}; others work only if your registry carries them")
    return f
