"""Semantic rules for Gateway, as Istio's validation webhook applies them.

Also home of the rules the networking kinds share: Istio's host-name
grammar (DNS-1123 labels that may use upper case, a leading '*' wildcard,
'namespace/host' entries) and host matching, gateway references, label
and duration syntax, port protocols, bind addresses and server TLS
settings. The VirtualService, DestinationRule and Sidecar validators
import those from here, so a host is judged the same way everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from malla.api.base import Duration
from malla.api.networking.gateway import Gateway, Server, ServerTLSSettings
from malla.config.validation import Findings, ValidationContext
from malla.config.validation.common import is_ip, join

# Istio's labels (pkg/config/labels) accept upper case, unlike Kubernetes' names.
_LABEL = re.compile(r"^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$")
_WILDCARD_LABEL = re.compile(r"^(?:\*|(?:\*|\*-)?[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)$")
_LABEL_MAX = 63
_UNIX_PREFIX = "unix://"

_PROTOCOLS = {
    "tcp": "TCP", "udp": "UDP", "grpc": "GRPC", "grpc-web": "GRPC-Web", "http": "HTTP",
    "http_proxy": "HTTP_PROXY", "http2": "HTTP2", "https": "HTTPS", "tls": "TLS",
    "mongo": "Mongo", "redis": "Redis", "mysql": "MySQL",
}  # fmt: skip
_HTTP_PROTOCOLS = {"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-Web"}
PROTOCOLS_ALLOWED = "HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, REDIS, MYSQL, TCP, TLS, UDP, HTTP_PROXY"

# BoringSSL cipher names Envoy accepts (Istio's security.IsValidCipherSuite).
_CIPHER_SUITES = frozenset({
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-PSK-CHACHA20-POLY1305", "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-PSK-AES128-CBC-SHA",
    "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA", "ECDHE-PSK-AES256-CBC-SHA", "AES128-GCM-SHA256",
    "AES256-GCM-SHA384", "AES128-SHA", "PSK-AES128-CBC-SHA", "AES256-SHA", "PSK-AES256-CBC-SHA", "DES-CBC3-SHA",
    "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]",
    "[ECDHE-RSA-AES128-GCM-SHA256|ECDHE-RSA-CHACHA20-POLY1305]",
})  # fmt: skip


# --- Host names, shared by the networking kinds ------------------------------------


def is_label(value: str) -> bool:
    """A DNS-1123 label as Istio reads it (letters of either case, digits, '-')."""
    return len(value) <= _LABEL_MAX and bool(_LABEL.match(value))


def _precondition_error(name: str) -> str | None:
    if not name:
        return "empty host name: give a DNS name such as 'reviews.default.svc.cluster.local'"
    if len(name) > 255:
        return f"host {name!r} is too long (at most 255 characters)"
    return None


def _labels_error(whole: str, domain: str) -> str | None:
    parts = domain.split(".")
    if parts[-1].isdigit():
        return f"invalid host {whole!r}: the top-level domain {parts[-1]!r} cannot be all digits"
    for i, label in enumerate(parts):
        if i == len(parts) - 1 and label == "":
            return None  # a trailing dot ('istio.io.') is allowed
        if not is_label(label):
            return (
                f"invalid host {whole!r}: label {label!r} must be 1-63 letters, digits or '-', "
                "starting and ending with a letter or digit"
            )
    return None


def fqdn_error(name: str) -> str | None:
    """Istio's ValidateFQDN: dot-separated DNS-1123 labels, no wildcard."""
    return _precondition_error(name) or _labels_error(name, name)


def wildcard_domain_error(name: str) -> str | None:
    """Istio's ValidateWildcardDomain: an FQDN whose first label may be '*', '*foo' or '*-foo'."""
    if error := _precondition_error(name):
        return error
    first, _, rest = name.partition(".")
    if len(first) > _LABEL_MAX or not _WILDCARD_LABEL.match(first):
        return (
            f"invalid host {name!r}: label {first!r} must be a DNS-1123 label, optionally starting with "
            "the wildcard '*' (for example '*.example.com')"
        )
    return _labels_error(name, rest) if rest else None


def partial_wildcard_error(name: str) -> str | None:
    if "*" in name and name != "*" and not name.startswith("*."):
        return f"partial wildcard {name!r} is not allowed: use '*' or a '*.' prefix such as '*.example.com'"
    return None


