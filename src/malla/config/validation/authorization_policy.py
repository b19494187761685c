"""Semantic rules of AuthorizationPolicy, as Istio's validation webhook applies them.

What Istio rejects is an error; what it accepts but will not do what the
author most likely meant (a DENY rule made of HTTP-only attributes, a path
with '*' in the middle) is a warning. Condition attributes follow
https://istio.io/latest/docs/reference/config/security/conditions/.
Selection (``selector``, ``targetRef``, ``targetRefs``) follows the shared
policy-attachment rules of ``common_selectors``; the ``istio.io/dry-run``
annotation's value and action are checked here, its kind in ``validate_spec``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic.alias_generators import to_camel

from malla.api.security.authorization_policy import AuthorizationPolicy, Condition, Operation, Rule, Source
from malla.config.validation import DRY_RUN_ANNOTATION, Finding, Findings, ValidationContext
from malla.config.validation.common import check_ip_or_cidr, join
from malla.config.validation.common_selectors import check_selection

_SOURCE_FIELDS = tuple(Source.model_fields)
_OPERATION_FIELDS = tuple(Operation.model_fields)
_IP_FIELDS = ("ip_blocks", "not_ip_blocks", "remote_ip_blocks", "not_remote_ip_blocks")
_SERVICE_ACCOUNT_FIELDS = ("service_accounts", "not_service_accounts")
_PEER_IDENTITY_FIELDS = ("principals", "not_principals", "namespaces", "not_namespaces")
# Source fields a TCP connection has (everything but the JWT's request principals).
_TCP_SOURCE_FIELDS = tuple(f for f in _SOURCE_FIELDS if "request_principals" not in f)
# Identity matchers Istio does not support in CUSTOM (external authorizer) policies.
_CUSTOM_UNSUPPORTED_SOURCE = _PEER_IDENTITY_FIELDS + _SERVICE_ACCOUNT_FIELDS + ("request_principals", "not_request_principals")
_CUSTOM_UNSUPPORTED_KEYS = ("source.namespace", "source.serviceAccount", "source.principal")
# Istio parses the dry-run annotation's value with Go's ParseBool.
_GO_BOOLS = ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False")


def validate(spec: AuthorizationPolicy, ctx: ValidationContext) -> Iterable[Finding]:
    findings = Findings()
    check_selection(findings, selector=spec.selector, target_ref=spec.target_ref, target_refs=spec.target_refs)
    action = spec.action or "ALLOW"
    _check_action(spec, action, findings)
    _check_dry_run(ctx.annotations.get(DRY_RUN_ANNOTATION), action, findings)
    for i, rule in enumerate(spec.rules):
        _check_rule(rule, findings, path=join("spec.rules", i), action=action)
    return findings


def _check_action(spec: AuthorizationPolicy, action: str, findings: Findings) -> None:
    if spec.provider is not None and action != "CUSTOM":
        findings.error("spec.provider", f"provider is only allowed with action CUSTOM, found action {action}")
    if action == "CUSTOM":
        if not spec.rules:
            findings.error(
                "spec.rules",
                "CUSTOM action without rules is never triggered; add an empty rule {} to apply it to every request",
            )
        if spec.provider is None or not spec.provider.name:
            findings.error(
                "spec.provider.name",
                "CUSTOM action requires provider.name: the name of an extension provider declared in MeshConfig",
            )
        elif spec.rules:
            # malla's MeshConfig has no extensionProviders: the external authorizer can never be asked.
            findings.warning(
                "spec.provider.name",
                f"extension provider {spec.provider.name!r} is not declared (malla's MeshConfig has no extension "
                "providers), so the requests this CUSTOM policy would send for checking are denied (fail closed); "
                "use ALLOW or DENY rules instead",
            )
    elif action == "DENY" and not spec.rules:
        findings.error(
            "spec.rules",
            "DENY action without rules is never triggered; add an empty rule {} to deny every request",
        )
    elif action == "AUDIT" and not spec.rules:
        findings.warning("spec.rules", "AUDIT action without rules never matches, so nothing is audited; add rules")


def _check_dry_run(value: str | None, action: str, findings: Findings) -> None:
    if value is None:
        return
    path = f"metadata.annotations[{DRY_RUN_ANNOTATION}]"
    if action not in ("ALLOW", "DENY"):
        findings.error(path, f"the {DRY_RUN_ANNOTATION} annotation only works with action ALLOW or DENY, found action {action}")
    elif value not in _GO_BOOLS:
        findings.error(path, f"invalid {DRY_RUN_ANNOTATION} value {value!r}: use \"true\" or \"false\"")


def _check_rule(rule: Rule, findings: Findings, *, path: str, action: str) -> None:
    # An absent list matches anything; a list written empty is a mistake Istio rejects.
    for field, key in (("from_", "from"), ("to", "to")):
        if field in rule.model_fields_set and not getattr(rule, field):
            findings.error(join(path, key), f"{key} must not be empty: remove it to match any request, or list at least one entry")
    for j, item in enumerate(rule.from_):
        source_path = join(path, "from", j, "source")
        if item.source is None:
            findings.error(source_path, "from entry needs a source: set source with at least one field")
        else:
            _check_source(item.source, findings, path=source_path, action=action)
    for j, item in enumerate(rule.to):
        operation_path = join(path, "to", j, "operation")
        if item.operation is None:
            findings.error(operation_path, "to entry needs an operation: set operation with at least one field")
        else:
            _check_operation(item.operation, findings, path=operation_path)
    for j, condition in enumerate(rule.when):
        _check_condition(condition, findings, path=join(path, "when", j), action=action)
    if action == "DENY" and _denies_all_tcp(rule):
        findings.warning(
            path,
            "this DENY rule uses only HTTP attributes, so it denies all traffic to TCP ports in its scope "
            "(attributes a TCP connection lacks count as matching); scope it with to.operation.ports",
        )


def _check_source(source: Source, findings: Findings, *, path: str, action: str) -> None:
    if not any(getattr(source, f) for f in _SOURCE_FIELDS):
        findings.error(path, "source must not be empty: set principals, namespaces, serviceAccounts, ipBlocks or another field")
        return
    if any(getattr(source, f) for f in _SERVICE_ACCOUNT_FIELDS) and any(getattr(source, f) for f in _PEER_IDENTITY_FIELDS):
        findings.error(
            path,
            "serviceAccounts/notServiceAccounts cannot be combined with principals or namespaces in one source; "
            "use separate from entries",
        )
    for field in _SOURCE_FIELDS:
        values = getattr(source, field)
        field_path = join(path, to_camel(field))
        if action == "CUSTOM" and field in _CUSTOM_UNSUPPORTED_SOURCE and values:
            findings.error(field_path, f"{to_camel(field)} is not supported with action CUSTOM")
        if field in _SERVICE_ACCOUNT_FIELDS and len(values) > 16:
            findings.error(field_path, f"at most 16 service accounts are allowed, found {len(values)}")
        for k, value in enumerate(values):
            problem = _empty_value(value, to_camel(field))
            if problem is None and field in _IP_FIELDS:
                problem = check_ip_or_cidr(value)
            if problem is None and field in _SERVICE_ACCOUNT_FIELDS:
                problem = _check_service_account(value)
            if problem:
                findings.error(join(field_path, k), problem)


def _check_operation(operation: Operation, findings: Findings, *, path: str) -> None:
    if not any(getattr(operation, f) for f in _OPERATION_FIELDS):
        findings.error(path, "operation must not be empty: set hosts, ports, methods, paths or a not- field")
        return
    for field in _OPERATION_FIELDS:
        field_path = join(path, to_camel(field))
        for k, value in enumerate(getattr(operation, field)):
            item_path = join(field_path, k)
            problem = _empty_value(value, to_camel(field))
            if problem:
                findings.error(item_path, problem)
                continue
            check = _OPERATION_VALUE_CHECKS.get(field.removeprefix("not_"))
            finding = check(value) if check else None
            if finding:
                level, message = finding
                (findings.error if level == "error" else findings.warning)(item_path, message)


def _check_condition(condition: Condition, findings: Findings, *, path: str, action: str) -> None:
    key = condition.key
    if not key:
        findings.error(join(path, "key"), "key is required: an Istio attribute such as request.headers[x-user] or source.ip")
        return
    if not condition.values and not condition.not_values:
        findings.error(path, f"at least one of values or notValues must be set for key {key}")
        return
    if action == "CUSTOM" and (key in _CUSTOM_UNSUPPORTED_KEYS or key.startswith("request.auth.")):
        findings.error(join(path, "key"), f"condition key {key} is not supported with action CUSTOM")
    key_problem = _condition_key_problem(key)
    if key_problem:
        findings.error(join(path, "key"), key_problem)
    for field, values in (("values", condition.values), ("notValues", condition.not_values)):
        for k, value in enumerate(values):
            problem = _empty_value(value, field) or (None if key_problem else _condition_value_problem(key, value))
            if problem:
                findings.error(join(path, field, k), problem)


def _empty_value(value: str, field: str) -> str | None:
    if value == "":
        return f"empty value is not allowed in {field}; remove it, or use '*' to match any non-empty value"
    return None


def _denies_all_tcp(rule: Rule) -> bool:
    """Istio's test: a rule whose matchers a plain TCP connection cannot satisfy nor fail."""
    sources = [item.source for item in rule.from_ if item.source is not None]
    operations = [item.operation for item in rule.to if item.operation is not None]
    tcp_in_from = any(getattr(s, f) for s in sources for f in _TCP_SOURCE_FIELDS)
    tcp_in_to = any(op.ports or op.not_ports for op in operations)
    return bool((sources and not operations and not tcp_in_from) or (operations and not tcp_in_to))


