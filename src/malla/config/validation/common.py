"""Rules shared by several kinds: names, hosts, ports, regexes, durations, selectors.

Each check returns an error message (str) or None, so callers attach the
field path they know. Messages say what is wrong and what is allowed.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import re2

from malla.api.base import Duration

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # RE2 would print every bad pattern to stderr

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN_MAX = 253
_DNS1123_LABEL_MAX = 63
# Kubernetes qualified names and label values.
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_HOST_LABEL = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?$")


def check_dns1123_label(value: str, what: str = "name") -> str | None:
    if len(value) > _DNS1123_LABEL_MAX or not _DNS1123_LABEL.match(value):
        return (
            f"invalid {what} {value!r}: must be a DNS-1123 label (lower-case letters, digits and '-', "
            f"starting and ending with a letter or digit, at most {_DNS1123_LABEL_MAX} characters)"
        )
    return None


def check_dns1123_subdomain(value: str, what: str = "name") -> str | None:
    if not value or len(value) > _DNS1123_SUBDOMAIN_MAX or any(
        not _DNS1123_LABEL.match(part) for part in value.split(".")
    ):
        return (
            f"invalid {what} {value!r}: must be a DNS-1123 subdomain (dot-separated lower-case labels of "
            f"letters, digits and '-', at most {_DNS1123_SUBDOMAIN_MAX} characters)"
        )
    return None


def check_port_name(value: str) -> str | None:
    """Istio port names: a DNS-1123 label."""
    return check_dns1123_label(value, "port name")


def check_port(value: int, what: str = "port number") -> str | None:
    if not 1 <= value <= 65535:
        return f"invalid {what} {value}: must be between 1 and 65535"
    return None


def check_fqdn(host: str) -> str | None:
    """A DNS name: labels of letters, digits, '-' and '_', up to 255 characters."""
    if not host:
        return "host must not be empty"
    if len(host) > 255:
        return f"host {host!r} is longer than 255 characters"
    for label in host.rstrip(".").split("."):
        if not label or len(label) > 63 or not _HOST_LABEL.match(label):
            return (
                f"invalid host {host!r}: each dot-separated part must be 1-63 letters, digits, '-' or '_', "
                "not starting or ending with '-'"
            )
    return None


def check_wildcard_host(host: str) -> str | None:
    """A host that may start with '*' ('*', '*.example.com', '*example.com' are not all the same)."""
    if host == "*":
        return None
    if host.startswith("*."):
        return check_fqdn(host[2:])
    if host.startswith("*"):
        return check_fqdn(host[1:])
    if "*" in host:
        return f"invalid host {host!r}: a wildcard '*' is only allowed as the first character"
    return check_fqdn(host)


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_cidr(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


def check_ip_or_cidr(value: str) -> str | None:
    if is_ip(value) or is_cidr(value):
        return None
    return f"invalid address {value!r}: expected an IP address or a CIDR range such as 10.0.0.0/8"


def check_regex(pattern: str) -> str | None:
    """Envoy evaluates regexes with RE2: check with RE2, not Python's re."""
    try:
        re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        return f"invalid regex {pattern!r}: {detail} (Envoy uses RE2 syntax: no lookaround or backreferences)"
    return None


def check_positive_duration(value: Duration | None, what: str = "duration") -> str | None:
    if value is None:
        return None
    if value.nanos <= 0:
        return f"{what} must be greater than 0, got {value}"
    if value.nanos < 1_000_000:
        return f"{what} must be at least 1ms, got {value}"
    return None


def check_non_negative_duration(value: Duration | None, what: str = "duration") -> str | None:
    if value is not None and value.nanos < 0:
        return f"{what} must not be negative, got {value}"
    return None


def check_label_selector(labels: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, message) for each invalid label key or value in a selector."""
    problems: list[tuple[str, str]] = []
    for key, value in labels.items():
        name = key.rsplit("/", 1)[-1]
        prefix = key.rsplit("/", 1)[0] if "/" in key else None
        if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name) or (
            prefix is not None and check_dns1123_subdomain(prefix, "label prefix")
        ):
            problems.append((key, f"invalid label key {key!r}: must be a qualified name such as 'app' or 'example.com/tier'"))
        elif "*" in str(value) and str(value) != "*":
            problems.append((key, f"invalid label value {value!r}: wildcards are not allowed in label values"))
        elif len(str(value)) > 63 or not _LABEL_VALUE.match(str(value)):
            problems.append((key, f"invalid label value {value!r} for {key!r}: at most 63 letters, digits, '-', '_' or '.'"))
    return problems


def join(path: str, *parts: str | int) -> str:
    """Extend a field path: join('spec.http', 0, 'route') -> 'spec.http[0].route'."""
    out = path
    for part in parts:
        out = f"{out}[{part}]" if isinstance(part, int) else (f"{out}.{part}" if out else part)
    return out
