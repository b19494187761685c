"""What a snapshot must contain: EDS, RDS and SDS references served over ADS."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2

from malla.xds import resources
from malla.xds.references import references_of
from tests.xds.harness import ads, eds_cluster, http_listener


def mtls_cluster(name: str, *, sds: config_source_pb2.ConfigSource) -> object:
    context = tls_pb2.UpstreamTlsContext(common_tls_context=tls_pb2.CommonTlsContext(
        tls_certificate_sds_secret_configs=[secret_pb2.SdsSecretConfig(
            name="default", sds_config=sds)],
        combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
            default_validation_context=common_pb2.CertificateValidationContext(),
            validation_context_sds_secret_config=secret_pb2.SdsSecretConfig(
                name="ROOTCA", sds_config=sds))))
    cluster = eds_cluster(name)
    cluster.transport_socket.CopyFrom(base_pb2.TransportSocket(
        name="envoy.transport_sockets.tls", typed_config=resources.pack(context)))
    return cluster


def test_eds_cluster_needs_its_assignment_and_listener_its_routes() -> None:
    assert references_of(resources.CLUSTER, eds_cluster("svc")) == ((resources.ENDPOINT, "svc"),)
    assert references_of(resources.LISTENER, http_listener("http", route_config="r")) == (
        (resources.ROUTE, "r"),)


def test_tls_secrets_served_over_ads_are_references() -> None:
    refs = references_of(resources.CLUSTER, mtls_cluster("svc", sds=ads()))
    assert refs == ((resources.ENDPOINT, "svc"), (resources.SECRET, "ROOTCA"),
                    (resources.SECRET, "default"))


def test_secrets_from_another_sds_server_are_not_this_servers_business() -> None:
    agent = config_source_pb2.ConfigSource(
        api_config_source=config_source_pb2.ApiConfigSource(
            api_type=config_source_pb2.ApiConfigSource.GRPC),
        resource_api_version=config_source_pb2.V3)
    assert references_of(resources.CLUSTER, mtls_cluster("svc", sds=agent)) == (
        (resources.ENDPOINT, "svc"),)
