"""WorkloadEntry rules, and the host, label and endpoint checks ServiceEntry and WorkloadGroup share.

Istio's webhook and its CRD schema together reject: an entry with neither
address nor network, an address that is no IP, DNS name or absolute
``unix://`` socket, ports on a socket, port names that are not DNS labels,
port numbers outside 1..65535 and malformed labels. The same checks run on
ServiceEntry endpoints (with the resolution's own rules on top) and on the
WorkloadGroup template (where the address is filled in at registration).

Host and label syntax follow Istio's own definitions (``pkg/config/labels``
and ``ValidateFQDN``), which accept upper-case letters, where Kubernetes'
DNS-1123 helpers in ``common`` would not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from malla.api.networking.workload_entry import WorkloadEntry
from malla.config.validation import Finding, Findings, ValidationContext
from malla.config.validation.common import check_port, is_ip, join

UNIX_PREFIX = "unix://"

_DNS_LABEL = re.compile(r"^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$")
_WILDCARD_LABEL = re.compile(r"^(?:\*|(?:\*|\*-)?[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)$")
_QUALIFIED_NAME = re.compile(r"^(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(?:(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_HOST_HINT = "a DNS name such as 'api.example.com'"
_SUBDOMAIN_LABEL = re.compile(r"^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$")


def key(path: str, name: str) -> str:
    """Path of a map entry, Kubernetes style: ``spec.labels[app]``."""
    return f"{path}[{name}]"


def is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS_LABEL.match(value))


def is_dns1123_subdomain(value: str) -> bool:
    return 0 < len(value) <= 253 and all(_SUBDOMAIN_LABEL.match(p) for p in value.split("."))


def _check_domain_labels(domain: str, shown: str) -> str | None:
    parts = domain.split(".")
    if parts[-1].isdigit():
        return f"invalid host {shown!r}: the top-level domain {parts[-1]!r} cannot be all digits"
    for i, label in enumerate(parts):
        if i == len(parts) - 1 and label == "" and i > 0:
            return None  # a trailing dot, as in 'istio.io.'
        if "*" in label:
            return f"invalid host {shown!r}: a wildcard '*' is allowed only at the start, as in '*.example.com'"
        if not is_dns1123_label(label):
            return (
                f"invalid host {shown!r}: label {label!r} must be 1-63 letters, digits or '-', "
                f"starting and ending with a letter or digit; expected {_HOST_HINT}"
            )
    return None


def _check_length(name: str) -> str | None:
    if not name:
        return f"host must not be empty: expected {_HOST_HINT}"
    if len(name) > 255:
        return f"host {name[:40]!r}... is longer than 255 characters"
    return None


def check_fqdn(name: str) -> str | None:
    """Istio's ValidateFQDN: a DNS name without wildcards (a trailing dot is allowed)."""
    return _check_length(name) or _check_domain_labels(name, name)


def check_wildcard_domain(name: str) -> str | None:
    """Istio's ValidateWildcardDomain: a DNS name whose first label may be '*', '*foo' or '*-foo'."""
    problem = _check_length(name)
    if problem:
        return problem
    first, _, rest = name.partition(".")
    if len(first) > 63 or not _WILDCARD_LABEL.match(first):
        return (
            f"invalid host {name!r}: label {first!r} is not a DNS label; a wildcard '*' is allowed only "
            f"at the start of the first label, as in '*.example.com'"
        )
    return _check_domain_labels(rest, name) if rest else None


def is_wildcard(host: str) -> bool:
    return host.startswith("*")


def check_unix_path(address: str) -> str | None:
    """The part after ``unix://``: an absolute file path, or an abstract socket starting with '@'."""
    path = address[len(UNIX_PREFIX) :]
    if path.startswith("@") and len(path) > 1:
        return None
    if not path.startswith("/"):
        return (
            f"invalid unix socket address {address!r}: use an absolute path (unix:///var/run/app.sock) "
            "or an abstract socket (unix://@name)"
        )
    if path.endswith("/"):
        return f"invalid unix socket address {address!r}: the path is a directory, it must name the socket file"
    return None


