"""The identity part of the control plane's HTTP API: join tokens, certificate reports, the CA.

- ``POST /api/v1/tokens`` ``{namespace, serviceAccount?, ttlSeconds?}``: a join
  token (``malla token create``) with the CA's addresses and trust bundle;
- ``PUT /api/v1/identities`` (an agent's certificate report, see
  ``malla.agent.identity_report``), ``DELETE /api/v1/identities?node=ID``,
  ``GET /api/v1/identities`` (``malla status``, ``malla proxy-config secret``);
- ``GET /api/v1/ca`` and ``POST /api/v1/ca/rotate-root`` ``{step}``
  (``malla ca rotate-root begin|activate|retire``).

Errors answer 400 with the field and what is allowed, 409 when the CA
refuses a rotation step in the state it is in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from malla.controlplane.citadel import ROTATION_STEPS, CitadelError, ttl_seconds

if TYPE_CHECKING:
    from malla.controlplane.server import ControlPlane


def identity_routes(cp: ControlPlane) -> list[Route]:
    def citadel() -> Any:
        return cp.citadel

    async def create_token(request: Request) -> JSONResponse:
        body = await _json(request)
        if body is None:
            return _error("the body must be a JSON object: {namespace, serviceAccount, ttlSeconds}")
        namespace = body.get("namespace")
        if not isinstance(namespace, str) or not namespace:
            return _error("namespace: required (the namespace the agent joins)")
        account = body.get("serviceAccount")
        if account is not None and not isinstance(account, str):
            return _error("serviceAccount: must be a string")
        try:
            ttl = ttl_seconds(body.get("ttlSeconds"))
            return JSONResponse(citadel().create_token(namespace=namespace, service_account=account, ttl=ttl))
        except ValueError as exc:
            return _error(str(exc))

    async def report_identity(request: Request) -> JSONResponse:
        body = await _json(request)
        if body is None:
            return _error("the body must be a JSON object (an agent's certificate report)")
        try:
            return JSONResponse(citadel().board.report(body))
        except ValueError as exc:
            return _error(f"invalid certificate report: {exc}")

    async def forget_identity(request: Request) -> JSONResponse:
        node = request.query_params.get("node", "")
        found = citadel().board.forget(node)
        return JSONResponse({"node": node, "removed": found}, status_code=200 if found else 404)

    async def identities(_: Request) -> JSONResponse:
        return JSONResponse({"items": citadel().board.items()})

    async def ca(_: Request) -> JSONResponse:
        return JSONResponse(citadel().describe())

    async def rotate_root(request: Request) -> JSONResponse:
        body = await _json(request) or {}
        step = body.get("step")
        try:
            return JSONResponse(citadel().rotate_root(str(step)))
        except CitadelError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400 if step not in ROTATION_STEPS else 409)

    return [
        Route("/api/v1/tokens", create_token, methods=["POST"]),
        Route("/api/v1/identities", identities, methods=["GET"]),
        Route("/api/v1/identities", report_identity, methods=["PUT"]),
        Route("/api/v1/identities", forget_identity, methods=["DELETE"]),
        Route("/api/v1/ca", ca, methods=["GET"]),
        Route("/api/v1/ca/rotate-root", rotate_root, methods=["POST"]),
    ]



async def _json(request: Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _error(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)
