"""Which Telemetry resources apply to a proxy, and in what order (Istio's resolution rules)."""

from __future__ import annotations

from malla.pilot.snapshot import MeshConfig
from malla.telemetry.policy import applicable_telemetries
from tests.pilot.mesh import sidecar, snapshot


def telemetry(name: str, namespace: str, *, selector: dict[str, str] | None = None, created: str | None = None,
              extra: str = "") -> str:
    meta = f"{{name: {name}, namespace: {namespace}"
    meta += f", creationTimestamp: '{created}'}}" if created else "}"
    spec = f"\n  selector: {{matchLabels: {selector}}}".replace("'", "") if selector else ""
    return f"""
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {meta}
spec:{(spec + extra) or ' {}'}
---"""


def names(text: str, *, namespace: str = "default", labels: dict[str, str] | None = None,
          mesh: MeshConfig | None = None) -> list[str]:
    proxy = sidecar("reviews", namespace=namespace, labels=labels or {"app": "reviews", "version": "v1"})
    return [t.ref for t in applicable_telemetries(proxy, snapshot(text, mesh=mesh))]


def test_root_then_namespace_then_workload() -> None:
    text = (telemetry("workload", "default", selector={"app": "reviews"}) + telemetry("ns", "default")
            + telemetry("mesh-default", "istio-system"))
    assert names(text) == ["Telemetry istio-system/mesh-default", "Telemetry default/ns", "Telemetry default/workload"]


def test_each_level_is_optional() -> None:
    assert names("") == []
    assert names(telemetry("ns", "default")) == ["Telemetry default/ns"]
    assert names(telemetry("w", "default", selector={"app": "reviews"})) == ["Telemetry default/w"]


def test_selector_must_match_every_label() -> None:
    text = telemetry("v2-only", "default", selector={"app": "reviews", "version": "v2"})
    assert names(text) == []
    assert names(text, labels={"app": "reviews", "version": "v2", "extra": "x"}) == ["Telemetry default/v2-only"]


def test_other_namespaces_do_not_apply() -> None:
    text = telemetry("ns", "other") + telemetry("w", "other", selector={"app": "reviews"})
    assert names(text) == []


def test_root_namespace_selector_selects_only_root_namespace_workloads() -> None:
    text = telemetry("root-w", "istio-system", selector={"app": "reviews"})
    assert names(text) == []
    assert names(text, namespace="istio-system") == ["Telemetry istio-system/root-w"]


def test_proxy_in_root_namespace_counts_the_mesh_wide_resource_once() -> None:
    text = telemetry("mesh-default", "istio-system")
    assert names(text, namespace="istio-system") == ["Telemetry istio-system/mesh-default"]


def test_root_namespace_follows_mesh_config() -> None:
    text = telemetry("a", "istio-system") + telemetry("b", "mesh-root")
    assert names(text, mesh=MeshConfig(root_namespace="mesh-root")) == ["Telemetry mesh-root/b"]


def test_oldest_wins_among_duplicates() -> None:
    text = (telemetry("aaa", "default", created="2024-05-02T10:00:00Z")
            + telemetry("zzz", "default", created="2024-05-01T10:00:00Z")
            + telemetry("w-new", "default", selector={"app": "reviews"}, created="2024-06-01T00:00:00Z")
            + telemetry("w-old", "default", selector={"version": "v1"}, created="2024-01-01T00:00:00Z"))
    assert names(text) == ["Telemetry default/zzz", "Telemetry default/w-old"]


def test_without_timestamps_the_name_decides_and_those_count_as_oldest() -> None:
    text = (telemetry("b", "default") + telemetry("a", "default")
            + telemetry("0-dated", "default", created="2020-01-01T00:00:00Z"))
    assert names(text) == ["Telemetry default/a"]


def test_empty_match_labels_is_namespace_wide() -> None:
    text = telemetry("empty", "default", extra="\n  selector: {matchLabels: {}}")
    assert names(text) == ["Telemetry default/empty"]


GATEWAY_REF = """
  targetRefs:
  - {group: gateway.networking.k8s.io, kind: Gateway, name: web}"""


def test_target_ref_to_a_kubernetes_gateway_selects_its_proxy() -> None:
    text = telemetry("gw", "default", extra=GATEWAY_REF)
    assert names(text, labels={"gateway.networking.k8s.io/gateway-name": "web"}) == ["Telemetry default/gw"]
    assert names(text, labels={"gateway.networking.k8s.io/gateway-name": "other"}) == []
    # A targetRef is not namespace-wide: a sidecar without the label is not selected.
    assert names(text) == []


def test_target_ref_to_a_service_selects_no_sidecar() -> None:
    text = telemetry("svc", "default", extra="\n  targetRefs:\n  - {group: '', kind: Service, name: reviews}")
    assert names(text) == []
