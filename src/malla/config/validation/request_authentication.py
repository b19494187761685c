"""Semantic rules of RequestAuthentication, as Istio's validation webhook applies them.

Each JWT rule needs an issuer or a jwksUri; jwksUri must be an http(s) URL
and jwks a parseable JSON Web Key Set (jwksUri is ignored when both are
set: a warning); token locations and claim-to-header names must be
usable as HTTP header, query and cookie names; the fetch timeout is a
whole number of milliseconds, at least 1ms.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from malla.api.security.request_authentication import JWTRule, RequestAuthentication
from malla.config.validation import Finding, Findings, ValidationContext
from malla.config.validation.common import check_duration, check_http_header_name, join
from malla.config.validation.common_selectors import check_selection

# Envoy's lax HTTP_HEADER_NAME rule: anything but NUL, CR and LF.
_LAX_HEADER_FORBIDDEN = re.compile(r"[\x00\r\n]")
_KEY_TYPES = ("RSA", "EC", "oct", "OKP")
_MAX_SPACE_DELIMITED_CLAIMS = 64


def validate(spec: RequestAuthentication, ctx: ValidationContext) -> Iterable[Finding]:
    findings = Findings()
    check_selection(findings, selector=spec.selector, target_ref=spec.target_ref, target_refs=spec.target_refs)
    for i, rule in enumerate(spec.jwt_rules):
        _check_jwt_rule(rule, findings, path=join("spec.jwtRules", i))
    return findings


def _check_jwt_rule(rule: JWTRule, findings: Findings, *, path: str) -> None:
    if not rule.issuer and not rule.jwks_uri:
        findings.error(
            join(path, "issuer"),
            "issuer or jwksUri must be set: the token's iss claim, or the URL of the issuer's key set",
        )
    _check_key_set(rule, findings, path=path)
    _check_non_empty(rule.audiences, findings, path=join(path, "audiences"), what="audience")
    for k, header in enumerate(rule.from_headers):
        name_path = join(path, "fromHeaders", k, "name")
        if not header.name:
            findings.error(name_path, "header name is required: the HTTP header the token is read from")
        elif _LAX_HEADER_FORBIDDEN.search(header.name):
            findings.error(name_path, f"invalid header name {header.name!r}: NUL, CR and LF are not allowed")
    _check_non_empty(rule.from_params, findings, path=join(path, "fromParams"), what="query parameter name")
    _check_non_empty(rule.from_cookies, findings, path=join(path, "fromCookies"), what="cookie name")
    if rule.output_payload_to_header and _LAX_HEADER_FORBIDDEN.search(rule.output_payload_to_header):
        findings.error(
            join(path, "outputPayloadToHeader"),
            f"invalid header name {rule.output_payload_to_header!r}: NUL, CR and LF are not allowed",
        )
    _check_claim_headers(rule, findings, path=path)
    if problem := check_duration(rule.timeout, "timeout"):
        findings.error(join(path, "timeout"), problem)
    claims_path = join(path, "spaceDelimitedClaims")
    if len(rule.space_delimited_claims) > _MAX_SPACE_DELIMITED_CLAIMS:
        findings.error(
            claims_path,
            f"at most {_MAX_SPACE_DELIMITED_CLAIMS} spaceDelimitedClaims are allowed, found {len(rule.space_delimited_claims)}",
        )
    _check_non_empty(rule.space_delimited_claims, findings, path=claims_path, what="claim name")


def _check_non_empty(values: list[str], findings: Findings, *, path: str, what: str) -> None:
    for k, value in enumerate(values):
        if not value:
            findings.error(join(path, k), f"empty {what} is not allowed; remove it or give a name")


def _check_key_set(rule: JWTRule, findings: Findings, *, path: str) -> None:
    if rule.jwks_uri:
        problem = _jwks_uri_problem(rule.jwks_uri)
        if problem:
            findings.error(join(path, "jwksUri"), problem)
    if rule.jwks:
        keys, problem = _parse_jwks(rule.jwks)
        if problem:
            findings.error(join(path, "jwks"), f"jwks is not a valid JSON Web Key Set: {problem}")
        elif not keys:
            findings.warning(join(path, "jwks"), "jwks has no keys, so no token can be verified; add the issuer's public keys")
    if rule.jwks_uri and rule.jwks:
        findings.warning(join(path, "jwksUri"), "jwksUri is ignored when jwks is set; keep only one of them")


def _jwks_uri_problem(uri: str) -> str | None:
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in uri):
        return f"invalid jwksUri {uri!r}: spaces and control characters are not allowed in a URL"
    parts = urlsplit(uri)
    if parts.scheme.lower() not in ("http", "https"):
        scheme = parts.scheme or "(none)"
        return f"jwksUri scheme {scheme} is not supported: use an http:// or https:// URL"
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
    except ValueError:
        return f"invalid port in jwksUri {uri!r}: a number between 1 and 65535"
    if not parts.hostname:
        return f"jwksUri {uri!r} has no host: write it as https://host/path"
    return None


def _parse_jwks(text: str) -> tuple[list[dict], str | None]:
    """The keys of a JWKS document (or of a single JWK), or what is wrong with it."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        return [], f"not JSON ({exc})"
    if isinstance(document, dict) and "keys" in document:
        keys = document["keys"]
    elif isinstance(document, dict) and "kty" in document:
        keys = [document]
    else:
        return [], "expected a JSON object with a 'keys' list, or a single key object with 'kty'"
    if not isinstance(keys, list):
        return [], "'keys' must be a list of key objects"
    for n, key in enumerate(keys):
        if not isinstance(key, dict) or key.get("kty") not in _KEY_TYPES:
            return [], f"key {n} needs 'kty', one of {', '.join(_KEY_TYPES)}"
    return keys, None


def _check_claim_headers(rule: JWTRule, findings: Findings, *, path: str) -> None:
    for k, item in enumerate(rule.output_claim_to_headers):
        item_path = join(path, "outputClaimToHeaders", k)
        if not item.claim:
            findings.error(join(item_path, "claim"), "claim is required: the name of the token claim to copy")
        if not item.header:
            findings.error(join(item_path, "header"), "header is required: the name of the request header to create")
        elif problem := check_http_header_name(item.header):
            findings.error(join(item_path, "header"), problem)