def _hostname_part_errors(name: str, *, gateway: bool) -> list[str]:
    errors = []
    if name != "*" and "." not in name:
        errors.append(f"short name {name!r} is not allowed: use a fully qualified name such as 'foo.example.com'")
    error = wildcard_domain_error(name)
    if error and not (gateway and is_ip(name)):
        errors.append(error)  # gateways may also serve an IP address as host
    if error := partial_wildcard_error(name):
        errors.append(error)
    return errors


def namespace_host_errors(host: str, *, gateway: bool) -> list[str]:
    """'namespace/dnsName' entries of Gateway servers and Sidecar egress listeners.

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
    if namespace and namespace not in allowed and not is_label(namespace):
        kind = "gateway" if gateway else "sidecar"
        spelled = "'*', '.' or a namespace name" if gateway else "'*', '.', '~' or a namespace name"
        errors.append(f"invalid namespace {namespace!r} in {kind} host {host!r}: use {spelled}")
    return errors + _hostname_part_errors(name, gateway=gateway)


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


def gateway_host_error(host: str, *, sni: bool) -> str | None:
    """Hosts of gateway-bound services: SNI routes may also name AUTO_PASSTHROUGH's outbound_.<port>_._.<host>."""
    if not (sni and host.startswith("outbound_")):
        return wildcard_domain_error(host)
    form = "outbound_.<port>_._.<hostname>"
    parts = host.split("_")
    if len(parts) < 4 or parts[0] != "outbound":
        return f"invalid host {host!r}: auto-generated SNI names follow {form}"
    if not re.search(r"[0-9]", parts[1].strip(".")) or not re.search(r"[a-zA-Z]", parts[3].strip(".")):
        return f"invalid host {host!r}: auto-generated SNI names follow {form}"
    return None


def check_gateway_names(f: Findings, path: str, names: Sequence[str]) -> None:
    """'mesh', '<namespace>/<name>' or (legacy) a gateway name or '<name>.<namespace>'."""
    for i, name in enumerate(names):
        namespace, slash, gw = name.partition("/")
        if not slash:
            if "." in name:
                first, rest = name.split(".", 1)
                f.warning(
                    join(path, i),
                    f"legacy gateway name {name!r}: prefer namespace/name, here '{rest.split('.')[0]}/{first}'",
                )
            if error := fqdn_error(name):
                f.error(join(path, i), error)
            continue
        if not namespace or not gw:
            f.error(join(path, i), f"gateway {name!r}: neither namespace nor name may be empty in namespace/name")
            continue
        if not is_label(namespace):
            f.error(join(path, i), f"invalid namespace {namespace!r} in gateway {name!r}: must be a DNS-1123 label")
        if not is_label(gw):
            f.error(join(path, i), f"invalid gateway name {gw!r} in {name!r}: must be a DNS-1123 label")


# --- Labels and durations -------------------------------------------------------------

_QUALIFIED = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_FMT = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_LABEL_KEY = re.compile(rf"^((?:{_LABEL_FMT}(?:\.{_LABEL_FMT})*)/)?({_QUALIFIED})$")
_LABEL_VALUE = re.compile(rf"^(?:{_QUALIFIED})?$")


def label_errors(labels: dict[str, str]) -> list[tuple[str, str]]:
    """(key, message) per bad label, by Istio's rules (Kubernetes label syntax)."""
    problems = []
    for key, value in labels.items():
        match = _LABEL_KEY.match(key)
        if not match or (match.group(1) and len(match.group(1)) - 1 > 253) or len(match.group(2)) > _LABEL_MAX:
            problems.append((
                key,
                f"invalid label key {key!r}: use a name such as 'app' or 'example.com/tier' "
                "(name part at most 63 characters)",
            ))  # fmt: skip
        if not _LABEL_VALUE.match(value):
            problems.append((
                key,
                f"invalid label value {value!r} for {key!r}: letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit",
            ))  # fmt: skip
    return problems


def duration_error(value: Duration | None, what: str = "duration") -> str | None:
    """Istio's ValidateDuration: at least 1ms, in whole milliseconds."""
    if value is None:
        return None
    if value.nanos < 1_000_000:
        return f"{what} must be at least 1ms, got {value}"
    if value.nanos % 1_000_000:
        return f"{what} must be a whole number of milliseconds, got {value}"
    return None


# --- Ports, protocols and bind addresses -------------------------------------------


def parse_protocol(name: str | None) -> str | None:
    """Istio's canonical protocol name, or None when Istio does not know it."""
    return _PROTOCOLS.get((name or "").lower())


def is_http_protocol(name: str | None) -> bool:
    return parse_protocol(name) in _HTTP_PROTOCOLS


def is_tls_protocol(name: str | None) -> bool:
    return parse_protocol(name) in {"HTTPS", "TLS"}


