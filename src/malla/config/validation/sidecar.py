"""Semantic rules for Sidecar, as Istio's validation webhook applies them.

The workload selector, ingress listeners (port, bind, defaultEndpoint,
TLS, connection pools), egress listeners (one catch-all listener, last;
'namespace/dnsName' hosts; unique ports and sockets) and the outbound
traffic policy's egress proxy.
"""

from __future__ import annotations

from malla.api.networking.sidecar import (
    IstioEgressListener,
    IstioIngressListener,
    OutboundTrafficPolicy,
    Sidecar,
    SidecarPort,
)
from malla.config.validation import Findings, ValidationContext
from malla.config.validation.common import is_ip, join
from malla.config.validation.common_hosts import check_fqdn, namespace_host_errors
from malla.config.validation.common_ports import (
    PROTOCOLS_ALLOWED,
    UNIX_PREFIX,
    bind_errors,
    check_port,
    check_port_name,
    check_unix_address,
    is_http_protocol,
    is_tls_protocol,
    parse_protocol,
)
from malla.config.validation.common_selectors import check_workload_selector
from malla.config.validation.destination_rule import check_connection_pool
from malla.config.validation.gateway import check_server_tls
from malla.config.validation.virtual_service_l4 import check_destination

_LOOPBACK_OR_ANY = {"", "127.0.0.1", "0.0.0.0", "::1", "::"}
_DEFAULT_ENDPOINT_FORMS = "127.0.0.1:<port>, 0.0.0.0:<port>, [::1]:<port>, [::]:<port> or unix://<absolute path>"


def _check_port(f: Findings, path: str, port: SidecarPort, *, number_required: bool = True) -> None:
    if port.name and (error := check_port_name(port.name)):
        f.error(join(path, "name"), error)
    if port.protocol and parse_protocol(port.protocol) is None:
        f.error(join(path, "protocol"), f"unsupported protocol {port.protocol!r}: use one of {PROTOCOLS_ALLOWED}")
    if number_required and (error := check_port(port.number)):
        f.error(join(path, "number"), error)
    if port.target_port:
        f.error(join(path, "targetPort"), "targetPort has no effect on sidecars: remove it")


def _split_host_port(endpoint: str) -> tuple[str, str] | None:
    if endpoint.startswith("["):
        host, bracket, rest = endpoint[1:].partition("]")
        return (host, rest[1:]) if bracket and rest.startswith(":") else None
    host, colon, port = endpoint.rpartition(":")
    return (host, port) if colon and ":" not in host else None


def _check_default_endpoint(f: Findings, path: str, endpoint: str) -> None:
    if endpoint.startswith(UNIX_PREFIX):
        if error := check_unix_address(endpoint[len(UNIX_PREFIX) :]):
            f.error(path, error)
        return
    parts = _split_host_port(endpoint)
    if parts is None:
        f.error(path, f"invalid defaultEndpoint {endpoint!r}: use {_DEFAULT_ENDPOINT_FORMS}")
        return
    host, port = parts
    if host not in _LOOPBACK_OR_ANY:
        f.error(
            path,
            f"invalid defaultEndpoint {endpoint!r}: the host must be a loopback or any address; "
            f"use {_DEFAULT_ENDPOINT_FORMS}",
        )
    if not port.isdigit():
        f.error(path, f"defaultEndpoint port {port!r} is not a number")
    elif error := check_port(int(port)):
        f.error(path, error)


def _check_ingress_tls(f: Findings, path: str, listener: IstioIngressListener) -> None:
    tls = listener.tls
    if tls is None:
        return
    for field, value in (
        ("subjectAltNames", tls.subject_alt_names), ("httpsRedirect", tls.https_redirect),
        ("credentialName", tls.credential_name), ("credentialNames", tls.credential_names),
        ("tlsCertificates", tls.tls_certificates),
    ):  # fmt: skip
        if value:
            f.error(
                join(path, field),
                f"{field} is not supported in sidecar ingress TLS: use serverCertificate and privateKey",
            )
    if tls.mode in ("ISTIO_MUTUAL", "AUTO_PASSTHROUGH"):
        f.error(join(path, "mode"), f"mode {tls.mode} cannot be used in sidecar ingress TLS: use SIMPLE or MUTUAL")
    if not is_tls_protocol(listener.port.protocol if listener.port else None):
        f.error(path, "TLS settings need an HTTPS or TLS port protocol")
    check_server_tls(f, path, tls)


def _check_ingress(f: Findings, path: str, listeners: list[IstioIngressListener]) -> None:
    ports: set[int] = set()
    for i, listener in enumerate(listeners):
        where = join(path, i)
        if listener.port is None:
            f.error(join(where, "port"), "ingress listeners need a port (number, protocol, name)")
            continue
        _check_port(f, join(where, "port"), listener.port)
        if listener.bind and not is_ip(listener.bind):
            f.error(join(where, "bind"), f"bind address {listener.bind!r} is not a valid IP address")
        number = listener.port.number or 0
        if number in ports:
            f.error(
                join(where, "port", "number"),
                f"port {number} is used by another ingress listener: ports must be unique",
            )
        ports.add(number)
        if listener.default_endpoint:
            _check_default_endpoint(f, join(where, "defaultEndpoint"), listener.default_endpoint)
        _check_ingress_tls(f, join(where, "tls"), listener)
        check_connection_pool(f, join(where, "connectionPool"), listener.connection_pool)
        pool = listener.connection_pool
        if pool is not None and pool.http is not None and not is_http_protocol(listener.port.protocol):
            f.warning(
                join(where, "connectionPool", "http"),
                f"port {number} is not an HTTP port ({listener.port.protocol}): only the tcp settings apply",
            )


