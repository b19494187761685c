"""The metadata rules Istio's webhook applies to every kind: dry-run is AuthorizationPolicy's alone, always-reject refuses."""

from __future__ import annotations

import pytest

from malla.config.parse import parse_text

# The names users write (Istio's annotation.IoIstioDryRun and constants.AlwaysReject).
DRY_RUN_ANNOTATION = "istio.io/dry-run"
ALWAYS_REJECT_ANNOTATION = "internal.istio.io/webhook-always-reject"

# One valid resource of each of several kinds, so that only the metadata can be wrong.
VALID_SPECS = {
    ("networking.istio.io/v1", "VirtualService"): 'hosts: ["reviews"]\n  http: [{route: [{destination: {host: reviews}}]}]',
    ("networking.istio.io/v1", "DestinationRule"): "host: reviews",
    ("security.istio.io/v1", "PeerAuthentication"): "mtls: {mode: STRICT}",
    ("telemetry.istio.io/v1", "Telemetry"): "tracing: [{randomSamplingPercentage: 10}]",
    ("security.istio.io/v1", "AuthorizationPolicy"): "action: DENY\n  rules: [{}]",
}


def document(api_version: str, kind: str, *, annotations: dict[str, str]) -> str:
    lines = "".join(f'\n    "{k}": "{v}"' for k, v in annotations.items())
    meta = f"\n  annotations:{lines}" if annotations else ""
    spec = VALID_SPECS[(api_version, kind)]
    return f"apiVersion: {api_version}\nkind: {kind}\nmetadata:\n  name: r\n  namespace: default{meta}\nspec:\n  {spec}\n"


def errors(api_version: str, kind: str, **annotations: str) -> list[tuple[str | None, str]]:
    result = parse_text(document(api_version, kind, annotations=annotations), path="r.yaml")
    return [(d.field, d.message) for d in result.errors]


@pytest.mark.parametrize(("api_version", "kind"), list(VALID_SPECS))
def test_resources_without_the_annotations_are_accepted(api_version, kind):
    assert errors(api_version, kind) == []


@pytest.mark.parametrize(("api_version", "kind"), [k for k in VALID_SPECS if k[1] != "AuthorizationPolicy"])
def test_dry_run_annotation_is_refused_on_kinds_other_than_authorization_policy(api_version, kind):
    found = errors(api_version, kind, **{DRY_RUN_ANNOTATION: "true"})
    assert [field for field, _ in found] == [f"metadata.annotations[{DRY_RUN_ANNOTATION}]"], found
    assert "only supported on AuthorizationPolicy" in found[0][1] and kind in found[0][1]


def test_dry_run_annotation_is_accepted_on_an_authorization_policy():
    assert errors("security.istio.io/v1", "AuthorizationPolicy", **{DRY_RUN_ANNOTATION: "true"}) == []


@pytest.mark.parametrize(("api_version", "kind"), list(VALID_SPECS))
@pytest.mark.parametrize("value", ["true", "false", ""])
def test_always_reject_annotation_refuses_any_kind_whatever_its_value(api_version, kind, value):
    found = errors(api_version, kind, **{ALWAYS_REJECT_ANNOTATION: value})
    assert [field for field, _ in found] == [f"metadata.annotations[{ALWAYS_REJECT_ANNOTATION}]"], found
    assert "remove it" in found[0][1]


def test_metadata_errors_come_before_the_kinds_own_findings():
    text = document("networking.istio.io/v1", "DestinationRule", annotations={DRY_RUN_ANNOTATION: "true"})
    text = text.replace("host: reviews", "host: re_views")
    found = [d.field for d in parse_text(text, path="r.yaml").errors]
    assert found == [f"metadata.annotations[{DRY_RUN_ANNOTATION}]", "spec.host"]
