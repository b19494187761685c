"""WorkloadEntry rules, and the endpoint checks ServiceEntry and WorkloadGroup share.

Istio's webhook and its CRD schema together reject: an entry with neither
address nor network, an address that is no IP, DNS name or absolute
``unix://`` socket, ports on a socket, port names that are not DNS labels,
port numbers outside 1..65535 and malformed labels. The same checks run on
ServiceEntry endpoints (with the resolution's own rules on top) and on the
WorkloadGroup template (where the address is filled in at registration):
both are WorkloadEntry messages, so their checks live with it.

Host, port and label syntax are the shared ones (``common_hosts``,
``common_ports``, ``common_selectors``), which follow Istio's own
definitions and so accept upper-case letters where Kubernetes would not.
"""

from __future__ import annotations

from collections.abc import Iterable

from malla.api.networking.workload_entry import WorkloadEntry
from malla.config.validation import Finding, Findings, ValidationContext
from malla.config.validation.common import is_ip, join, key
from malla.config.validation.common_hosts import check_fqdn, is_dns1123_subdomain
from malla.config.validation.common_ports import UNIX_PREFIX, check_port, check_port_name, check_unix_address
from malla.config.validation.common_selectors import check_labels

# The CRD allows port names of at most 62 characters in WorkloadEntry.ports (size(key) < 63).
_ENTRY_PORT_NAME_MAX = 62


def check_entry_shape(we: WorkloadEntry, path: str, f: Findings, *, require_address: bool = True) -> None:
    """The checks Istio's CRD schema applies to every WorkloadEntry message, wherever it appears."""
    address = we.address or ""
    if not address and not we.network and require_address:
        f.error(join(path, "address"), "address is required unless network is set: give an IP, a DNS name or a "
                "unix:// socket")
    if address.startswith(UNIX_PREFIX):
        if problem := check_unix_address(address[len(UNIX_PREFIX) :]):
            f.error(join(path, "address"), problem)
        if we.ports:
            f.error(join(path, "ports"), f"a unix socket endpoint ({address}) takes no ports: remove 'ports'")
    for name, number in we.ports.items():
        problem = check_port_name(name, max_length=_ENTRY_PORT_NAME_MAX)
        if problem:
            f.error(key(join(path, "ports"), name), problem)
        problem = check_port(number, f"port number for {name!r}")
        if problem:
            f.error(key(join(path, "ports"), name), problem)
    check_labels(f, we.labels, path=join(path, "labels"))


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
