"""Host names as Istio judges them, shared by every kind that names a host or a service.

Istio's grammar (``pkg/config/validation/agent``): an FQDN is dot-separated
DNS-1123 labels of either case (no '_'), at most 255 characters, with an
optional trailing dot and a top-level domain that is not all digits
(``ValidateFQDN``); a wildcard domain may start its first label with '*',
'*-' or be '*' alone (``ValidateWildcardDomain``). Gateway and Sidecar
hosts are 'namespace/dnsName' entries; hosts match and cover each other
as Istio's ``host.Name`` does. Also here: subset names and Kubernetes'
stricter lower-case names (service accounts).

Value checks return the problem as text, or None.
"""

from __future__ import annotations

import re

from malla.config.validation.common import DNS1123_LABEL_FORMAT, DNS1123_LABEL_MAX, is_dns1123_label, is_ip

_FQDN_MAX = 255
_SUBDOMAIN_MAX = 253
_WILDCARD_LABEL = re.compile(rf"\*|(?:\*|\*-)?{DNS1123_LABEL_FORMAT}")
_LOWER_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
_LABEL_RULE = "1-63 letters, digits or '-', starting and ending with a letter or digit"


def is_dns1123_subdomain(value: str) -> bool:
    """Kubernetes' object names (service accounts, Secrets): lower-case labels joined by dots."""
    return 0 < len(value) <= _SUBDOMAIN_MAX and all(_LOWER_LABEL.fullmatch(p) for p in value.split("."))


def _check_length(name: str) -> str | None:
    if not name:
        return "host must not be empty: give a DNS name such as 'api.example.com'"
    if len(name) > _FQDN_MAX:
        return f"host {name[:40]!r}... is longer than {_FQDN_MAX} characters"
    return None


def _check_labels(domain: str, *, shown: str) -> str | None:
    """Istio's ValidateDNS1123Labels on ``domain``; messages name the whole host ``shown``."""
    parts = domain.split(".")
    if parts[-1].isascii() and parts[-1].isdigit():
        return f"invalid host {shown!r}: the top-level domain {parts[-1]!r} cannot be all digits"
    for i, label in enumerate(parts):
        if i == len(parts) - 1 and label == "":
            return None  # a trailing dot, as in 'istio.io.'
        if "*" in label:
            return f"invalid host {shown!r}: a wildcard '*' is only allowed at the start of the first label, as in '*.example.com'"
        if not is_dns1123_label(label):
            return f"invalid host {shown!r}: label {label!r} must be {_LABEL_RULE}"
    return None


def check_fqdn(name: str) -> str | None:
    """Istio's ValidateFQDN: a DNS name without wildcards; upper case is allowed, '_' is not."""
    return _check_length(name) or _check_labels(name, shown=name)


def check_wildcard_domain(name: str) -> str | None:
    """Istio's ValidateWildcardDomain: an FQDN whose first label may be '*', '*foo' or '*-foo'."""
    if problem := _check_length(name):
        return problem
    first, dot, rest = name.partition(".")
    if len(first) > DNS1123_LABEL_MAX or not _WILDCARD_LABEL.fullmatch(first):
        return (
            f"invalid host {name!r}: label {first!r} must be {_LABEL_RULE}, optionally after a leading "
            "wildcard '*' as in '*.example.com'"
        )
    return _check_labels(rest, shown=name) if dot else None


def check_partial_wildcard(name: str) -> str | None:
    """Istio's ValidatePartialWildCard: '*' alone or a whole '*.' first label, not '*foo.com'."""
    if "*" in name and name != "*" and not name.startswith("*."):
        return f"partial wildcard {name!r} is not supported: use '*' or a '*.' prefix such as '*.example.com'"
    return None


def check_gateway_bound_host(host: str, *, sni: bool) -> str | None:
    """Hosts of a VirtualService bound to gateways: SNI routes may also name AUTO_PASSTHROUGH's outbound_.<port>_._.<host>."""
    if not (sni and host.startswith("outbound_")):
        return check_wildcard_domain(host)
    form = "outbound_.<port>_._.<hostname>"
    parts = host.split("_")
    if len(parts) < 4 or parts[0] != "outbound":
        return f"invalid host {host!r}: auto-generated SNI names follow {form}"
    if not re.search(r"[0-9]", parts[1].strip(".")) or not re.search(r"[a-zA-Z]", parts[3].strip(".")):
        return f"invalid host {host!r}: auto-generated SNI names follow {form}"
    return None


def check_subset_name(name: str | None) -> str | None:
    """Istio's validateSubsetName: a DNS-1123 label (upper case allowed)."""
    if not name:
        return "subset name cannot be empty"
    if not is_dns1123_label(name):
        return f"invalid subset name {name!r}: must be a DNS-1123 label ({_LABEL_RULE})"
    return None


# --- 'namespace/dnsName' entries of Gateway servers and Sidecar egress listeners ------------


def _hostname_part_errors(name: str, *, gateway: bool) -> list[str]:
    errors = []
    if name != "*" and "." not in name:
        errors.append(f"short name {name!r} is not allowed: use a fully qualified name such as 'foo.example.com'")
    problem = check_wildcard_domain(name)
    if problem and not (gateway and is_ip(name)):
        errors.append(problem)  # gateways may also serve an IP address as host
    if problem := check_partial_wildcard(name):
        errors.append(problem)
    return errors


def namespace_host_errors(host: str, *, gateway: bool) -> list[str]:
    """Istio's ValidateNamespaceSlashWildcardHostname.

    Gateways also accept a bare host (meaning '*/host'); sidecars need the
    namespace part, which may be '*', '.', '~' (sidecars only) or a namespace.
    """
    namespace, slash, name = host.partition("/")
    if not slash:
        if gateway:
            return _hostname_part_errors(host, gateway=True)
        return [
            f"host {host!r} must be of the form namespace/dnsName, for example 'istio-system/*' or '*/foo.example.com'"
        ]
    errors = []
    if not namespace or not name:
        errors.append(f"host {host!r}: neither the namespace nor the dnsName of namespace/dnsName may be empty")
    allowed = {"*", "."} if gateway else {"*", ".", "~"}
    if namespace and namespace not in allowed and not is_dns1123_label(namespace):
        kind = "gateway" if gateway else "sidecar"
        spelled = "'*', '.' or a namespace name" if gateway else "'*', '.', '~' or a namespace name"
        errors.append(f"invalid namespace {namespace!r} in {kind} host {host!r}: use {spelled}")
    return errors + _hostname_part_errors(name, gateway=gateway)


# --- Matching ----------------------------------------------------------------------------


def host_matches(a: str, b: str) -> bool:
    """Istio's host.Name.Matches: equal, or one wildcard covers the other."""
    if a.startswith("*") and b.startswith("*"):
        return a[1:].endswith(b[1:]) if len(a) >= len(b) else b[1:].endswith(a[1:])
    if a.startswith("*"):
        return b.endswith(a[1:])
    if b.startswith("*"):
        return a.endswith(b[1:])
    return a == b


def host_subset_of(a: str, b: str) -> bool:
    """Istio's host.Name.SubsetOf: every name matching a also matches b."""
    if b.startswith("*"):
        return a.endswith(b[1:]) and (not a.startswith("*") or len(a) >= len(b))
    return a == b