def check_port_name(name: str, *, max_length: int = 63) -> str | None:
    if len(name) > max_length or not _DNS_LABEL.match(name):
        return (
            f"invalid port name {name!r}: use letters, digits and '-', starting and ending with a letter "
            f"or digit, at most {max_length} characters"
        )
    return None


def check_labels(labels: dict[str, str], path: str, f: Findings) -> None:
    """Kubernetes label syntax as Istio checks it: keys '[prefix/]name', values a qualified name or empty."""
    for name, value in labels.items():
        prefix, slash, local = name.rpartition("/")
        bad_prefix = slash and (
            not prefix or len(prefix) > 253 or not all(is_dns1123_label(p) for p in prefix.split("."))
        )
        if bad_prefix or len(local) > 63 or not _QUALIFIED_NAME.match(local):
            f.error(
                key(path, name),
                f"invalid label key {name!r}: use an optional DNS prefix and '/', then at most 63 letters, "
                "digits, '-', '_' or '.', starting and ending with a letter or digit (e.g. 'app' or "
                "'example.com/tier')",
            )
        if not _LABEL_VALUE.match(value):
            f.error(
                key(path, name),
                f"invalid label value {value!r}: use letters, digits, '-', '_' or '.', starting and ending "
                "with a letter or digit, or leave it empty",
            )


def check_entry_shape(we: WorkloadEntry, path: str, f: Findings, *, require_address: bool = True) -> None:
    """The checks Istio's CRD schema applies to every WorkloadEntry message, wherever it appears."""
    address = we.address or ""
    if not address and not we.network and require_address:
        f.error(join(path, "address"), "address is required unless network is set: give an IP, a DNS name or a "
                "unix:// socket")
    if address.startswith(UNIX_PREFIX):
        problem = check_unix_path(address)
        if problem:
            f.error(join(path, "address"), problem)
        if we.ports:
            f.error(join(path, "ports"), f"a unix socket endpoint ({address}) takes no ports: remove 'ports'")
    for name, number in we.ports.items():
        # The CRD allows at most 62 characters here (size(key) < 63).
        problem = check_port_name(name, max_length=62)
        if problem:
            f.error(key(join(path, "ports"), name), problem)
        problem = check_port(number, f"port number for {name!r}")
        if problem:
            f.error(key(join(path, "ports"), name), problem)
    check_labels(we.labels, join(path, "labels"), f)


def check_address_kind(address: str, path: str, f: Findings, *, allow_fqdn: bool, allow_unix: bool) -> None:
    """An endpoint address must be an IP, or (when allowed) a DNS name or a unix:// socket."""
    if is_ip(address) or (allow_unix and address.startswith(UNIX_PREFIX)):
        return
    if not allow_fqdn:
        extra = " or a unix:// socket" if allow_unix else ""
        f.error(path, f"endpoint address {address!r} is not an IP address: resolution STATIC takes IPs{extra}; "
                "use resolution DNS for host names")
    elif check_fqdn(address):
        f.error(path, f"endpoint address {address!r} is neither an IP address nor a valid DNS name "
                "(such as 'vm1.example.com')")


def check_service_account(name: str | None, path: str, f: Findings) -> None:
    if not name:
        return
    if len(name) > 253:
        f.error(path, "service account is longer than 253 characters")
    elif not is_dns1123_subdomain(name):
        # Istio accepts it, but no Kubernetes ServiceAccount (hence no SPIFFE identity) can have this name.
        f.warning(path, f"service account {name!r} is not a Kubernetes name: use lower-case letters, digits, "
                  "'-' and '.'")


def validate(spec: WorkloadEntry, ctx: ValidationContext) -> Iterable[Finding]:
    f = Findings()
    check_entry_shape(spec, "spec", f)
    address = spec.address or ""
    if not address and spec.network:
        f.warning("spec.address", f"address is unset with network {spec.network!r}: the entry stands for the "
                  "workloads of that network, reached through its gateway")
    elif address and not address.startswith(UNIX_PREFIX):
        # Without a ServiceEntry we cannot tell STATIC from DNS, so both forms are allowed.
        check_address_kind(address, "spec.address", f, allow_fqdn=True, allow_unix=True)
    check_service_account(spec.service_account, "spec.serviceAccount", f)
    return f
