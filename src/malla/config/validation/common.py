"""Rules every kind may need: field paths, DNS labels, addresses, regexes, durations, percentages, header names, exportTo.

Two shapes of check live here and in the themed ``common_*`` modules:
``check_x(value) -> str | None`` judges one value and returns what is
wrong (the caller attaches the field path it knows), while
``check_x(f, value, *, path=...)`` walks a list or map and records its
own findings. Messages say what is wrong and what is allowed.

The themed modules: ``common_hosts`` (FQDNs, wildcard domains,
'namespace/host' entries, subset names), ``common_ports`` (ports, port
names, protocols, bind and Unix socket addresses), ``common_selectors``
(labels, workload selectors, targetRef(s)) and ``common_wasm`` (the Wasm
module fields WasmPlugin and TrafficExtension share).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

import re2

from malla.api.base import Duration
from malla.config.validation import Findings

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # RE2 would print every bad pattern to stderr

_NS_PER_MS = 1_000_000
# Istio's labels.IsDNS1123Label (pkg/config/labels): unlike Kubernetes' names, upper case is allowed.
DNS1123_LABEL_FORMAT = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_DNS1123_LABEL = re.compile(DNS1123_LABEL_FORMAT)
DNS1123_LABEL_MAX = 63
_DIGITS = re.compile(r"[0-9]+")
# Istio's ValidateHTTPHeaderName.
_HEADER_NAME = re.compile(r"[-_A-Za-z0-9]+")


# --- Field paths ------------------------------------------------------------------


def join(path: str, *parts: str | int) -> str:
    """Extend a field path: join('spec.http', 0, 'route') -> 'spec.http[0].route'."""
    out = path
    for part in parts:
        out = f"{out}[{part}]" if isinstance(part, int) else (f"{out}.{part}" if out else part)
    return out


def key(path: str, name: str) -> str:
    """Path of a map entry, Kubernetes style: key('spec.labels', 'app') -> 'spec.labels[app]'."""
    return f"{path}[{name}]"


# --- Names -------------------------------------------------------------------------


def is_dns1123_label(value: str) -> bool:
    """A DNS-1123 label as Istio reads it: letters of either case, digits and '-', at most 63 long.

    Istio applies it to namespaces, gateway and subset names, port names and
    host labels; Kubernetes' stricter lower-case rule is ``is_dns1123_subdomain``
    in ``common_hosts``, for names Kubernetes itself must accept.
    """
    return len(value) <= DNS1123_LABEL_MAX and bool(_DNS1123_LABEL.fullmatch(value))


# --- Addresses ---------------------------------------------------------------------


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def check_ip_or_cidr(value: str) -> str | None:
    """Istio's ValidateIPSubnet: one address, or address/prefix-length (no netmask form such as /255.0.0.0)."""
    address, slash, length = value.partition("/")
    if slash and not _DIGITS.fullmatch(length):
        return f"invalid CIDR {value!r}: the prefix length must be a number, as in 10.0.0.0/8"
    try:
        if slash:
            ipaddress.ip_network(value, strict=False)
        else:
            ipaddress.ip_address(address)
    except ValueError:
        return f"invalid address {value!r}: expected an IP address or a CIDR range such as 10.0.0.0/8"
    return None


# --- Regexes, header names ----------------------------------------------------------


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


def check_http_header_name(name: str) -> str | None:
    """Istio's ValidateHTTPHeaderName: letters, digits, '-' and '_'."""
    if not _HEADER_NAME.fullmatch(name):
        return f"invalid header name {name!r}: use one or more letters, digits, '-' and '_'"
    return None


# --- Durations and percentages -------------------------------------------------------


def check_duration(value: Duration | None, what: str = "duration") -> str | None:
    """Istio's ValidateDuration: at least 1ms, in whole milliseconds (Envoy's timers tick in ms)."""
    if value is None:
        return None
    if value.nanos < _NS_PER_MS:
        return f"{what} must be at least 1ms, got {value}"
    if value.nanos % _NS_PER_MS:
        return f"{what} must be given in whole milliseconds, got {value}"
    return None


def check_non_negative_duration(value: Duration | None, what: str = "duration") -> str | None:
    if value is not None and value.nanos < 0:
        return f"{what} must not be negative, got {value}"
    return None


def check_percent(value: float | None, what: str = "percent") -> str | None:
    """Istio's ValidatePercent: 0 to 100 inclusive."""
    if value is not None and not 0 <= value <= 100:
        return f"{what} must be between 0 and 100, got {value}"
    return None


# --- exportTo ---------------------------------------------------------------------------


def _export_to_problem(value: str, *, allow_none: bool) -> str | None:
    if value in (".", "*") or (value == "~" and allow_none):
        return None
    if value == "~":
        return "exportTo '~' (no namespace) is only allowed for ServiceEntry: use '.', '*' or a namespace name"
    if not is_dns1123_label(value):
        allowed = "'.', '*', '~'" if allow_none else "'.', '*'"
        return f"invalid exportTo entry {value!r}: use {allowed} or a namespace name"
    return None


def _duplicate_export(value: str, earlier: Sequence[str], namespace: str) -> str:
    if value == "." or (value == namespace and "." in earlier):
        return f"duplicate exportTo entry: '.' and the current namespace {namespace!r} name the same namespace"
    return f"duplicate exportTo entry {value!r}: list each namespace once"


def check_export_to(
    f: Findings,
    values: Sequence[str],
    *,
    namespace: str,
    path: str = "spec.exportTo",
    allow_none: bool = False,
    with_selector: bool = False,
) -> None:
    """Istio's validateExportTo: '.', '*', '~' (ServiceEntry only) or namespace names, each once.

    '*' and '~' stand alone; a DestinationRule with a workload selector is
    exported to its own namespace only.
    """
    seen: set[str] = set()
    for i, value in enumerate(values):
        name = namespace if value == "." else value
        if name in seen:
            f.error(join(path, i), _duplicate_export(value, values[:i], namespace))
        elif problem := _export_to_problem(value, allow_none=allow_none):
            f.error(join(path, i), problem)
        else:
            seen.add(name)
    if with_selector and seen:
        if namespace not in seen:
            f.error(path, "a destination rule with a workloadSelector can only be exported to its own namespace ('.')")
        elif len(seen) > 1:
            f.error(path, "a destination rule with a workloadSelector cannot have more than one exportTo entry")
    if "*" in seen and len(values) > 1:
        f.error(path, "'*' exports to every namespace: do not combine it with other exportTo entries")
    if "~" in seen and len(values) > 1:
        f.error(path, "'~' exports to no namespace: do not combine it with other exportTo entries")