def _check_egress_port(
    f: Findings, path: str, listener: IstioEgressListener, port: SidecarPort, *, ports: set[int], sockets: set[str]
) -> None:
    bind = listener.bind or ""
    _check_port(f, join(path, "port"), port, number_required=bool(port.number))
    if not port.number:
        if not bind.startswith(UNIX_PREFIX):
            f.error(join(path, "bind"), "a listener with port number 0 must bind to a unix domain socket (unix://...)")
        elif error := check_unix_address(bind[len(UNIX_PREFIX) :]):
            f.error(join(path, "bind"), error)
        if (listener.capture_mode or "DEFAULT") not in ("DEFAULT", "NONE"):
            f.error(join(path, "captureMode"), "unix domain socket listeners need captureMode DEFAULT or NONE")
        if bind in sockets:
            f.error(join(path, "bind"), f"unix domain socket {bind!r} is used by another egress listener")
        sockets.add(bind)
        return
    for error in bind_errors(bind, port_number=None):
        f.error(join(path, "bind"), error)
    if port.number in ports:
        f.error(
            join(path, "port", "number"),
            f"port {port.number} is used by another egress listener: ports must be unique",
        )
    ports.add(port.number)


def _check_egress_hosts(f: Findings, path: str, hosts: list[str], *, namespace: str) -> None:
    if not hosts:
        f.error(path, "an egress listener needs at least one host, for example './*' or 'istio-system/*'")
        return
    by_namespace: dict[str, set[str]] = {}
    for i, host in enumerate(hosts):
        ns, slash, name = host.partition("/")
        if slash:
            ns = namespace if ns == "." else ns
            names = by_namespace.setdefault(ns, set())
            if (name != "*" and (name in names or "*" in names)) or (name == "*" and names):
                f.warning(join(path, i), f"duplicated egress host {host!r}: it is already covered by another entry")
            names.add(name)
        for error in namespace_host_errors(host, gateway=False):
            f.error(join(path, i), error)
    if "*" in by_namespace.get("*", set()) and len(by_namespace) != 1:
        f.warning(path, "'*/*' already selects every host: the other entries add nothing")


def _check_egress(f: Findings, path: str, listeners: list[IstioEgressListener], *, namespace: str) -> None:
    ports: set[int] = set()
    sockets: set[str] = set()
    catch_alls = [i for i, listener in enumerate(listeners) if listener.port is None]
    for i in catch_alls[1:]:
        f.error(join(path, i), "only one egress listener may omit the port (the catch-all listener)")
    if len(catch_alls) == 1 and catch_alls[0] != len(listeners) - 1:
        f.error(join(path, catch_alls[0]), "the egress listener without a port (the catch-all) must be the last one")
    for i, listener in enumerate(listeners):
        where = join(path, i)
        if listener.port is not None:
            _check_egress_port(f, where, listener, listener.port, ports=ports, sockets=sockets)
        _check_egress_hosts(f, join(where, "hosts"), listener.hosts, namespace=namespace)


def _check_outbound_policy(f: Findings, path: str, policy: OutboundTrafficPolicy | None) -> None:
    if policy is None or policy.egress_proxy is None:
        return
    where = join(path, "egressProxy")
    if (policy.mode or "REGISTRY_ONLY") != "ALLOW_ANY":
        f.error(where, "egressProxy can only be set with mode ALLOW_ANY")
        return
    if error := check_fqdn(policy.egress_proxy.host or ""):
        f.error(join(where, "host"), f"{error} (egressProxy takes a fully qualified name, no wildcard)")
    if policy.egress_proxy.port is None:
        f.error(join(where, "port"), "egressProxy needs port.number")
        return
    check_destination(f, where, policy.egress_proxy, check_host=False)


def validate(spec: Sidecar, ctx: ValidationContext) -> Findings:
    f = Findings()
    check_workload_selector(f, spec.workload_selector, path="spec.workloadSelector")
    if not (spec.egress or spec.ingress or spec.outbound_traffic_policy or spec.inbound_connection_pool):
        f.error(
            "spec",
            "empty Sidecar: set at least one of egress, ingress, outboundTrafficPolicy or inboundConnectionPool",
        )
        return f
    _check_ingress(f, "spec.ingress", spec.ingress)
    check_connection_pool(f, "spec.inboundConnectionPool", spec.inbound_connection_pool)
    _check_egress(f, "spec.egress", spec.egress, namespace=ctx.namespace)
    _check_outbound_policy(f, "spec.outboundTrafficPolicy", spec.outbound_traffic_policy)
    return f
