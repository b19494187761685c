"""RequestAuthentication as Envoy's ``jwt_authn`` HTTP filter (pure).

Every RequestAuthentication that attaches to the proxy (see
:mod:`malla.policy.attachment`: its namespace's and the root namespace's,
narrowed by selector or ``targetRef``) adds its ``jwtRules``; Istio merges
them all into one filter, one provider per rule (``origins-0``, ``origins-1``,
... in attachment order).

What the filter does, as in Istio (``pilot/pkg/security/authn/policy_applier.go``):

* a request without a token passes: RequestAuthentication alone never
  requires one (AuthorizationPolicy does, by asking for a request principal);
* a request whose token fails a provider (bad signature, expired, wrong
  issuer or audience) gets 401 from Envoy. Each provider is required as
  ``requires_any {provider, allow_missing}``; with several providers those
  are all required together, or-ed with each provider alone, so that
  providers reading the same header still accept each other's tokens;
* a verified token's payload goes to dynamic metadata
  ``envoy.filters.http.jwt_authn`` / ``payload``, which authorization reads for
  ``requestPrincipals`` (``iss/sub``) and ``request.auth.claims``; ``scope``
  and ``permission`` (plus ``spaceDelimitedClaims``) become lists there;
* the token is removed from the request unless ``forwardOriginalToken``;
  ``outputPayloadToHeader`` and ``outputClaimToHeaders`` copy the payload or
  claims into request headers for the app; CORS preflights are not checked.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import empty_pb2

from malla.api.security.request_authentication import JWTRule
from malla.pilot.proto_values import typed
from malla.pilot.snapshot import MeshSnapshot, Proxy
from malla.policy.attachment import attached_policies
from malla.policy.jwks import build_jwks_clusters, translate_jwks_source

KIND = "RequestAuthentication"
JWT_AUTHN_FILTER = "envoy.filters.http.jwt_authn"
PAYLOAD_METADATA_KEY = "payload"  # read by authz's RBAC rules: the contract between the two filters
PROVIDER_PREFIX = "origins-"
DEFAULT_SPACE_DELIMITED_CLAIMS = ("permission", "scope")  # Istio always normalizes these

JwtRequirement = jwt_pb2.JwtRequirement


def http_filters(proxy: Proxy, snapshot: MeshSnapshot, *, port: int) -> list[hcm_pb2.HttpFilter]:
    """The filters that check tokens on ``port`` of ``proxy`` (none while no RequestAuthentication applies).

    RequestAuthentication has no port-level settings: every port gets the same filter.
    """
    rules = applicable_jwt_rules(proxy, snapshot)
    if not rules:
        return []
    return [hcm_pb2.HttpFilter(name=JWT_AUTHN_FILTER, typed_config=typed(build_jwt_authentication(rules)))]


def build_authn_clusters(proxy: Proxy, snapshot: MeshSnapshot) -> list[cluster_pb2.Cluster]:
    """The clusters Envoy fetches remote key sets (``jwksUri``) through, for the rules that apply to ``proxy``."""
    return build_jwks_clusters(applicable_jwt_rules(proxy, snapshot), mesh=snapshot.mesh)


def applicable_jwt_rules(proxy: Proxy, snapshot: MeshSnapshot) -> list[JWTRule]:
    """All ``jwtRules`` of the RequestAuthentications attached to ``proxy``, in Istio's order."""
    return [rule for config in attached_policies(proxy, snapshot, kind=KIND) for rule in config.spec.jwt_rules]


def build_jwt_authentication(rules: Iterable[JWTRule]) -> jwt_pb2.JwtAuthentication:
    """One ``jwt_authn`` config for all rules: a provider each, one requirement for every path."""
    config = jwt_pb2.JwtAuthentication(bypass_cors_preflight=True)
    names = []
    for index, rule in enumerate(rules):
        name = f"{PROVIDER_PREFIX}{index}"
        config.providers[name].CopyFrom(translate_jwt_rule(rule))
        names.append(name)
    rule = config.rules.add(match=route_components_pb2.RouteMatch(prefix="/"))
    rule.requires.CopyFrom(_requirement(names))
    return config


def translate_jwt_rule(rule: JWTRule) -> jwt_pb2.JwtProvider:
    """One ``jwtRules`` entry -> one Envoy JWT provider."""
    provider = jwt_pb2.JwtProvider(
        issuer=rule.issuer or "",
        audiences=list(rule.audiences),
        # Istio strips the token before the app sees it unless asked to keep it.
        forward=bool(rule.forward_original_token),
        forward_payload_header=rule.output_payload_to_header or "",
        payload_in_metadata=PAYLOAD_METADATA_KEY,
        from_params=list(rule.from_params),
        from_cookies=list(rule.from_cookies),
    )
    claims = sorted({*DEFAULT_SPACE_DELIMITED_CLAIMS, *rule.space_delimited_claims})
    provider.normalize_payload_in_metadata.space_delimited_claims.extend(claims)
    for header in rule.from_headers:
        provider.from_headers.add(name=header.name or "", value_prefix=header.prefix or "")
    for item in rule.output_claim_to_headers:
        provider.claim_to_headers.add(header_name=item.header or "", claim_name=item.claim or "")
    translate_jwks_source(rule, provider)
    return provider


def _requirement(names: list[str]) -> JwtRequirement:
    """Istio's requirement: a token, if present, must verify; no token is fine."""
    each = [_any_of(_provider(n), JwtRequirement(allow_missing=empty_pb2.Empty())) for n in names]
    if len(each) == 1:
        return each[0]
    # Providers sharing a header each see the others' tokens as failures: the AND alone would
    # refuse every token, so any single provider's success is accepted too.
    together = JwtRequirement(requires_all=jwt_pb2.JwtRequirementAndList(requirements=each))
    return _any_of(*(_provider(n) for n in names), together)


def _provider(name: str) -> JwtRequirement:
    return JwtRequirement(provider_name=name)


def _any_of(*requirements: JwtRequirement) -> JwtRequirement:
    return JwtRequirement(requires_any=jwt_pb2.JwtRequirementOrList(requirements=list(requirements)))
