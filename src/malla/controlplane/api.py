"""The control plane's HTTP API (port 20001): what the CLI and the console talk to.

Read views are JSON snapshots of the control plane's state; writes
(``apply``, ``delete``, workload registration) validate first and change
nothing on error. It runs on its own thread and loop (see the package
docstring), so it stays responsive while proxies sync.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from malla.api.kinds import lookup_kind
from malla.console import ControlPlaneViews, mount_console
from malla.controlplane.applied import apply_text, delete_text
from malla.controlplane.identity_api import identity_routes
from malla.controlplane.zipkin import zipkin_routes
from malla.pilot.services import Workload
from malla.telemetry.targets import scrape_targets, telemetry_routes

if TYPE_CHECKING:
    from malla.controlplane.server import ControlPlane


def build_app(cp: ControlPlane) -> Starlette:
    async def healthz(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def status(_: Request) -> JSONResponse:
        return JSONResponse(cp.status())

    async def get_config(request: Request) -> JSONResponse:
        kind_name = request.query_params.get("kind")
        namespace = request.query_params.get("namespace") or None
        name = request.query_params.get("name") or None
        kind = None
        if kind_name:
            info = lookup_kind(kind_name)
            if info is None:
                return JSONResponse({"error": f"unknown kind {kind_name!r}"}, status_code=404)
            kind = info.kind
        items = [
            c.to_dict() | {"origin": (f"{c.origin.path}:{c.origin.line}" if c.origin.line else c.origin.path) if c.origin else None}
            for c in cp.store.list(kind, namespace)
            if name is None or c.name == name
        ]
        return JSONResponse({"items": items, "problems": _problems(cp)})

    async def post_config(request: Request) -> JSONResponse:
        text = (await request.body()).decode("utf-8", "replace")
        label = request.headers.get("x-malla-source", "<apply>")
        ns = request.query_params.get("namespace") or "default"
        outcome = apply_text(text, source=cp.source, root=cp.applied_root, path_label=label, default_namespace=ns)
        return JSONResponse(outcome.to_json(), status_code=200 if outcome.ok else 422)

    async def delete_config(request: Request) -> JSONResponse:
        text = (await request.body()).decode("utf-8", "replace")
        label = request.headers.get("x-malla-source", "<delete>")
        ns = request.query_params.get("namespace") or "default"
        outcome = delete_text(text, source=cp.source, root=cp.applied_root, path_label=label, default_namespace=ns)
        return JSONResponse(outcome.to_json(), status_code=200 if outcome.ok else 422)

    agent_pids: dict[str, int] = {}  # workload key -> pid of its `malla run`, for `malla down`

    async def register_workload(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            workload = Workload(
                name=str(body["name"]),
                namespace=str(body.get("namespace") or "default"),
                labels={str(k): str(v) for k, v in (body.get("labels") or {}).items()},
                address=str(body["address"]),
                ports={str(k): int(v) for k, v in (body.get("ports") or {}).items()},
                service_account=str(body.get("serviceAccount") or "default"),
                sidecar=bool(body.get("sidecar", True)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": f"invalid workload: {exc}"}, status_code=400)
        node_id = body.get("nodeId")
        if node_id:
            # A workload registering again with a restarted control plane keeps its address.
            cp.addresses.assign(workload.address, str(node_id))
        key = cp.discovery.register_workload(workload, node_id=node_id)
        if isinstance(body.get("agentPid"), int):
            agent_pids[key] = body["agentPid"]
        return JSONResponse({"key": key})

    async def deregister_workload(request: Request) -> JSONResponse:
        key = request.query_params.get("key", "")
        found = cp.discovery.deregister_workload(key)
        return JSONResponse({"key": key, "removed": found}, status_code=200 if found else 404)

    async def workloads(_: Request) -> JSONResponse:
        return JSONResponse(
            {"items": [_workload_json(k, w) | {"agentPid": agent_pids.get(k)} for k, w in sorted(cp.discovery.workloads().items())]}
        )

    async def proxies(_: Request) -> JSONResponse:
        return JSONResponse({"items": cp.proxy_status()})

    async def proxy_config(request: Request) -> JSONResponse:
        proxy_id = request.path_params["proxy"]
        found = cp.proxy_config(proxy_id)
        if found is None:
            return JSONResponse({"error": f"no connected proxy matches {proxy_id!r}"}, status_code=404)
        return JSONResponse(found)

    async def allocate_address(request: Request) -> JSONResponse:
        """A workload's identity on this host: its loopback address and xDS node id."""
        body = await request.json()
        name = str(body.get("name") or "")
        namespace = str(body.get("namespace") or "default")
        kind = "router" if body.get("kind") == "router" else "sidecar"
        if not name:
            return JSONResponse({"error": "name is required"}, status_code=400)
        token = f"{name}-{secrets.token_hex(3)}.{namespace}"
        fixed = str(body.get("address") or "")
        address = fixed or cp.addresses.allocate(token)
        node_id = f"{kind}~{address}~{token}~{namespace}.svc.cluster.local"
        if not fixed:
            cp.addresses.assign(address, node_id)
        return JSONResponse({"address": address, "nodeId": node_id, "xds": cp.state.xds_address if cp.state else None})

    async def release_address(request: Request) -> JSONResponse:
        address = request.query_params.get("address", "")
        return JSONResponse({"released": cp.addresses.release(address)})

    async def shutdown(_: Request) -> JSONResponse:
        cp.request_stop()
        return JSONResponse({"stopping": True})

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/api/v1/status", status),
            Route("/api/v1/config", get_config, methods=["GET"]),
            Route("/api/v1/config", post_config, methods=["POST"]),
            Route("/api/v1/config", delete_config, methods=["DELETE"]),
            Route("/api/v1/workloads", workloads, methods=["GET"]),
            Route("/api/v1/workloads", register_workload, methods=["POST"]),
            Route("/api/v1/workloads", deregister_workload, methods=["DELETE"]),
            Route("/api/v1/proxies", proxies),
            Route("/api/v1/proxies/{proxy:path}/config", proxy_config),
            Route("/api/v1/addresses", allocate_address, methods=["POST"]),
            Route("/api/v1/addresses", release_address, methods=["DELETE"]),
            Route("/api/v1/shutdown", shutdown, methods=["POST"]),
            *identity_routes(cp),
            *zipkin_routes(cp.spans),
            *telemetry_routes(cp),
        ]
    )
    # The console reads the same views the API serves (malla.console.views).
    mount_console(app, ControlPlaneViews(
        workloads=lambda: [_workload_json(k, w) for k, w in sorted(cp.discovery.workloads().items())],
        proxies=cp.proxy_status, configs=lambda: cp.store.list(), problems=lambda: _problems(cp),
        targets=lambda: scrape_targets(list(cp.discovery.proxies.values())),
    ))
    return app


def _problems(cp: ControlPlane) -> dict[str, list[dict[str, Any]]]:
    return {path: [d.to_json() for d in diags] for path, diags in cp.source.problems.items()}


def _workload_json(key: str, w: Workload) -> dict[str, Any]:
    return {
        "key": key, "name": w.name, "namespace": w.namespace, "address": w.address, "labels": dict(w.labels),
        "ports": dict(w.ports), "serviceAccount": w.service_account, "sidecar": w.sidecar, "healthy": w.healthy,
    }
