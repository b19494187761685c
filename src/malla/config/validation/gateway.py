"""Semantic rules for Gateway, as Istio's validation webhook applies them.

Servers need hosts ('namespace/dnsName' or a bare host, by the shared host
grammar of ``common_hosts``), a port with a known protocol and a name
unique across servers, a valid bind address, and TLS settings that fit
the protocol. Also home of ``check_server_tls``: Istio's rules for
ServerTLSSettings, which Sidecar ingress listeners use too.
"""

from __future__ import annotations

from malla.api.networking.gateway import Gateway, Server, ServerTLSSettings
from malla.config.validation import Findings, ValidationContext
from malla.config.validation.common import is_dns1123_label, join
from malla.config.validation.common_hosts import namespace_host_errors
from malla.config.validation.common_ports import (
    PROTOCOLS_ALLOWED,
    UNIX_PREFIX,
    bind_errors,
    check_port,
    is_http_protocol,
    is_tls_protocol,
    parse_protocol,
)

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
    unix = (server.bind or "").startswith(UNIX_PREFIX)
    if port.number or not unix:
        if error := check_port(port.number):
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
    if ctx.name and not is_dns1123_label(ctx.name):  # a missing name is the loader's error, not this rule's
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
