"""Gateway resources as a router proxy sees them: its servers by port, and what binds to them.

A Gateway applies to a router proxy whose labels include its ``selector``.
A VirtualService binds to it by naming it in ``gateways`` (``name`` in the
VirtualService's namespace, or ``namespace/name``), when it is exported to
the proxy's namespace and one of its hosts overlaps a server host; a server
host ``ns/host`` admits only VirtualServices from ``ns`` (``.`` the
Gateway's own, ``*`` any).

Certificates of servers terminating TLS are files on the gateway's host: a
``credentialName`` (``kubernetes://NAME``, cert-manager's files) or Istio's
file-mounted ``serverCertificate``/``privateKey`` (``file-cert:CERT~KEY``).
The gateway's agent serves both over SDS on ``AGENT_SDS_CLUSTER`` and
watches the files, so a renewed certificate needs no restart (Istio's
pilot-agent serves file-mounted certificates the same way).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from malla.config.model import Config
from malla.pilot import names
from malla.pilot.cluster_tls import sds_secret
from malla.pilot.destination_rules import exported_to, host_matches
from malla.pilot.protocol import Protocol, parse_protocol
from malla.pilot.services import labels_match
from malla.pilot.snapshot import MeshConfig, MeshSnapshot, Proxy
from malla.pilot.virtual_services import vs_hosts

TERMINATING = ("SIMPLE", "MUTUAL", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL")
AGENT_SDS_CLUSTER = "sds-grpc"  # Istio's name for the agent's SDS cluster
FILE_CERT_PREFIX = "file-cert:"
FILE_ROOT_PREFIX = "file-root:"
TLS_VERSIONS = {
    "TLSV1_0": common_pb2.TlsParameters.TLSv1_0,
    "TLSV1_1": common_pb2.TlsParameters.TLSv1_1,
    "TLSV1_2": common_pb2.TlsParameters.TLSv1_2,
    "TLSV1_3": common_pb2.TlsParameters.TLSv1_3,
}


@dataclass(frozen=True)
class GatewayServer:
    gateway: Config
    server: Any
    index: int

    @property
    def key(self) -> str:
        return f"{self.gateway.namespace}/{self.gateway.name}"

    @property
    def port(self) -> int:
        return self.server.port.number

    @property
    def port_name(self) -> str:
        return self.server.port.name or str(self.port)

    @property
    def protocol(self) -> Protocol:
        return parse_protocol(self.server.port.protocol or "")

    @property
    def terminates_tls(self) -> bool:
        tls = self.server.tls
        return (
            tls is not None
            and (tls.mode or "SIMPLE") in TERMINATING
            and not (tls.https_redirect and self.protocol.is_http)
        )

    @property
    def passthrough(self) -> bool:
        tls = self.server.tls
        return self.protocol.is_tls and tls is not None and tls.mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH")

    @property
    def route_name(self) -> str:
        if self.terminates_tls and (self.protocol.is_http or self.protocol is Protocol.HTTPS):
            return names.gateway_https_route_name(
                self.port, port_name=self.port_name, gateway=self.gateway.name, namespace=self.gateway.namespace
            )
        return names.gateway_http_route_name(self.port)

    def hosts(self) -> list[tuple[str, str]]:
        """(namespace pattern, host) pairs; ``.`` resolved to the Gateway's namespace."""
        out = []
        for entry in self.server.hosts:
            ns, sep, host = entry.partition("/")
            if not sep:
                ns, host = "*", entry
            out.append((self.gateway.namespace if ns == "." else ns, host))
        return out

    def server_names(self) -> list[str]:
        return sorted({h for _, h in self.hosts() if h != "*"})


def servers_by_port(proxy: Proxy, snapshot: MeshSnapshot) -> dict[int, list[GatewayServer]]:
    out: dict[int, list[GatewayServer]] = defaultdict(list)
    for gw in snapshot.configs_of("Gateway"):
        if not labels_match(gw.spec.selector, proxy.labels):
            continue
        for i, server in enumerate(gw.spec.servers):
            if server.port is not None and server.port.number:
                out[server.port.number].append(GatewayServer(gw, server, i))
    return dict(sorted(out.items()))


def bound_hosts(server: GatewayServer, proxy: Proxy, snapshot: MeshSnapshot) -> list[tuple[str, Config]]:
    """(host, VirtualService) pairs a server serves, in VirtualService order; host is the narrower name."""
    out = []
    mesh = snapshot.mesh
    for vs in snapshot.configs_of("VirtualService"):
        if not _binds(vs, server.gateway) or not exported_to(
            vs, proxy.namespace, default=mesh.default_virtual_service_export_to
        ):
            continue
        for host in vs_hosts(vs, domain=mesh.domain):
            for ns, pattern in server.hosts():
                if ns not in ("*", vs.namespace):
                    continue
                if host_matches(pattern, host):
                    out.append((host, vs))
                    break
                if host_matches(host, pattern):
                    out.append((pattern, vs))
                    break
    return out


def _binds(vs: Config, gateway: Config) -> bool:
    for ref in vs.spec.gateways:
        ns, sep, name = ref.partition("/")
        if not sep:
            ns, name = vs.namespace, ref
        if (ns, name) == (gateway.namespace, gateway.name):
            return True
    return False


