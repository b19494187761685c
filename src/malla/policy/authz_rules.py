"""One AuthorizationPolicy rule as one Envoy RBAC policy (``envoy.config.rbac.v3.Policy``).

A rule matches when one ``from`` source, one ``to`` operation and every
``when`` condition match: in Envoy terms, the policy's ``principals`` (one
per source, each an AND of the source's fields and the ``when`` conditions
about the peer or the request's token) and its ``permissions`` (one per
operation, each an AND of the operation's fields and the ``when`` conditions
about the destination). Within one field the values are ORed; ``not*``
fields are a NOT of the OR. Istio splits the attributes the same way
(``pilot/pkg/security/authz/model``).

What a TCP connection cannot show (hosts, methods, paths, request
principals, headers, token claims) follows Istio: an ALLOW rule using them
is dropped (it allows less), a DENY, AUDIT or CUSTOM rule is kept without
them (it matches more).

Token attributes read the verified payload that ``jwt_authn`` keeps as
dynamic metadata (filter ``envoy.filters.http.jwt_authn``, key ``payload``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import address_pb2, extension_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as route_pb2
from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, regex_pb2, string_pb2, value_pb2
from google.protobuf import wrappers_pb2

from malla.api.security.authorization_policy import Condition, Operation, Rule, Source
from malla.pilot.proto_values import typed

Permission = rbac_pb2.Permission
Principal = rbac_pb2.Principal
StringMatcher = string_pb2.StringMatcher

JWT_FILTER = "envoy.filters.http.jwt_authn"
JWT_PAYLOAD_KEY = "payload"
SPIFFE = "spiffe://"
URI_TEMPLATE_MATCHER = "envoy.path.match.uri_template.uri_template_matcher"


class HttpOnly(Exception):
    """An attribute a plain TCP connection does not carry."""


@dataclass(frozen=True)
class RuleScope:
    """What translating one rule depends on besides the rule.

    ``local_ports``: the ports that name the chain being secured (its
    listener port and the app port behind it), so ``ports: ["9080"]`` means
    the workload's port whichever of the two Envoy sees.
    """

    action: str
    namespace: str
    for_tcp: bool = False
    local_ports: frozenset[int] = frozenset()


def translate_rule(rule: Rule, *, scope: RuleScope) -> rbac_pb2.Policy | None:
    """The RBAC policy for ``rule``; None when the rule cannot match on this chain (an ALLOW rule on TCP)."""
    try:
        peer_conditions, destination_conditions = _conditions(rule.when, scope)
        sources = [item.source for item in rule.from_ if item.source is not None] or [None]
        operations = [item.operation for item in rule.to if item.operation is not None] or [None]
        principals = [_all_ids([*_source_ids(s, scope), *peer_conditions]) for s in sources]
        permissions = [_all_rules([*_operation_rules(o, scope), *destination_conditions]) for o in operations]
    except HttpOnly:
        return None
    except ValueError:
        # A value validation rejects (unknown key, bad address): as Istio, the rule is left out.
        return None
    return rbac_pb2.Policy(permissions=permissions, principals=principals)


# --- Envoy set builders ---------------------------------------------------------


def _all_ids(ids: list[Principal]) -> Principal:
    return Principal(and_ids=Principal.Set(ids=ids or [Principal(any=True)]))


def _all_rules(rules: list[Permission]) -> Permission:
    return Permission(and_rules=Permission.Set(rules=rules or [Permission(any=True)]))


def _ids(values: Sequence[str], not_values: Sequence[str], make: Callable[[str], Principal], scope: RuleScope) -> list[Principal]:
    out = []
    matched = _each(values, make, scope)
    if matched:
        out.append(Principal(or_ids=Principal.Set(ids=matched)))
    excluded = _each(not_values, make, scope)
    if excluded:
        out.append(Principal(not_id=Principal(or_ids=Principal.Set(ids=excluded))))
    return out


def _rules(values: Sequence[str], not_values: Sequence[str], make: Callable[[str], Permission], scope: RuleScope) -> list[Permission]:
    out = []
    matched = _each(values, make, scope)
    if matched:
        out.append(Permission(or_rules=Permission.Set(rules=matched)))
    excluded = _each(not_values, make, scope)
    if excluded:
        out.append(Permission(not_rule=Permission(or_rules=Permission.Set(rules=excluded))))
    return out


def _each(values: Sequence[str], make: Callable, scope: RuleScope) -> list:
    out = []
    for value in values:
        try:
            out.append(make(value))
        except HttpOnly:
            # Istio: an ALLOW rule shrinks (dropped whole), any other action widens (the value is ignored).
            if scope.action == "ALLOW":
                raise
    return out


def _http_only(scope: RuleScope) -> None:
    if scope.for_tcp:
        raise HttpOnly


# --- Sources and operations ---------------------------------------------------------


def _source_ids(source: Source | None, scope: RuleScope) -> list[Principal]:
    if source is None:
        return []
    return [
        *_ids(source.principals, source.not_principals, _peer_principal, scope),
        *_ids(source.request_principals, source.not_request_principals, lambda v: _request_principal(v, scope), scope),
        *_ids(source.namespaces, source.not_namespaces, _peer_namespace, scope),
        *_ids(source.service_accounts, source.not_service_accounts, lambda v: _service_account(v, scope), scope),
        *_ids(source.trust_domains, source.not_trust_domains, _trust_domain, scope),
        *_ids(source.ip_blocks, source.not_ip_blocks, lambda v: Principal(direct_remote_ip=_cidr(v)), scope),
        *_ids(source.remote_ip_blocks, source.not_remote_ip_blocks, lambda v: Principal(remote_ip=_cidr(v)), scope),
    ]


def _operation_rules(operation: Operation | None, scope: RuleScope) -> list[Permission]:
    if operation is None:
        return []
    return [
        *_rules(operation.hosts, operation.not_hosts, lambda v: _host(v, scope), scope),
        *_rules(operation.ports, operation.not_ports, lambda v: _port(v, scope), scope),
        *_rules(operation.methods, operation.not_methods, lambda v: _method(v, scope), scope),
        *_rules(operation.paths, operation.not_paths, lambda v: _path(v, scope), scope),
    ]


def _peer_principal(value: str) -> Principal:
    return _authenticated(_string(value, prefix=SPIFFE))


def _peer_namespace(value: str) -> Principal:
    # The namespace is the /ns/<name>/ segment of the peer's SPIFFE ID.
    pattern = ".*".join(_quote(part) for part in value.split("*"))
    return _authenticated(_regex(f".*/ns/{pattern}/.*"))


def _service_account(value: str, scope: RuleScope) -> Principal:
    namespace, slash, name = value.partition("/")
    if not slash:
        namespace, name = scope.namespace, value
    return _authenticated(_regex(f"spiffe://.+/ns/{_quote(namespace)}/(.+/|)sa/{_quote(name)}(/.+)?"))


def _trust_domain(value: str) -> Principal:
    if value == "*":
        return _authenticated(_regex("spiffe://.+"))
    pattern = ".*".join(_quote(part) for part in value.split("*"))
    return _authenticated(_regex(f"spiffe://{pattern}/.*"))


def _authenticated(matcher: StringMatcher) -> Principal:
    return Principal(authenticated=Principal.Authenticated(principal_name=matcher))


def _request_principal(value: str, scope: RuleScope) -> Principal:
    """``iss/sub`` against the token's two claims; the issuer may hold '/', so split at the last one."""
    _http_only(scope)
    iss, slash, sub = value.rpartition("/")
    if value == "*":
        iss_m, sub_m = _regex(".+"), _regex(".+")
    elif not slash:
        iss_m, sub_m = _string(value), _regex(".+")
    else:
        iss_m, sub_m = _string(iss), _string(sub)
    return Principal(and_ids=Principal.Set(ids=[_claim_id(["iss"], iss_m), _claim_id(["sub"], sub_m)]))


