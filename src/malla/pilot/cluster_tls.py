"""Client-side TLS of outbound clusters: DestinationRule ``tls`` and Istio's auto mTLS.

ISTIO_MUTUAL presents the workload certificate (SDS secret ``default``),
trusts the mesh CA (``ROOTCA``), checks the server's SPIFFE ID and sends
Istio's SNI (``outbound_.9080_.v2_.reviews...``). SIMPLE and MUTUAL use the
files or the ``credentialName`` the rule names. With no ``tls`` in any rule,
auto mTLS picks per endpoint: ISTIO_MUTUAL to endpoints labelled
``tlsMode: istio`` (they have a sidecar), plaintext to the rest.
A ``proxyProtocol`` policy wraps whichever socket results in Envoy's
upstream PROXY protocol socket.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.config.core.v3 import proxy_protocol_pb2
from envoy.extensions.transport_sockets.proxy_protocol.v3 import upstream_proxy_protocol_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2

from malla.pilot import names
from malla.pilot.proto_values import struct, typed

TLS_SOCKET = "envoy.transport_sockets.tls"
TLS_MODE_METADATA = "envoy.transport_socket_match"
ISTIO_ALPN = ("istio",)


def sds_secret(name: str, *, sds_cluster: str | None) -> secret_pb2.SdsSecretConfig:
    """A reference to a secret over ADS, or over the agent's SDS cluster when one is named."""
    source = config_source_pb2.ConfigSource(resource_api_version=config_source_pb2.V3)
    if sds_cluster:
        api = source.api_config_source
        api.api_type = config_source_pb2.ApiConfigSource.GRPC
        api.transport_api_version = config_source_pb2.V3
        api.grpc_services.add().envoy_grpc.cluster_name = sds_cluster
    else:
        source.ads.SetInParent()
    return secret_pb2.SdsSecretConfig(name=name, sds_config=source)


def _san_matchers(sans: Iterable[str]) -> list[common_pb2.SubjectAltNameMatcher]:
    out = []
    for san in sorted(set(sans)):
        kind = common_pb2.SubjectAltNameMatcher.URI if "://" in san else common_pb2.SubjectAltNameMatcher.DNS
        out.append(common_pb2.SubjectAltNameMatcher(san_type=kind, matcher=string_pb2.StringMatcher(exact=san)))
    return out


def _tls_params() -> common_pb2.TlsParameters:
    # Envoy's upstream maximum is TLS 1.2 unless raised; Istio raises it.
    return common_pb2.TlsParameters(
        tls_minimum_protocol_version=common_pb2.TlsParameters.TLSv1_2,
        tls_maximum_protocol_version=common_pb2.TlsParameters.TLSv1_3,
    )


def istio_mutual_context(
    *, sni: str, sans: Iterable[str], http2: bool, sds_cluster: str | None
) -> tls_pb2.UpstreamTlsContext:
    common = tls_pb2.CommonTlsContext(tls_params=_tls_params())
    common.tls_certificate_sds_secret_configs.append(sds_secret(names.WORKLOAD_CERT_SECRET, sds_cluster=sds_cluster))
    combined = common.combined_validation_context
    combined.default_validation_context.match_typed_subject_alt_names.extend(_san_matchers(sans))
    combined.validation_context_sds_secret_config.CopyFrom(sds_secret(names.ROOT_CA_SECRET, sds_cluster=sds_cluster))
    common.alpn_protocols.extend([*ISTIO_ALPN, "h2"] if http2 else ISTIO_ALPN)
    return tls_pb2.UpstreamTlsContext(common_tls_context=common, sni=sni)


def translate_client_tls(
    tls: Any, *, default_sni: str, sans: Iterable[str], http2: bool, sds_cluster: str | None, system_ca: str
) -> tls_pb2.UpstreamTlsContext | None:
    """A DestinationRule ``tls`` block -> UpstreamTlsContext (None for DISABLE)."""
    mode = tls.mode or "DISABLE"
    if mode == "DISABLE":
        return None
    sans = list(tls.subject_alt_names) or list(sans)
    if mode == "ISTIO_MUTUAL":
        return istio_mutual_context(sni=tls.sni or default_sni, sans=sans, http2=http2, sds_cluster=sds_cluster)
    common = tls_pb2.CommonTlsContext(tls_params=_tls_params())
    if http2:
        common.alpn_protocols.append("h2")
    if tls.credential_name:
        if mode == "MUTUAL":
            common.tls_certificate_sds_secret_configs.append(
                sds_secret(names.credential_secret_name(tls.credential_name), sds_cluster=sds_cluster)
            )
        ca = sds_secret(names.credential_ca_secret_name(tls.credential_name), sds_cluster=sds_cluster)
        common.combined_validation_context.validation_context_sds_secret_config.CopyFrom(ca)
        common.combined_validation_context.default_validation_context.match_typed_subject_alt_names.extend(
            _san_matchers(tls.subject_alt_names)
        )
    else:
        if mode == "MUTUAL" and tls.client_certificate:
            common.tls_certificates.add(
                certificate_chain=base_pb2.DataSource(filename=tls.client_certificate),
                private_key=base_pb2.DataSource(filename=tls.private_key or ""),
            )
        if not tls.insecure_skip_verify:
            validation = common.validation_context
            validation.trusted_ca.filename = tls.ca_certificates or system_ca
            if tls.ca_crl:
                validation.crl.filename = tls.ca_crl
            validation.match_typed_subject_alt_names.extend(_san_matchers(tls.subject_alt_names))
    return tls_pb2.UpstreamTlsContext(common_tls_context=common, sni=tls.sni or "")


def transport_socket(context: tls_pb2.UpstreamTlsContext) -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(name=TLS_SOCKET, typed_config=typed(context))


def auto_mtls_matches(context: tls_pb2.UpstreamTlsContext) -> list[cluster_pb2.Cluster.TransportSocketMatch]:
    """Istio's ``tlsMode-istio`` / ``tlsMode-disabled`` pair, chosen by endpoint metadata."""
    Match = cluster_pb2.Cluster.TransportSocketMatch
    return [
        Match(name="tlsMode-istio", match=struct({"tlsMode": "istio"}), transport_socket=transport_socket(context)),
        Match(
            name="tlsMode-disabled",
            match=struct({}),
            transport_socket=raw_buffer(),
        ),
    ]


def raw_buffer() -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(
        name="envoy.transport_sockets.raw_buffer", typed_config=typed(raw_buffer_pb2.RawBuffer())
    )


def translate_proxy_protocol(proxy_protocol: Any, inner: base_pb2.TransportSocket | None) -> base_pb2.TransportSocket:
    """``trafficPolicy.proxyProtocol`` -> the upstream PROXY protocol socket around ``inner``."""
    version = (
        proxy_protocol_pb2.ProxyProtocolConfig.V2
        if proxy_protocol.version == "V2"
        else proxy_protocol_pb2.ProxyProtocolConfig.V1
    )
    config = upstream_proxy_protocol_pb2.ProxyProtocolUpstreamTransport(
        config=proxy_protocol_pb2.ProxyProtocolConfig(version=version), transport_socket=inner or raw_buffer()
    )
    return base_pb2.TransportSocket(name="envoy.transport_sockets.upstream_proxy_protocol", typed_config=typed(config))