def server_tls_common(tls: Any, *, http: bool) -> tls_pb2.CommonTlsContext:
    """The protocol versions, ciphers and ALPN of a server-side ``tls`` block (Gateway or Sidecar ingress)."""
    common = tls_pb2.CommonTlsContext()
    if tls.min_protocol_version in TLS_VERSIONS:
        common.tls_params.tls_minimum_protocol_version = TLS_VERSIONS[tls.min_protocol_version]
    if tls.max_protocol_version in TLS_VERSIONS:
        common.tls_params.tls_maximum_protocol_version = TLS_VERSIONS[tls.max_protocol_version]
    common.tls_params.cipher_suites.extend(tls.cipher_suites)
    if http:
        common.alpn_protocols.extend(["h2", "http/1.1"])
    return common


def translate_server_tls(server: GatewayServer, *, mesh: MeshConfig) -> tls_pb2.DownstreamTlsContext:
    """A Gateway server's ``tls`` -> the DownstreamTlsContext that terminates it."""
    tls = server.server.tls
    mode = tls.mode or "SIMPLE"
    common = server_tls_common(tls, http=server.protocol.is_http or server.protocol is Protocol.HTTPS)
    if mode == "ISTIO_MUTUAL":
        common.tls_certificate_sds_secret_configs.append(
            sds_secret(names.WORKLOAD_CERT_SECRET, sds_cluster=mesh.sds_cluster)
        )
        common.combined_validation_context.validation_context_sds_secret_config.CopyFrom(
            sds_secret(names.ROOT_CA_SECRET, sds_cluster=mesh.sds_cluster)
        )
        return tls_pb2.DownstreamTlsContext(common_tls_context=common, require_client_certificate={"value": True})
    credentials = [c for c in [tls.credential_name, *tls.credential_names] if c]
    for credential in credentials:
        common.tls_certificate_sds_secret_configs.append(_agent_secret(names.credential_secret_name(credential)))
    files = [(tls.server_certificate, tls.private_key)] if tls.server_certificate else []
    files += [(c.server_certificate, c.private_key) for c in tls.tls_certificates if c.server_certificate]
    for cert, key in files:
        common.tls_certificate_sds_secret_configs.append(_agent_secret(file_cert_secret_name(cert, key or "")))
    if mode in ("MUTUAL", "OPTIONAL_MUTUAL"):
        _client_validation(common, tls, credentials, mesh=mesh)
    return tls_pb2.DownstreamTlsContext(
        common_tls_context=common, require_client_certificate={"value": mode == "MUTUAL"}
    )


def _client_validation(common: tls_pb2.CommonTlsContext, tls: Any, credentials: list[str], *, mesh: MeshConfig) -> None:
    sans = [
        common_pb2.SubjectAltNameMatcher(
            san_type=common_pb2.SubjectAltNameMatcher.URI if "://" in s else common_pb2.SubjectAltNameMatcher.DNS,
            matcher={"exact": s},
        )
        for s in sorted(tls.subject_alt_names)
    ]
    ca_credential = tls.ca_cert_credential_name or (credentials[0] if credentials else None)
    if ca_credential and not tls.ca_certificates:
        combined = common.combined_validation_context
        combined.default_validation_context.match_typed_subject_alt_names.extend(sans)
        name = (
            names.credential_ca_secret_name(ca_credential)
            if not tls.ca_cert_credential_name
            else names.credential_secret_name(ca_credential)
        )
        combined.validation_context_sds_secret_config.CopyFrom(_agent_secret(name))
        return
    if tls.ca_certificates:
        combined = common.combined_validation_context
        combined.validation_context_sds_secret_config.CopyFrom(
            _agent_secret(file_root_secret_name(tls.ca_certificates))
        )
        validation = combined.default_validation_context
    else:
        validation = common.validation_context
        validation.trusted_ca.filename = mesh.system_ca_bundle
    validation.match_typed_subject_alt_names.extend(sans)
    if tls.ca_crl:
        validation.crl.filename = tls.ca_crl
    validation.verify_certificate_spki.extend(tls.verify_certificate_spki)
    validation.verify_certificate_hash.extend(tls.verify_certificate_hash)


def _agent_secret(name: str) -> Any:
    return sds_secret(name, sds_cluster=AGENT_SDS_CLUSTER)


@dataclass(frozen=True)
class FileSecret:
    """What a ``file-cert:``/``file-root:`` secret name says: a certificate and key, or a CA bundle."""

    certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""


def file_cert_secret_name(certificate: str, private_key: str) -> str:
    """Istio's name for file-mounted server certificates: ``file-cert:/etc/certs/tls.crt~/etc/certs/tls.key``.

    As in Istio, ``~`` separates the paths, so the key's path must not contain one.
    """
    return f"{FILE_CERT_PREFIX}{certificate}~{private_key}"


def file_root_secret_name(ca_certificates: str) -> str:
    """Istio's name for a file-mounted CA bundle: ``file-root:/etc/certs/ca.crt``."""
    return f"{FILE_ROOT_PREFIX}{ca_certificates}"


def parse_file_secret_name(name: str) -> FileSecret:
    """Inverse of :func:`file_cert_secret_name` and :func:`file_root_secret_name`."""
    if name.startswith(FILE_ROOT_PREFIX) and len(name) > len(FILE_ROOT_PREFIX):
        return FileSecret(ca_certificates=name.removeprefix(FILE_ROOT_PREFIX))
    certificate, sep, key = name.removeprefix(FILE_CERT_PREFIX).rpartition("~")
    if not name.startswith(FILE_CERT_PREFIX) or not sep or not certificate or not key:
        raise ValueError(
            f"{name!r} is not a file secret name: expected 'file-cert:CERT~KEY' or 'file-root:CA' "
            "such as 'file-cert:/etc/certs/tls.crt~/etc/certs/tls.key'"
        )
    return FileSecret(certificate=certificate, private_key=key)
