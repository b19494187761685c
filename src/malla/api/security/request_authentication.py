"""istio.security.v1beta1.RequestAuthentication (security.istio.io v1 and v1beta1).

Which JWTs a workload validates: issuers, key sets, where the token is
found and what is forwarded upstream. Field lists follow istio/api
``security/v1beta1/request_authentication.proto`` and ``jwt.proto``.
"""

from __future__ import annotations

from pydantic import Field

from malla.api.base import Bool, Duration, IstioModel, Str
from malla.api.security.common import PolicyTargetReference, WorkloadSelector


class JWTHeader(IstioModel):
    """A header the token is read from, with the prefix to strip ("Bearer ")."""

    name: Str | None = None
    prefix: Str | None = None


class ClaimToHeader(IstioModel):
    """Copy one claim of a verified token into a request header."""

    header: Str | None = None
    claim: Str | None = None


class JWTRule(IstioModel):
    """One accepted token issuer and how its tokens are found and checked."""

    issuer: Str | None = None
    audiences: list[Str] = Field(default_factory=list)
    jwks_uri: Str | None = None
    jwks: Str | None = None
    from_headers: list[JWTHeader] = Field(default_factory=list)
    from_params: list[Str] = Field(default_factory=list)
    from_cookies: list[Str] = Field(default_factory=list)
    output_payload_to_header: Str | None = None
    forward_original_token: Bool | None = None
    output_claim_to_headers: list[ClaimToHeader] = Field(default_factory=list)
    timeout: Duration | None = None
    space_delimited_claims: list[Str] = Field(default_factory=list)


class RequestAuthentication(IstioModel):
    """Spec of a RequestAuthentication."""

    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] = Field(default_factory=list)
    jwt_rules: list[JWTRule] = Field(default_factory=list)
