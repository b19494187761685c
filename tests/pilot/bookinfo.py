"""Istio's Bookinfo sample (from the conformance corpus) as a snapshot with running workloads."""

from __future__ import annotations

from pathlib import Path

from malla.pilot.protocol import Protocol
from malla.pilot.services import Workload
from malla.pilot.snapshot import MeshConfig, MeshSnapshot

from tests.pilot.mesh import router, sidecar, snapshot
from tests.conformance import SAMPLES as CONFORMANCE_SAMPLES

SAMPLES = CONFORMANCE_SAMPLES / "bookinfo"
NETWORKING = SAMPLES / "networking"

VERSIONS = {"productpage": ["v1"], "details": ["v1"], "ratings": ["v1"], "reviews": ["v1", "v2", "v3"]}


def workloads() -> list[Workload]:
    out, n = [], 20
    for app, versions in VERSIONS.items():
        for v in versions:
            n += 1
            out.append(
                Workload(
                    name=f"{app}-{v}",
                    namespace="default",
                    labels={"app": app, "version": v},
                    address=f"127.0.0.{n}",
                    ports={"http": 9080},
                    service_account=f"bookinfo-{app}",
                )
            )
    return out


def bookinfo(*files: str, extra: str = "", mesh: MeshConfig | None = None) -> MeshSnapshot:
    texts = [(SAMPLES / "platform/kube/bookinfo.yaml").read_text()]
    texts += [(NETWORKING / f).read_text() for f in files]
    return snapshot("\n---\n".join([*texts, extra]), workloads=workloads(), mesh=mesh)


def productpage_proxy():
    return sidecar(
        "productpage",
        ip="127.0.0.21",
        labels={"app": "productpage", "version": "v1"},
        inbound=[(9080, 19080, Protocol.HTTP)],
    )


def ingress():
    return router()
