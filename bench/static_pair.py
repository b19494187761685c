"""The limit of the data-plane benchmark: two hand-written static Envoys, no control plane.

client -> [client Envoy] -> mTLS -> [server Envoy] -> echo server, the same
hops a pair of sidecars makes, with the least config that does them: one
listener, one route, one cluster per Envoy, certificates inline. Made with
``cryptography``: a root, and one leaf per side whose only SAN is a SPIFFE
URI (EC P-256, serverAuth + clientAuth), each side checking the other's
SAN. TLS 1.3 both ways (Envoy's upstream default stops at 1.2). With
``tls=False`` the same pair talks plaintext, for comparing with a mesh
whose mTLS is off.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLIENT_ID = "spiffe://cluster.local/ns/default/sa/loadgen"
SERVER_ID = "spiffe://cluster.local/ns/default/sa/echo"
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
_DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"


@dataclass(frozen=True)
class Leaf:
    cert_pem: str
    key_pem: str


@dataclass(frozen=True)
class Certificates:
    root_pem: str
    client: Leaf
    server: Leaf


def make_certificates() -> Certificates:
    now = datetime.datetime.now(datetime.timezone.utc)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bench root")])
    root = (
        x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
        .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(root_key, hashes.SHA256())
    )

    def leaf(uri: str) -> Leaf:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(root_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(root_key, hashes.SHA256())
        )
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        return Leaf(cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode())

    return Certificates(root.public_bytes(serialization.Encoding.PEM).decode(), leaf(CLIENT_ID), leaf(SERVER_ID))


def _common_tls(certs: Certificates, me: Leaf, *, peer: str) -> dict[str, Any]:
    return {
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
        "tls_certificates": [{"certificate_chain": {"inline_string": me.cert_pem},
                              "private_key": {"inline_string": me.key_pem}}],
        "validation_context": {
            "trusted_ca": {"inline_string": certs.root_pem},
            "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": peer}}],
        },
    }


def _listener(port: int, cluster: str, *, transport_socket: dict[str, Any] | None) -> dict[str, Any]:
    hcm = {
        "@type": _HCM,
        "stat_prefix": "bench",
        "codec_type": "AUTO",
        "route_config": {"name": "local", "virtual_hosts": [
            {"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]},
        ]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}],
    }
    chain: dict[str, Any] = {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
    if transport_socket is not None:
        chain["transport_socket"] = transport_socket
    return {"name": f"in_{port}", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [chain]}


def _cluster(name: str, port: int, *, transport_socket: dict[str, Any] | None) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name, "type": "STATIC", "connect_timeout": "5s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    }
    if transport_socket is not None:
        cluster["transport_socket"] = transport_socket
    return cluster


def _bootstrap(listener: dict[str, Any], cluster: dict[str, Any]) -> dict[str, Any]:
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [listener], "clusters": [cluster]},
    }


def client_bootstrap(*, listen_port: int, server_port: int, certs: Certificates | None) -> dict[str, Any]:
    socket = None
    if certs is not None:
        socket = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": _UPSTREAM_TLS, "sni": "echo", "common_tls_context": _common_tls(certs, certs.client, peer=SERVER_ID)}}
    return _bootstrap(_listener(listen_port, "server", transport_socket=None),
                      _cluster("server", server_port, transport_socket=socket))


def server_bootstrap(*, listen_port: int, app_port: int, certs: Certificates | None) -> dict[str, Any]:
    socket = None
    if certs is not None:
        socket = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": _DOWNSTREAM_TLS, "require_client_certificate": True,
            "common_tls_context": _common_tls(certs, certs.server, peer=CLIENT_ID)}}
    return _bootstrap(_listener(listen_port, "app", transport_socket=socket),
                      _cluster("app", app_port, transport_socket=None))
