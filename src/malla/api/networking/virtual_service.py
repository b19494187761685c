"""VirtualService (networking.istio.io v1, v1beta1, v1alpha3) and its messages.

Field for field the ``istio.networking.v1alpha3.VirtualService`` proto:
HTTP, TLS and TCP routes, their matches, destinations, rewrites,
redirects, retries, fault injection, mirroring, CORS and header
operations. ``Destination`` and ``PortSelector`` are shared with
DestinationRule and Sidecar, which import them from here.

Oneofs are plain optional fields side by side; the validator reports
when more than one of them is set. Semantic rules live in
``malla.config.validation.virtual_service``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field

from malla.api.base import Bool, Duration, Int32, IstioModel, Percent, Str, UInt32, proto_enum


def _base64(value: Any) -> Any:
    # protobuf JSON carries `bytes` fields as standard or URL-safe base64.
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    text = value.strip()
    padded = text + "=" * (-len(text) % 4)
    try:
        base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"invalid base64 {value!r}: bytes fields are written in base64") from None
    return value


Base64 = Annotated[str, BeforeValidator(_base64)]


class StringMatch(IstioModel):
    """One of exact, prefix or regex (RE2)."""

    exact: Str | None = None
    prefix: Str | None = None
    regex: Str | None = None


class PortSelector(IstioModel):
    number: UInt32 | None = None


class Destination(IstioModel):
    host: Str | None = None
    subset: Str | None = None
    port: PortSelector | None = None


class HeaderOperations(IstioModel):
    set: dict[str, Str] = Field(default_factory=dict)
    add: dict[str, Str] = Field(default_factory=dict)
    remove: list[Str] = Field(default_factory=list)


class Headers(IstioModel):
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


class HTTPMatchRequest(IstioModel):
    name: Str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] = Field(default_factory=dict)
    port: UInt32 | None = None
    source_labels: dict[str, Str] = Field(default_factory=dict)
    gateways: list[Str] = Field(default_factory=list)
    query_params: dict[str, StringMatch] = Field(default_factory=dict)
    ignore_uri_case: Bool | None = None
    without_headers: dict[str, StringMatch] = Field(default_factory=dict)
    source_namespace: Str | None = None
    stat_prefix: Str | None = None


class HTTPRouteDestination(IstioModel):
    destination: Destination | None = None
    weight: Int32 | None = None
    headers: Headers | None = None


class RouteDestination(IstioModel):
    destination: Destination | None = None
    weight: Int32 | None = None


class Delegate(IstioModel):
    name: Str | None = None
    namespace: Str | None = None


class HTTPRedirect(IstioModel):
    uri: Str | None = None
    authority: Str | None = None
    # oneof redirect_port
    port: UInt32 | None = None
    derive_port: proto_enum("FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT") | None = None
    scheme: Str | None = None
    redirect_code: UInt32 | None = None


class HTTPBody(IstioModel):
    # oneof specifier; both names shadow builtins, hence the trailing underscore.
    string_: Str | None = Field(default=None, alias="string")
    bytes_: Base64 | None = Field(default=None, alias="bytes")


class HTTPDirectResponse(IstioModel):
    status: UInt32 | None = None
    body: HTTPBody | None = None


class RegexRewrite(IstioModel):
    match: Str | None = None
    rewrite: Str | None = None


class HTTPRewrite(IstioModel):
    uri: Str | None = None
    authority: Str | None = None
    uri_regex_rewrite: RegexRewrite | None = None


class HTTPRetry(IstioModel):
    attempts: Int32 | None = None
    per_try_timeout: Duration | None = None
    retry_on: Str | None = None
    retry_remote_localities: Bool | None = None
    retry_ignore_previous_hosts: Bool | None = None
    backoff: Duration | None = None


class CorsPolicy(IstioModel):
    allow_origin: list[Str] = Field(default_factory=list)  # deprecated: allowOrigins
    allow_origins: list[StringMatch] = Field(default_factory=list)
    allow_methods: list[Str] = Field(default_factory=list)
    allow_headers: list[Str] = Field(default_factory=list)
    expose_headers: list[Str] = Field(default_factory=list)
    max_age: Duration | None = None
    allow_credentials: Bool | None = None
    unmatched_preflights: proto_enum("UNSPECIFIED", "FORWARD", "IGNORE") | None = None


class FaultDelay(IstioModel):
    """HTTPFaultInjection.Delay."""

    percent: Int32 | None = None  # deprecated: percentage
    # oneof http_delay_type
    fixed_delay: Duration | None = None
    exponential_delay: Duration | None = None
    percentage: Percent | None = None


class FaultAbort(IstioModel):
    """HTTPFaultInjection.Abort."""

    # oneof error_type
    http_status: Int32 | None = None
    grpc_status: Str | None = None
    http2_error: Str | None = None
    percentage: Percent | None = None


class HTTPFaultInjection(IstioModel):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


class HTTPMirrorPolicy(IstioModel):
    destination: Destination | None = None
    percentage: Percent | None = None


class HTTPRoute(IstioModel):
    name: Str | None = None
    match: list[HTTPMatchRequest] = Field(default_factory=list)
    route: list[HTTPRouteDestination] = Field(default_factory=list)
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: list[HTTPMirrorPolicy] = Field(default_factory=list)
    # The proto's json_name is "mirror_percent"; the CRD also accepts "mirrorPercent".
    mirror_percent: UInt32 | None = Field(
        default=None,
        validation_alias=AliasChoices("mirror_percent", "mirrorPercent"),
        serialization_alias="mirror_percent",
    )
    mirror_percentage: Percent | None = None
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None


class L4MatchAttributes(IstioModel):
    destination_subnets: list[Str] = Field(default_factory=list)
    port: UInt32 | None = None
    source_subnet: Str | None = None  # deprecated, ignored by Istio
    source_labels: dict[str, Str] = Field(default_factory=dict)
    gateways: list[Str] = Field(default_factory=list)
    source_namespace: Str | None = None


class TLSMatchAttributes(IstioModel):
    sni_hosts: list[Str] = Field(default_factory=list)
    destination_subnets: list[Str] = Field(default_factory=list)
    port: UInt32 | None = None
    source_labels: dict[str, Str] = Field(default_factory=dict)
    gateways: list[Str] = Field(default_factory=list)
    source_namespace: Str | None = None


class TCPRoute(IstioModel):
    match: list[L4MatchAttributes] = Field(default_factory=list)
    route: list[RouteDestination] = Field(default_factory=list)


class TLSRoute(IstioModel):
    match: list[TLSMatchAttributes] = Field(default_factory=list)
    route: list[RouteDestination] = Field(default_factory=list)


class VirtualService(IstioModel):
    """The spec of a VirtualService."""

    hosts: list[Str] = Field(default_factory=list)
    gateways: list[Str] = Field(default_factory=list)
    http: list[HTTPRoute] = Field(default_factory=list)
    tls: list[TLSRoute] = Field(default_factory=list)
    tcp: list[TCPRoute] = Field(default_factory=list)
    export_to: list[Str] = Field(default_factory=list)
