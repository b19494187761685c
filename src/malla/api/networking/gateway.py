"""Gateway (networking.istio.io v1, v1beta1, v1alpha3) and its messages.

Field for field the ``istio.networking.v1alpha3.Gateway`` proto: the
servers a gateway proxy exposes, their ports and TLS settings.
``ServerTLSSettings`` is shared with Sidecar ingress listeners, which
import it from here.
"""

from __future__ import annotations

from pydantic import Field

from malla.api.base import Bool, IstioModel, Str, UInt32, proto_enum

ServerTLSMode = proto_enum("PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL")
TLSProtocol = proto_enum("TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3")


class Port(IstioModel):
    number: UInt32 | None = None
    protocol: Str | None = None
    name: Str | None = None
    target_port: UInt32 | None = None  # deprecated, no effect on gateways


class TLSCertificate(IstioModel):
    """ServerTLSSettings.TLSCertificate: one certificate/key pair (RSA or ECDSA)."""

    server_certificate: Str | None = None
    private_key: Str | None = None
    ca_certificates: Str | None = None


class ServerTLSSettings(IstioModel):
    https_redirect: Bool | None = None
    mode: ServerTLSMode | None = None
    server_certificate: Str | None = None
    private_key: Str | None = None
    ca_certificates: Str | None = None
    ca_crl: Str | None = None
    credential_name: Str | None = None
    credential_names: list[Str] = Field(default_factory=list)
    tls_certificates: list[TLSCertificate] = Field(default_factory=list)
    subject_alt_names: list[Str] = Field(default_factory=list)
    verify_certificate_spki: list[Str] = Field(default_factory=list)
    verify_certificate_hash: list[Str] = Field(default_factory=list)
    min_protocol_version: TLSProtocol | None = None
    max_protocol_version: TLSProtocol | None = None
    cipher_suites: list[Str] = Field(default_factory=list)
    ca_cert_credential_name: Str | None = None


class Server(IstioModel):
    port: Port | None = None
    bind: Str | None = None
    hosts: list[Str] = Field(default_factory=list)
    tls: ServerTLSSettings | None = None
    default_endpoint: Str | None = None
    name: Str | None = None


class Gateway(IstioModel):
    """The spec of a Gateway."""

    servers: list[Server] = Field(default_factory=list)
    selector: dict[str, Str] = Field(default_factory=dict)