def _host(value: str, scope: RuleScope) -> Permission:
    _http_only(scope)
    if value == "*":
        return Permission(header=route_pb2.HeaderMatcher(name=":authority", present_match=True))
    if value.startswith("*"):
        pattern = ".*" + _quote(value[1:])
    elif value.endswith("*"):
        pattern = _quote(value[:-1]) + ".*"
    else:
        pattern = _quote(value)
    # Case-insensitive, and an authority with a port ("reviews:9080") matches its host ("reviews").
    regex = StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=f"(?i){pattern}(:[0-9]+)?"))
    return Permission(header=route_pb2.HeaderMatcher(name=":authority", string_match=regex))


def _port(value: str, scope: RuleScope) -> Permission:
    port = int(value)
    if port in scope.local_ports:
        return Permission(any=True)
    return Permission(destination_port=port)


def _method(value: str, scope: RuleScope) -> Permission:
    _http_only(scope)
    return Permission(header=_header_matcher(":method", value))


def _path(value: str, scope: RuleScope) -> Permission:
    _http_only(scope)
    if "{*}" in value or "{**}" in value:
        template = value.replace("{**}", "**").replace("{*}", "*")
        config = uri_template_match_pb2.UriTemplateMatchConfig(path_template=template)
        return Permission(uri_template=extension_pb2.TypedExtensionConfig(name=URI_TEMPLATE_MATCHER, typed_config=typed(config)))
    # url_path: the path without its query string, as Istio matches it.
    return Permission(url_path=path_pb2.PathMatcher(path=_string(value)))


# --- Conditions -----------------------------------------------------------------------


def _conditions(conditions: Sequence[Condition], scope: RuleScope) -> tuple[list[Principal], list[Permission]]:
    peer: list[Principal] = []
    destination: list[Permission] = []
    for condition in conditions:
        key, values, not_values = condition.key or "", condition.values, condition.not_values
        make_rule = _DESTINATION_KEYS.get(key) or (_envoy_filter_rule(key) if key.startswith("experimental.envoy.filters.") else None)
        if make_rule is not None:
            destination += _rules(values, not_values, lambda v, m=make_rule: m(v, scope), scope)
            continue
        make_id = _peer_id_maker(key, scope)
        peer += _ids(values, not_values, make_id, scope)
    return peer, destination