def port_error(number: int | None, what: str = "port number") -> str | None:
    if number is None or not 1 <= number <= 65535:
        return f"{what} {number or 0} must be between 1 and 65535"
    return None


def unix_address_error(address: str) -> str | None:
    """A Unix domain socket path: absolute and not a directory, or an abstract '@name'."""
    if not address:
        return "the unix domain socket path must not be empty"
    if address.startswith("@"):
        return None
    if not address.startswith("/") or address.endswith("/"):
        return f"{address!r} is not an absolute path to a file (for example unix:///var/run/app.sock)"
    return None


def bind_errors(bind: str | None, *, port_number: int | None) -> list[str]:
    if not bind:
        return []
    if bind.startswith(_UNIX_PREFIX):
        errors = [e for e in [unix_address_error(bind[len(_UNIX_PREFIX):])] if e]
        if port_number:
            errors.append(f"port number must be 0 when binding to a unix domain socket, got {port_number}")
        return errors
    if not is_ip(bind):
        return [f"bind address {bind!r} is not a valid IP address"]
    return []


# --- Server TLS ---------------------------------------------------------------------


def _mode(tls: ServerTLSSettings) -> str:
    return tls.mode or "PASSTHROUGH"  # the proto's default


def _cert_sources(tls: ServerTLSSettings) -> int:
    return sum([
        bool(tls.server_certificate and tls.private_key),
        bool(tls.credential_name),
        bool(tls.credential_names),
        bool(tls.tls_certificates),
    ])  # fmt: skip


def _check_ciphers(f: Findings, path: str, tls: ServerTLSSettings) -> None:
    if tls.min_protocol_version in ("TLSV1_0", "TLSV1_1") and not tls.cipher_suites:
        f.warning(
            join(path, "minProtocolVersion"),
            "TLS versions below TLSV1_2 need cipherSuites set: the default ciphers no longer include compatible ones",
        )
    seen: set[str] = set()
    for i, suite in enumerate(tls.cipher_suites):
        if suite not in _CIPHER_SUITES:
            f.warning(
                join(path, "cipherSuites", i),
                f"ignoring unknown cipher suite {suite!r}: use BoringSSL names such as 'ECDHE-RSA-AES128-GCM-SHA256'",
            )
        elif suite in seen:
            f.warning(join(path, "cipherSuites", i), f"ignoring duplicate cipher suite {suite!r}")
        seen.add(suite)


def _check_istio_mutual(f: Findings, path: str, tls: ServerTLSSettings) -> None:
    for field, value in (
        ("serverCertificate", tls.server_certificate), ("privateKey", tls.private_key),
        ("caCertificates", tls.ca_certificates), ("tlsCertificates", tls.tls_certificates),
        ("credentialName", tls.credential_name), ("credentialNames", tls.credential_names),
    ):  # fmt: skip
        if value:
            f.error(join(path, field), f"ISTIO_MUTUAL uses the mesh's own certificates: remove {field}")


def _check_terminating(f: Findings, path: str, tls: ServerTLSSettings, mode: str) -> None:
    label = "SIMPLE TLS" if mode == "SIMPLE" else "MUTUAL TLS"
    if mode != "SIMPLE" and not tls.ca_certificates:
        f.error(
            join(path, "caCertificates"),
            f"{label} requires a client CA bundle in caCertificates, or use credentialName",
        )
    if len(tls.tls_certificates) > 2:
        f.warning(join(path, "tlsCertificates"), f"{label} supports at most 2 server certificates (one RSA, one ECDSA)")
    if tls.tls_certificates:
        for i, cert in enumerate(tls.tls_certificates):
            if not cert.server_certificate:
                f.error(join(path, "tlsCertificates", i, "serverCertificate"), f"{label} requires a server certificate")
            if not cert.private_key:
                f.error(join(path, "tlsCertificates", i, "privateKey"), f"{label} requires a private key")
        return
    if not tls.server_certificate:
        f.error(join(path, "serverCertificate"), f"{label} requires serverCertificate (or credentialName)")
    if not tls.private_key:
        f.error(join(path, "privateKey"), f"{label} requires privateKey (or credentialName)")


