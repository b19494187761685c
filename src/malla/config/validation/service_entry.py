"""ServiceEntry rules, as Istio's validation webhook and CRD schema apply them.

Hosts, addresses, ports, exportTo and the workload selector are checked on
their own; then the resolution decides what endpoints may be: none for
NONE, IPs or unix sockets for STATIC, IPs or DNS names for DNS (one at most
for DNS_ROUND_ROBIN), and nothing for DYNAMIC_DNS, which takes the name from
each request.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from malla.api.networking.service_entry import ServiceEntry, ServicePort
from malla.config.validation import Finding, Findings, ValidationContext
from malla.config.validation.common import check_export_to, check_ip_or_cidr, join, key
from malla.config.validation.common_hosts import check_fqdn, check_partial_wildcard, check_wildcard_domain
from malla.config.validation.common_ports import (
    PROTOCOLS_ALLOWED,
    UNIX_PREFIX,
    check_port,
    check_port_name,
    is_http_protocol,
    is_tcp_protocol,
    is_tls_protocol,
    parse_protocol,
)
from malla.config.validation.common_selectors import check_workload_selector
from malla.config.validation.workload_entry import check_address_kind, check_entry_shape

# Istio allocates a VIP for hosts of non-NONE entries unless this label is "false".
_AUTOALLOCATE_LABEL = "networking.istio.io/enable-autoallocate-ip"
_MAX_LB_WEIGHT_SUM = 2**32 - 1  # Envoy: the weights of one locality must fit in a uint32


def _carries_host_name(protocol: str | None) -> bool:
    """HTTP and TLS traffic names its host (Host header, SNI); opaque TCP does not."""
    return is_http_protocol(protocol) or is_tls_protocol(protocol)


def _check_hosts(spec: ServiceEntry, f: Findings) -> None:
    if not spec.hosts:
        f.error("spec.hosts", "at least one host is required, such as 'api.example.com'")
    if len(spec.hosts) > 256:
        f.error("spec.hosts", f"at most 256 hosts are allowed, got {len(spec.hosts)}")
    for i, host in enumerate(spec.hosts):
        path = join("spec.hosts", i)
        if host == "*":
            f.error(path, "host '*' would capture every name: use a DNS name, or a wildcard such as '*.example.com'")
            continue
        if problem := check_wildcard_domain(host):
            f.error(path, problem)
        elif problem := check_partial_wildcard(host):
            f.warning(path, problem)


def _check_addresses(spec: ServiceEntry, resolution: str, f: Findings) -> None:
    if len(spec.addresses) > 256:
        f.error("spec.addresses", f"at most 256 addresses are allowed, got {len(spec.addresses)}")
    for i, address in enumerate(spec.addresses):
        problem = check_ip_or_cidr(address)
        if problem:
            f.error(join("spec.addresses", i), problem)
        elif "/" in address and resolution not in ("NONE", "STATIC"):
            f.error(join("spec.addresses", i), f"CIDR address {address!r} is allowed only with resolution NONE or "
                    f"STATIC, not {resolution}: give single IPs")


def _check_port(port: ServicePort, path: str, f: Findings) -> None:
    if port.number is None:
        f.error(join(path, "number"), "port number is required (1-65535)")
    else:
        problem = check_port(port.number)
        if problem:
            f.error(join(path, "number"), problem)
    if port.target_port is not None:
        problem = check_port(port.target_port, "targetPort")
        if problem:
            f.error(join(path, "targetPort"), problem)
    if port.name is None:
        f.error(join(path, "name"), "port name is required, such as 'http' or 'tls'")
    else:
        problem = check_port_name(port.name)
        if problem:
            f.error(join(path, "name"), problem)
    if port.protocol and parse_protocol(port.protocol) is None:
        f.error(join(path, "protocol"), f"unsupported protocol {port.protocol!r}: use one of {PROTOCOLS_ALLOWED}, "
                "or leave it empty to detect it")


def _autoallocates(spec: ServiceEntry, resolution: str, ctx: ValidationContext) -> bool:
    return resolution != "NONE" and ctx.labels.get(_AUTOALLOCATE_LABEL, "").lower() != "false"


def _check_ports(spec: ServiceEntry, resolution: str, ctx: ValidationContext, f: Findings) -> None:
    if not spec.ports:
        f.warning("spec.ports", "no ports: no listener or cluster is made for these hosts; add the ports the "
                  "service is reached on")
    names: set[str] = set()
    numbers: set[int] = set()
    for i, port in enumerate(spec.ports):
        path = join("spec.ports", i)
        _check_port(port, path, f)
        if port.name is not None:
            if port.name in names:
                f.error(join(path, "name"), f"port name {port.name!r} is already used: port names must be unique")
            names.add(port.name)
        if port.number is not None:
            if port.number in numbers:
                f.error(join(path, "number"), f"port {port.number} is already defined: port numbers must be unique")
            numbers.add(port.number)
        if not spec.addresses and not _autoallocates(spec, resolution, ctx) and (port.protocol or "") in ("", "TCP"):
            f.warning(path, "a TCP (or unset) protocol port needs 'addresses' when no address is allocated "
                      "automatically: without one, traffic is matched on the port alone")


def _check_static(spec: ServiceEntry, service_ports: set[str], f: Findings) -> None:
    if not spec.endpoints and spec.workload_selector is None:
        f.warning("spec.endpoints", "resolution STATIC with neither endpoints nor workloadSelector has no "
                  "endpoints: traffic to these hosts fails; add endpoints or a workloadSelector")
    for i, endpoint in enumerate(spec.endpoints):
        path = join("spec.endpoints", i)
        address = endpoint.address or ""
        if address:
            check_address_kind(address, join(path, "address"), f, allow_fqdn=False, allow_unix=True)
        elif endpoint.network:
            f.warning(join(path, "address"), f"address is unset with network {endpoint.network!r}: the endpoint "
                      "is reached through that network's gateway")
        if address.startswith(UNIX_PREFIX) and len(spec.ports) != 1:
            f.error(join(path, "address"), "a unix socket endpoint needs exactly one service port in 'ports', "
                    f"found {len(spec.ports)}")
        _check_endpoint_ports(endpoint.ports, path, service_ports, f)


def _check_dns(spec: ServiceEntry, resolution: str, service_ports: set[str], f: Findings) -> None:
    if not spec.endpoints:
        for i, host in enumerate(spec.hosts):
            if host != "*" and not check_wildcard_domain(host) and check_fqdn(host):
                f.error(join("spec.hosts", i), f"host {host!r} must be a DNS name without wildcards when resolution "
                        f"is {resolution} and there are no endpoints: the proxy resolves the host itself; use "
                        "resolution NONE or DYNAMIC_DNS for wildcard hosts")
    if resolution == "DNS_ROUND_ROBIN" and len(spec.endpoints) > 1:
        f.error("spec.endpoints", f"resolution DNS_ROUND_ROBIN takes at most one endpoint, found "
                f"{len(spec.endpoints)}: use resolution DNS to balance over several")
    for i, endpoint in enumerate(spec.endpoints):
        path = join("spec.endpoints", i)
        address = endpoint.address or ""
        if address.startswith(UNIX_PREFIX) or not address:
            f.error(join(path, "address"), f"endpoint address {address!r} must be an IP address or a DNS name with "
                    f"resolution {resolution}; unix sockets need resolution STATIC")
        else:
            check_address_kind(address, join(path, "address"), f, allow_fqdn=True, allow_unix=False)
        _check_endpoint_ports(endpoint.ports, path, service_ports, f)
    if spec.addresses and len(spec.hosts) > 1 and any(is_tcp_protocol(p.protocol) for p in spec.ports):
        f.warning("spec.hosts", "a service entry with addresses and a TCP port should have one host: "
                  "TCP connections carry no host name to tell the hosts apart")


def _check_dynamic_dns(spec: ServiceEntry, f: Findings) -> None:
    for i, host in enumerate(spec.hosts):
        if not host.startswith("*"):
            f.warning(join("spec.hosts", i), f"resolution DYNAMIC_DNS is meant for wildcard hosts such as "
                      f"'*.example.com'; use resolution DNS for {host!r}")
    if spec.endpoints:
        f.warning("spec.endpoints", "endpoints are ignored with resolution DYNAMIC_DNS: the name to resolve comes "
                  "from each request's Host header or SNI")
    for i, port in enumerate(spec.ports):
        if not _carries_host_name(port.protocol):
            f.warning(join("spec.ports", i, "protocol"), "resolution DYNAMIC_DNS needs an HTTP or TLS port "
                      "(the name comes from the Host header or SNI); opaque TCP traffic cannot be routed")


def _check_endpoint_ports(ports: dict[str, int], path: str, service_ports: set[str], f: Findings) -> None:
    for name in ports:
        if name not in service_ports:
            f.error(key(join(path, "ports"), name), f"endpoint port {name!r} is not a port of this service entry: "
                    f"use one of the names in spec.ports ({', '.join(sorted(service_ports)) or 'none defined'})")


def _check_resolution(spec: ServiceEntry, resolution: str, f: Findings) -> None:
    service_ports = {p.name for p in spec.ports if p.name is not None}
    if resolution == "NONE":
        if spec.endpoints:
            f.error("spec.endpoints", "resolution NONE takes no endpoints: the original destination address is used; "
                    "use STATIC or DNS to list endpoints")
        if spec.workload_selector is not None:
            f.warning("spec.workloadSelector", "workloadSelector should not be set when resolution is NONE: "
                      "the selected workloads are not used as endpoints")
    elif resolution == "STATIC":
        _check_static(spec, service_ports, f)
    elif resolution in ("DNS", "DNS_ROUND_ROBIN"):
        _check_dns(spec, resolution, service_ports, f)
    else:
        _check_dynamic_dns(spec, f)
    if resolution != "NONE" and len(spec.hosts) > 1:
        for i, port in enumerate(spec.ports):
            if not _carries_host_name(port.protocol):
                f.error(join("spec.ports", i, "protocol"), f"several hosts with resolution {resolution} need HTTP or "
                        "TLS ports, which carry the host name; for TCP use one host per entry or resolution NONE")
                break


def _check_weights(spec: ServiceEntry, f: Findings) -> None:
    totals: dict[str, int] = defaultdict(int)
    for endpoint in spec.endpoints:
        totals[endpoint.locality or ""] += endpoint.weight or 1
    for locality, total in totals.items():
        if total > _MAX_LB_WEIGHT_SUM:
            where = f"locality {locality!r}" if locality else "endpoints without a locality"
            f.error("spec.endpoints", f"the weights of {where} add up to {total}: Envoy needs the sum of one "
                    f"locality's weights to be at most {_MAX_LB_WEIGHT_SUM}")


def _check_selector(spec: ServiceEntry, f: Findings) -> None:
    selector = spec.workload_selector
    if selector is None:
        return
    check_workload_selector(f, selector, path="spec.workloadSelector")
    if spec.endpoints:
        f.error("spec.workloadSelector", "only one of workloadSelector or endpoints may be set")


def validate(spec: ServiceEntry, ctx: ValidationContext) -> Iterable[Finding]:
    f = Findings()
    resolution = spec.resolution or "NONE"
    _check_selector(spec, f)
    _check_hosts(spec, f)
    _check_addresses(spec, resolution, f)
    _check_ports(spec, resolution, ctx, f)
    for i, endpoint in enumerate(spec.endpoints):
        check_entry_shape(endpoint, join("spec.endpoints", i), f)
    if len(spec.endpoints) > 4096:
        f.error("spec.endpoints", f"at most 4096 endpoints are allowed, got {len(spec.endpoints)}")
    _check_resolution(spec, resolution, f)
    _check_weights(spec, f)
    check_export_to(f, spec.export_to, namespace=ctx.namespace, allow_none=True)
    return f