def _peer_id_maker(key: str, scope: RuleScope) -> Callable[[str], Principal]:
    if key.startswith("request.headers[") or key.startswith("request.experimental.inline.headers["):
        name = key[key.index("[") + 1 : -1]
        return lambda v: _header_id(name, v, scope)
    if key.startswith("request.auth.claims["):
        claims = key.removeprefix("request.auth.claims[").removesuffix("]").split("][")
        return lambda v: _claim(claims, v, scope)
    plain: dict[str, Callable[[str], Principal]] = {
        "source.ip": lambda v: Principal(direct_remote_ip=_cidr(v)),
        "remote.ip": lambda v: Principal(remote_ip=_cidr(v)),
        "source.namespace": _peer_namespace,
        "source.principal": _peer_principal,
        "source.serviceAccount": lambda v: _service_account(v, scope),
        "request.auth.principal": lambda v: _request_principal(v, scope),
        "request.auth.audiences": lambda v: _claim(["aud"], v, scope),
        "request.auth.presenter": lambda v: _claim(["azp"], v, scope),
    }
    if key not in plain:
        raise ValueError(f"unknown condition key {key!r}")
    return plain[key]


def _header_id(name: str, value: str, scope: RuleScope) -> Principal:
    _http_only(scope)
    return Principal(header=_header_matcher(name, value))


def _claim(path: list[str], value: str, scope: RuleScope) -> Principal:
    _http_only(scope)
    return _claim_id(path, _string(value))


def _claim_id(path: list[str], matcher: StringMatcher) -> Principal:
    """A claim of the verified token: a string equal to the value, or a list holding it (``aud`` often is one)."""
    one = value_pb2.ValueMatcher(string_match=matcher)
    either = value_pb2.ValueMatcher(
        or_match=value_pb2.OrMatcher(value_matchers=[one, value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=one))])
    )
    segments = [metadata_pb2.MetadataMatcher.PathSegment(key=k) for k in (JWT_PAYLOAD_KEY, *path)]
    matcher = metadata_pb2.MetadataMatcher(filter=JWT_FILTER, path=segments, value=either)
    return Principal(sourced_metadata=rbac_pb2.SourcedMetadata(metadata_matcher=matcher))


def _destination_ip(value: str, _scope: RuleScope) -> Permission:
    return Permission(destination_ip=_cidr(value))


def _sni(value: str, _scope: RuleScope) -> Permission:
    return Permission(requested_server_name=_string(value))


def _envoy_filter_rule(key: str) -> Callable[[str, RuleScope], Permission]:
    """``experimental.envoy.filters.a.b[c]``: dynamic metadata key ``c`` of filter ``envoy.filters.a.b``."""
    filter_name, _, field = key.removeprefix("experimental.").removesuffix("]").partition("[")

    def make(value: str, _scope: RuleScope) -> Permission:
        if value.startswith("[") and value.endswith("]"):
            inner = value_pb2.ValueMatcher(string_match=_string(value[1:-1]))
            matcher = value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=inner))
        else:
            matcher = value_pb2.ValueMatcher(string_match=_string(value))
        segment = metadata_pb2.MetadataMatcher.PathSegment(key=field)
        metadata = metadata_pb2.MetadataMatcher(filter=filter_name, path=[segment], value=matcher)
        return Permission(sourced_metadata=rbac_pb2.SourcedMetadata(metadata_matcher=metadata))

    return make


_DESTINATION_KEYS: dict[str, Callable[[str, RuleScope], Permission]] = {
    "destination.ip": _destination_ip,
    "destination.port": _port,
    "connection.sni": _sni,
}


# --- Matchers ------------------------------------------------------------------------------


def _string(value: str, *, prefix: str = "") -> StringMatcher:
    """Istio's value forms: '*' any non-empty value, '*x' suffix, 'x*' prefix, else exact."""
    if value == "*":
        return _regex(".+")
    if value.startswith("*"):
        if prefix:
            return _regex(_quote(prefix) + ".*" + _quote(value[1:]))
        return StringMatcher(suffix=value[1:])
    if value.endswith("*"):
        return StringMatcher(prefix=prefix + value[:-1])
    return StringMatcher(exact=prefix + value)


def _quote(text: str) -> str:
    """``text`` as a literal inside an RE2 pattern (only the metacharacters escaped, so it stays readable)."""
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in text)


_REGEX_SPECIAL = frozenset("\\.^$|?*+()[]{}")


def _regex(pattern: str) -> StringMatcher:
    return StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=pattern))


def _header_matcher(name: str, value: str) -> route_pb2.HeaderMatcher:
    if value == "*":
        return route_pb2.HeaderMatcher(name=name, present_match=True)
    return route_pb2.HeaderMatcher(name=name, string_match=_string(value))


def _cidr(value: str) -> address_pb2.CidrRange:
    network = ipaddress.ip_network(value, strict=False)
    address = value.split("/", 1)[0]
    return address_pb2.CidrRange(address_prefix=address, prefix_len=wrappers_pb2.UInt32Value(value=network.prefixlen))
