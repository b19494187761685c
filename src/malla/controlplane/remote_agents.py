"""The control plane's HTTP API for agents on other hosts, carried over the mTLS port (15012).

The HTTP API (20001) listens on loopback: local agents and the CLI use it.
An agent on another host reaches the control plane only on its mTLS port,
with its workload certificate, so its few API calls travel there as one
gRPC method, ``malla.v1.AgentApi/Call``: a JSON request ``{method, path,
params, json}`` in, a JSON answer ``{status, json}`` out (raw bytes, no
protobuf). The control plane authorizes each call against the identity the
certificate proves, then makes it on its own loopback API, so remote and
local agents meet the same code.

What a certificate for ``ns/NS/sa/SA`` may do (anything else: PERMISSION_DENIED):

- list workloads (``GET /api/v1/workloads``);
- register a workload of namespace NS and service account SA, and withdraw
  one (``POST``/``DELETE /api/v1/workloads``); its agent's pid is dropped,
  as it means nothing on this host (``malla down`` signals local agents only);
- release an address held by a proxy of namespace NS (``DELETE /api/v1/addresses``);
- report, and withdraw, the certificate of its own SPIFFE ID (``PUT``/``DELETE
  /api/v1/identities``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import httpx

from malla.ca.service import AuthenticationError, identity_from_certificate, peer_certificate
from malla.ca.spiffe import Identity

if TYPE_CHECKING:
    from malla.controlplane.server import ControlPlane

log = logging.getLogger(__name__)

SERVICE = "malla.v1.AgentApi"
METHOD = "Call"
FULL_METHOD = f"/{SERVICE}/{METHOD}"


@dataclass(frozen=True)
class ApiCall:
    """One HTTP API call, as it travels over the tunnel."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None

    def encode(self) -> bytes:
        return json.dumps({"method": self.method, "path": self.path, "params": self.params,
                           "json": self.json}).encode()

    @classmethod
    def decode(cls, data: bytes) -> ApiCall:
        """ValueError names the field that is wrong."""
        body = json.loads(data)
        if not isinstance(body, dict):
            raise ValueError("the call must be a JSON object {method, path, params, json}")
        method, path, params = body.get("method"), body.get("path"), body.get("params") or {}
        if not isinstance(method, str) or not isinstance(path, str) or not path.startswith("/"):
            raise ValueError("method and path: give an HTTP method and an absolute path")
        if not isinstance(params, dict):
            raise ValueError("params: must be an object of strings")
        return cls(method.upper(), path, {str(k): str(v) for k, v in params.items()}, body.get("json"))


def encode_answer(status: int, body: Any) -> bytes:
    return json.dumps({"status": status, "json": body}).encode()


def decode_answer(data: bytes) -> tuple[int, Any]:
    answer = json.loads(data)
    return int(answer["status"]), answer.get("json")


def node_namespace(node_id: str) -> str | None:
    """The namespace in an Istio node id (``sidecar~IP~NAME.NS~NS.svc.cluster.local``)."""
    parts = node_id.split("~")
    return parts[3].split(".", 1)[0] if len(parts) == 4 else None


def authorize(call: ApiCall, identity: Identity, cp: ControlPlane) -> ApiCall:
    """The call to make for this identity (maybe trimmed); PermissionError says why not."""
    route = (call.method, call.path)
    body = call.json if isinstance(call.json, dict) else {}
    ns, account = identity.namespace, identity.service_account
    if route == ("GET", "/api/v1/workloads"):
        return call
    if route == ("POST", "/api/v1/workloads"):
        _require(body.get("namespace") == ns and body.get("serviceAccount") == account,
                 f"a workload of namespace {body.get('namespace')!r}, service account "
                 f"{body.get('serviceAccount')!r}")
        _require(node_namespace(str(body.get("nodeId") or "")) == ns, f"node {body.get('nodeId')!r}")
        return ApiCall(call.method, call.path, call.params, {k: v for k, v in body.items() if k != "agentPid"})
    if route == ("DELETE", "/api/v1/workloads"):
        workload = cp.discovery.workloads().get(call.params.get("key", ""))
        _require(workload is None or (workload.namespace, workload.service_account) == (ns, account),
                 f"workload {call.params.get('key')!r}")
        return call
    if route == ("DELETE", "/api/v1/addresses"):
        owner = cp.addresses.leases().get(call.params.get("address", ""))
        _require(owner is None or node_namespace(owner) == ns, f"address {call.params.get('address')!r}")
        return call
    if route == ("PUT", "/api/v1/identities"):
        _require(body.get("namespace") == ns and body.get("spiffeId") == identity.uri,
                 f"the certificate report of {body.get('spiffeId')!r}")
        return call
    if route == ("DELETE", "/api/v1/identities"):
        board = cp.citadel.board.items() if cp.citadel is not None else []
        found = [r for r in board if r["nodeId"] == call.params.get("node")]
        _require(all(r["spiffeId"] == identity.uri for r in found), f"the report of {call.params.get('node')!r}")
        return call
    raise PermissionError(f"{call.method} {call.path} is not open to agents on other hosts")


def _require(allowed: bool, what: str) -> None:
    if not allowed:
        raise PermissionError(f"{what}: the caller's certificate does not cover it")


class AgentApiService(grpc.GenericRpcHandler):
    """``malla.v1.AgentApi/Call``, for the mTLS port's server (it runs on that server's loop)."""

    def __init__(self, cp: ControlPlane) -> None:
        self._cp = cp
        self._handler = grpc.unary_unary_rpc_method_handler(self._call)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._handler if handler_call_details.method == FULL_METHOD else None

    async def _call(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        cp = self._cp
        try:
            identity = identity_from_certificate(peer_certificate(context) or b"",
                                                 trust_domain=cp.options.mesh.trust_domain)
        except (AuthenticationError, ValueError) as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        try:
            call = authorize(ApiCall.decode(request), identity, cp)
        except PermissionError as exc:
            log.warning("refused %s an API call: %s", identity.uri, exc)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        except (ValueError, TypeError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid API call: {exc}")
        if cp.state is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the control plane is still starting")
        return await _forward(cp.state.api_url, call)


async def _forward(api_url: str, call: ApiCall) -> bytes:
    try:
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            response = await client.request(call.method, api_url + call.path, params=call.params or None,
                                            json=call.json if call.method in ("POST", "PUT") else None)
    except httpx.HTTPError as exc:
        return encode_answer(502, {"error": f"the control plane's API did not answer: {exc}"})
    try:
        body: Mapping[str, Any] | Any = response.json()
    except ValueError:
        body = {"error": response.text}
    return encode_answer(response.status_code, body)
