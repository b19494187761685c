"""istio.security.v1beta1.AuthorizationPolicy (security.istio.io v1 and v1beta1).

Access control on workloads: an action (ALLOW, DENY, AUDIT or CUSTOM) taken
when a request matches any rule; a rule matches when one source, one
operation and every condition match. Field lists follow istio/api
``security/v1beta1/authorization_policy.proto``.
"""

from __future__ import annotations

from pydantic import Field

from malla.api.base import IstioModel, Str, proto_enum
from malla.api.security.common import PolicyTargetReference, WorkloadSelector

Action = proto_enum("ALLOW", "DENY", "AUDIT", "CUSTOM")


class Source(IstioModel):
    """Who sent the request; the fields are ANDed, the values of one field ORed."""

    principals: list[Str] = Field(default_factory=list)
    not_principals: list[Str] = Field(default_factory=list)
    request_principals: list[Str] = Field(default_factory=list)
    not_request_principals: list[Str] = Field(default_factory=list)
    namespaces: list[Str] = Field(default_factory=list)
    not_namespaces: list[Str] = Field(default_factory=list)
    service_accounts: list[Str] = Field(default_factory=list)
    not_service_accounts: list[Str] = Field(default_factory=list)
    ip_blocks: list[Str] = Field(default_factory=list)
    not_ip_blocks: list[Str] = Field(default_factory=list)
    remote_ip_blocks: list[Str] = Field(default_factory=list)
    not_remote_ip_blocks: list[Str] = Field(default_factory=list)
    trust_domains: list[Str] = Field(default_factory=list)
    not_trust_domains: list[Str] = Field(default_factory=list)


class Operation(IstioModel):
    """What the request does; the fields are ANDed, the values of one field ORed."""

    hosts: list[Str] = Field(default_factory=list)
    not_hosts: list[Str] = Field(default_factory=list)
    ports: list[Str] = Field(default_factory=list)
    not_ports: list[Str] = Field(default_factory=list)
    methods: list[Str] = Field(default_factory=list)
    not_methods: list[Str] = Field(default_factory=list)
    paths: list[Str] = Field(default_factory=list)
    not_paths: list[Str] = Field(default_factory=list)


class Condition(IstioModel):
    """An extra attribute the request must (or must not) have, e.g. request.auth.claims[iss]."""

    key: Str | None = None
    values: list[Str] = Field(default_factory=list)
    not_values: list[Str] = Field(default_factory=list)


class RuleFrom(IstioModel):
    """Rule.From: one source."""

    source: Source | None = None


class RuleTo(IstioModel):
    """Rule.To: one operation."""

    operation: Operation | None = None


class Rule(IstioModel):
    """Matches when one of ``from``, one of ``to`` and all of ``when`` match; {} always matches."""

    # "from" is a Python keyword: the field is from_, the YAML key stays "from".
    from_: list[RuleFrom] = Field(default_factory=list, alias="from")
    to: list[RuleTo] = Field(default_factory=list)
    when: list[Condition] = Field(default_factory=list)


class ExtensionProvider(IstioModel):
    """The MeshConfig extension provider a CUSTOM policy delegates to."""

    name: Str | None = None


class AuthorizationPolicy(IstioModel):
    """Spec of an AuthorizationPolicy; an unset action means ALLOW."""

    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    action: Action | None = None
    provider: ExtensionProvider | None = None
