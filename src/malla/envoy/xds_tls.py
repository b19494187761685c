"""Pure builder of the mTLS transport socket of a bootstrap's ``xds-grpc`` cluster (istiod's 15012).

As Istio's bootstrap had it before its agent proxied xDS: Envoy presents the
workload's own certificate (SDS secret ``default``) and checks the control
plane's against the mesh's roots (SDS secret ``ROOTCA``), both from the
agent's SDS cluster, so a rotation reaches the ADS connection without a
restart. Any workload certificate chains to those roots too, so the control
plane's name (a DNS SAN only the control plane's certificate carries) is
matched as well, and sent as SNI. The result goes to
``build_bootstrap(xds_transport_socket=...)``.
"""

from __future__ import annotations

from typing import Any

from malla.pilot.names import ROOT_CA_SECRET, WORKLOAD_CERT_SECRET

_TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"


def xds_mtls_transport_socket(*, sds_cluster: str, server_name: str) -> dict[str, Any]:
    """The UpstreamTlsContext for ADS over mTLS, with secrets from `sds_cluster`."""
    if not server_name:
        raise ValueError("server_name: the control plane's name in its certificate is required")
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": _TLS_TYPE,
            "sni": server_name,
            "common_tls_context": {
                # Envoy's upstream maximum is TLS 1.2 unless raised; Istio raises it.
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
                "alpn_protocols": ["h2"],
                "tls_certificate_sds_secret_configs": [_sds_secret(WORKLOAD_CERT_SECRET, sds_cluster)],
                "combined_validation_context": {
                    "default_validation_context": {
                        "match_typed_subject_alt_names": [
                            {"san_type": "DNS", "matcher": {"exact": server_name}},
                        ],
                    },
                    "validation_context_sds_secret_config": _sds_secret(ROOT_CA_SECRET, sds_cluster),
                },
            },
        },
    }


def _sds_secret(name: str, cluster: str) -> dict[str, Any]:
    return {
        "name": name,
        "sds_config": {
            "api_config_source": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": cluster}}],
                "set_node_on_first_message_only": True,
            },
            "resource_api_version": "V3",
            # Wait for the agent's certificate however long it takes: there is no config without it.
            "initial_fetch_timeout": "0s",
        },
    }
