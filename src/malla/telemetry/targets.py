"""Prometheus scrape targets of the running mesh, for ``http_sd_configs`` (control-plane side).

Every proxy an agent started announces its metrics endpoint in its node
metadata (``Proxy.metrics_address``); the control plane lists the connected
ones at ``GET /api/v1/telemetry/targets`` in Prometheus' HTTP service
discovery format: one target group per proxy, its ``__metrics_path__``
(``/stats/prometheus``) and the labels every series from it gets
(``namespace``, ``workload``, ``proxy_kind``). ``__meta_malla_*`` labels
carry the node id and the workload's address for ``malla status``; Prometheus
drops them after relabelling. A proxy that disconnects leaves the list with
it, and a restarted control plane finds the targets again when the proxies
reconnect.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from malla.pilot.snapshot import Proxy
from malla.telemetry.endpoint import METRICS_PATH

if TYPE_CHECKING:
    from malla.controlplane.server import ControlPlane

TARGETS_PATH = "/api/v1/telemetry/targets"


def scrape_targets(proxies: Iterable[Proxy]) -> list[dict[str, Any]]:
    """http_sd target groups, one per proxy with a metrics address, sorted by namespace and workload."""
    groups = []
    for proxy in proxies:
        if not proxy.metrics_address:
            continue
        labels = {
            "__metrics_path__": METRICS_PATH,
            "namespace": proxy.namespace,
            "workload": proxy.workload_name or proxy.labels.get("app", ""),
            "proxy_kind": proxy.kind.value,
            "__meta_malla_node_id": proxy.id,
            "__meta_malla_address": proxy.ip,
        }
        groups.append({"targets": [proxy.metrics_address], "labels": labels})
    return sorted(groups, key=lambda g: (g["labels"]["namespace"], g["labels"]["workload"], g["targets"][0]))


def telemetry_routes(cp: ControlPlane) -> list[Route]:
    async def targets(_: Request) -> JSONResponse:
        return JSONResponse(scrape_targets(list(cp.discovery.proxies.values())))

    return [Route(TARGETS_PATH, targets, methods=["GET"])]