def check_server_tls(f: Findings, path: str, tls: ServerTLSSettings | None) -> None:
    """Istio's rules for ServerTLSSettings (gateway servers and sidecar ingress)."""
    if tls is None:
        return
    _check_ciphers(f, path, tls)
    mode = _mode(tls)
    if mode == "ISTIO_MUTUAL":
        _check_istio_mutual(f, path, tls)
        return
    if mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH") and (
        tls.ca_crl or tls.server_certificate or tls.private_key or tls.ca_certificates
        or tls.tls_certificates or tls.credential_name or tls.credential_names
    ):  # fmt: skip
        f.warning(join(path, "mode"), f"{mode} mode does not use certificates: they will be ignored")
    if _cert_sources(tls) > 1:
        f.error(
            path,
            "set only one of credentialName, credentialNames, serverCertificate/privateKey and tlsCertificates",
        )
    if mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"):
        if tls.credential_name or tls.credential_names:
            return  # the credential brings certificate, key, CA and CRL
        _check_terminating(f, path, tls, mode)
    if tls.ca_crl:
        if tls.credential_name:
            f.error(join(path, "caCrl"), "caCrl cannot be used with credentialName: put the CRL in the credential")
        if mode == "SIMPLE":
            f.error(join(path, "caCrl"), "caCrl is not supported with SIMPLE TLS: use MUTUAL or OPTIONAL_MUTUAL")


# --- Gateway --------------------------------------------------------------------------


def _check_server_port(f: Findings, path: str, server: Server) -> bool:
    """Checks the port; True when it is usable for the protocol checks that follow."""
    port = server.port
    if port is None:
        f.error(join(path, "port"), "port is required: give number, protocol and name")
        return False
    before = len(f)
    if parse_protocol(port.protocol) is None:
        f.error(
            join(path, "port", "protocol"),
            f"invalid protocol {port.protocol or ''!r}: use one of {PROTOCOLS_ALLOWED}",
        )
    unix = (server.bind or "").startswith(_UNIX_PREFIX)
    if port.number or not unix:
        if error := port_error(port.number):
            f.error(join(path, "port", "number"), error)
    if port.target_port:
        f.error(join(path, "port", "targetPort"), "targetPort has no effect on gateways: remove it")
    if not port.name:
        f.error(join(path, "port", "name"), "port name must be set")
    return len(f) == before


def _has_own_certificates(tls: ServerTLSSettings) -> bool:
    return bool(tls.ca_certificates or tls.private_key or tls.server_certificate)


def _check_server_protocol_tls(f: Findings, path: str, server: Server) -> None:
    protocol = server.port.protocol if server.port else None
    tls = server.tls
    if is_tls_protocol(protocol):
        if tls is None:
            f.error(
                join(path, "tls"),
                f"a {parse_protocol(protocol)} server needs TLS settings (tls.mode and credentials)",
            )
        return
    if tls is None:
        return
    if not is_http_protocol(protocol):
        f.error(
            join(path, "tls"),
            "TLS settings are only allowed on HTTPS and TLS ports (and httpsRedirect on HTTP ports)",
        )
    elif _mode(tls) not in ("PASSTHROUGH", "AUTO_PASSTHROUGH") or _has_own_certificates(tls):
        f.error(
            join(path, "tls"),
            "a plain-text HTTP server can only carry tls.httpsRedirect: use protocol HTTPS to terminate TLS",
        )


def _check_server(f: Findings, path: str, server: Server) -> None:
    if not server.hosts:
        f.error(join(path, "hosts"), "a server needs at least one host, for example '*' or 'ns/foo.example.com'")
    for i, host in enumerate(server.hosts):
        for error in namespace_host_errors(host, gateway=True):
            f.error(join(path, "hosts", i), error)
    port_ok = _check_server_port(f, path, server)
    for error in bind_errors(server.bind, port_number=server.port.number if server.port else None):
        f.error(join(path, "bind"), error)
    check_server_tls(f, join(path, "tls"), server.tls)
    if port_ok:
        _check_server_protocol_tls(f, path, server)


def validate(spec: Gateway, ctx: ValidationContext) -> Findings:
    f = Findings()
    if ctx.name and not is_label(ctx.name):  # a missing name is the loader's error, not this rule's
        f.error("metadata.name", f"invalid gateway name {ctx.name!r}: must be a DNS-1123 label (no dots)")
    if not spec.servers:
        f.error("spec.servers", "a gateway needs at least one server")
    port_names: set[str] = set()
    for i, server in enumerate(spec.servers):
        path = join("spec.servers", i)
        _check_server(f, path, server)
        if server.port is None:
            continue
        name = server.port.name
        if name and name in port_names:
            f.error(
                join(path, "port", "name"),
                f"duplicate port name {name!r}: port names must be unique across servers",
            )
        port_names.add(name or "")
        if server.tls and server.tls.https_redirect and not is_http_protocol(server.port.protocol):
            f.warning(join(path, "tls", "httpsRedirect"), "httpsRedirect only has an effect on HTTP servers")
    return f