# --- Values of rule fields and conditions -------------------------------------

_DIGITS = re.compile(r"[0-9]+")
_SA_FORM = "write 'serviceAccount' or 'namespace/serviceAccount'"


def _check_service_account(value: str) -> str | None:
    if "*" in value:
        return f"wildcard in service account {value!r} is not allowed; {_SA_FORM}"
    if value.count("/") > 1:
        return f"invalid service account {value!r}: {_SA_FORM}"
    if len(value) > 320:
        return f"service account {value!r} is longer than 320 characters"
    namespace, slash, name = value.partition("/")
    if slash and not (namespace and name):
        missing = "namespace" if not namespace else "service account name"
        return f"invalid service account {value!r}: empty {missing}; {_SA_FORM}"
    return None


def _port_finding(value: str) -> tuple[str, str] | None:
    if not _DIGITS.fullmatch(value) or int(value) > 65535:
        return "error", f"invalid port {value!r}: must be a number between 1 and 65535, written as a string such as \"8080\""
    if int(value) == 0:
        return "warning", "port 0 never matches a connection; use a port between 1 and 65535"
    return None


def _method_finding(value: str) -> tuple[str, str] | None:
    if value.startswith("/"):
        return "warning", (
            f"method {value!r} looks like a gRPC method name: gRPC requests all have method POST, "
            "match the name /package.Service/Method in paths instead"
        )
    if value != value.upper():
        return "warning", f"HTTP methods are case-sensitive: {value!r} never matches a {value.upper()} request; write {value.upper()!r}"
    return None


