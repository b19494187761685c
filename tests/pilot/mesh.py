"""Test helpers: Istio YAML in, snapshots and proxies out."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from malla.config.parse import parse_text
from malla.pilot.protocol import Protocol
from malla.pilot.services import Workload
from malla.pilot.snapshot import CaptureMode, InboundPort, MeshConfig, MeshSnapshot, Proxy, ProxyKind

TEST_GROUP = "test.malla.dev/v1"


def snapshot(text: str = "", *, workloads: Iterable[Workload] = (), mesh: MeshConfig | None = None) -> MeshSnapshot:
    parsed = parse_text(text, path="test.yaml")
    assert not parsed.errors, [d.format() for d in parsed.errors]
    services = [k.body for k in parsed.kube if k.kind == "Service" and k.api_version == "v1"]
    extra = [_workload(k.body) for k in parsed.kube if k.api_version == TEST_GROUP and k.kind == "Workload"]
    return MeshSnapshot.build(configs=parsed.configs, kube_services=services, workloads=[*workloads, *extra], mesh=mesh)


def proxies(text: str) -> list[Proxy]:
    """The ``test.malla.dev/v1 Proxy`` documents of a golden input."""
    parsed = parse_text(text, path="test.yaml")
    return [_proxy(k.body) for k in parsed.kube if k.api_version == TEST_GROUP and k.kind == "Proxy"]


def workload(
    name: str,
    address: str,
    *,
    labels: dict[str, str] | None = None,
    ports: dict[str, int] | None = None,
    namespace: str = "default",
    **kw: Any,
) -> Workload:
    app = name.rsplit("-", 1)[0] if "-v" in name else name
    return Workload(
        name=name,
        namespace=namespace,
        labels=labels if labels is not None else {"app": app},
        address=address,
        ports=ports if ports is not None else {"http": 9080},
        **kw,
    )


def sidecar(
    name: str = "client",
    *,
    namespace: str = "default",
    ip: str = "127.0.0.10",
    labels: dict[str, str] | None = None,
    inbound: Iterable[tuple[int, int, Protocol]] = (),
    **kw: Any,
) -> Proxy:
    return Proxy(
        id=f"sidecar~{ip}~{name}.{namespace}",
        namespace=namespace,
        labels=labels if labels is not None else {"app": name},
        ip=ip,
        inbound=tuple(
            InboundPort(port=p, app_port=a, protocol=proto, name=proto.value.lower()) for p, a, proto in inbound
        ),
        **kw,
    )


def router(
    name: str = "ingressgateway", *, namespace: str = "istio-system", labels: dict[str, str] | None = None
) -> Proxy:
    return Proxy(
        id=f"router~0.0.0.0~{name}.{namespace}",
        namespace=namespace,
        kind=ProxyKind.ROUTER,
        labels=labels if labels is not None else {"istio": "ingressgateway"},
        ip="0.0.0.0",
    )


def _workload(body: dict[str, Any]) -> Workload:
    meta, spec = body["metadata"], body["spec"]
    return Workload(
        name=meta["name"],
        namespace=meta.get("namespace", "default"),
        labels=spec.get("labels", {}),
        address=spec["address"],
        ports=spec.get("ports", {}),
        service_account=spec.get("serviceAccount", "default"),
        locality=spec.get("locality", ""),
        healthy=spec.get("healthy", True),
        sidecar=spec.get("sidecar", True),
    )


def _proxy(body: dict[str, Any]) -> Proxy:
    meta, spec = body["metadata"], body["spec"]
    inbound = tuple(
        InboundPort(
            port=p["port"], app_port=p["appPort"], name=p.get("name", ""), protocol=Protocol(p.get("protocol", "TCP"))
        )
        for p in spec.get("inbound", [])
    )
    return Proxy(
        id=meta["name"],
        namespace=meta.get("namespace", "default"),
        kind=ProxyKind(spec.get("kind", "sidecar")),
        labels=spec.get("labels", {}),
        ip=spec.get("ip", "127.0.0.10"),
        inbound=inbound,
        locality=spec.get("locality", ""),
        capture=CaptureMode(spec.get("capture", "explicit")),
    )