_TEMPLATES = ("{*}", "{**}")
# RFC 3986 pchar, what Envoy's URI template matcher accepts between templates.
_PATH_LITERAL = re.compile(r"[a-zA-Z0-9\-._~%!$&'()+,;:@=]+")


def _path_template_problem(path: str) -> str | None:
    has_template = any(t in path for t in _TEMPLATES)
    seen_any = False
    for segment in path.strip("/").split("/"):
        if segment in _TEMPLATES:
            if seen_any:
                return f"invalid path {path!r}: {{**}} must be the last operator of a path template"
            seen_any = segment == "{**}"
            continue
        if "{" in segment or "}" in segment:
            return f"invalid path {path!r}: '{{' and '}}' are only allowed as the whole-segment templates {{*}} and {{**}}"
        if has_template and not _PATH_LITERAL.fullmatch(segment):
            return (
                f"invalid path {path!r}: segment {segment!r} of a path template must be a non-empty literal "
                "of letters, digits and -._~%!$&'()+,;:@="
            )
    return None


def _path_finding(value: str) -> tuple[str, str] | None:
    problem = _path_template_problem(value)
    if problem:
        return "error", problem
    if value == "*" or any(t in value for t in _TEMPLATES):
        return None
    if not value.startswith(("/", "*")):
        return "warning", f"path {value!r} never matches: request paths start with '/'"
    # Istio turns one leading '*' into a suffix match and one trailing '*' into a prefix match.
    core = value[1:] if value.startswith("*") else value.removesuffix("*")
    if "*" in core:
        return "warning", (
            f"'*' inside path {value!r} is matched literally: only a leading '*' (suffix match) or a trailing '*' "
            "(prefix match) is a wildcard; use the path templates {*} or {**} to match whole segments"
        )
    return None


_OPERATION_VALUE_CHECKS = {"ports": _port_finding, "methods": _method_finding, "paths": _path_finding}

_MAP_KEY_PREFIXES = ("request.headers", "request.experimental.inline.headers", "request.auth.claims", "experimental.envoy.filters.")
_IP_KEYS = ("source.ip", "remote.ip", "destination.ip")
_PLAIN_KEYS = _IP_KEYS + (
    "source.namespace",
    "source.principal",
    "source.serviceAccount",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "destination.port",
    "connection.sni",
)
_SUPPORTED_KEYS = (
    "request.headers[<name>], source.ip, remote.ip, source.namespace, source.principal, source.serviceAccount, "
    "request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[<claim>], "
    "destination.ip, destination.port, connection.sni, experimental.envoy.filters.<filter>[<key>]"
)


def _condition_key_problem(key: str) -> str | None:
    for prefix in _MAP_KEY_PREFIXES:
        if key.startswith(prefix):
            open_at = key.find("[")
            if key.endswith("]") and 0 < open_at < len(key) - 2:
                return None
            return f"invalid key {key!r}: must have the form name[key], such as request.headers[x-user] or request.auth.claims[iss]"
    if key in _PLAIN_KEYS:
        return None
    if key == "destination.namespace":
        return "attribute destination.namespace is replaced by the policy's own namespace (metadata.namespace); remove it"
    if key.startswith("destination.labels"):
        return "attribute destination.labels is replaced by the workload selector: use spec.selector.matchLabels"
    if key in ("destination.name", "destination.user"):
        return f"attribute {key} is no longer supported (it was only in the v1alpha1 RBAC API); remove it"
    return f"unknown attribute {key!r}: supported keys are {_SUPPORTED_KEYS}"


def _condition_value_problem(key: str, value: str) -> str | None:
    if key in _IP_KEYS:
        return check_ip_or_cidr(value)
    if key == "destination.port":
        finding = _port_finding(value)
        return finding[1] if finding and finding[0] == "error" else None
    if key == "source.serviceAccount":
        return _check_service_account(value)
    return None
