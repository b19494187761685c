"""What the control plane sends a gateway for TLS and ports, and how the agent reads Envoy's listeners."""

from __future__ import annotations

import dataclasses

import pytest
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from malla.agent.gateway import ServedPort, describe_listeners
from malla.pilot.gateways import FileSecret, file_cert_secret_name, file_root_secret_name, parse_file_secret_name
from malla.pilot.generate import generate
from malla.pilot.resources import LISTENER

from tests.pilot.mesh import router, snapshot

GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: [files.example.com]
    tls: {mode: MUTUAL, serverCertificate: /certs/tls.crt, privateKey: /certs/tls.key,
          caCertificates: /certs/ca.crt, subjectAltNames: [client.example.com]}
  - port: {number: 8443, name: https-cred, protocol: HTTPS}
    hosts: [cred.example.com]
    tls: {mode: SIMPLE, credentialName: cred}
"""


def tls_context(listener, host: str) -> tls_pb2.DownstreamTlsContext:
    chain = next(c for c in listener.filter_chains if host in c.filter_chain_match.server_names)
    ctx = tls_pb2.DownstreamTlsContext()
    chain.transport_socket.typed_config.Unpack(ctx)
    return ctx


def test_gateway_certificates_come_from_the_agents_sds_server():
    listener = generate(router(), snapshot(GATEWAY))[LISTENER]["0.0.0.0_8443"]
    files = tls_context(listener, "files.example.com").common_tls_context
    [cert] = files.tls_certificate_sds_secret_configs
    assert cert.name == "file-cert:/certs/tls.crt~/certs/tls.key"
    assert cert.sds_config.api_config_source.grpc_services[0].envoy_grpc.cluster_name == "sds-grpc"
    combined = files.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == "file-root:/certs/ca.crt"
    assert [m.matcher.exact for m in combined.default_validation_context.match_typed_subject_alt_names] == [
        "client.example.com"
    ]
    assert not files.tls_certificates  # nothing read by Envoy itself: renewals go through the agent
    cred = tls_context(listener, "cred.example.com").common_tls_context.tls_certificate_sds_secret_configs[0]
    assert cred.name == "kubernetes://cred"
    assert cred.sds_config.api_config_source.grpc_services[0].envoy_grpc.cluster_name == "sds-grpc"


def test_gateway_listeners_bind_the_gateways_address_exclusively():
    listeners = generate(dataclasses.replace(router(), ip="127.0.0.1"), snapshot(GATEWAY))[LISTENER]
    assert list(listeners) == ["127.0.0.1_8443"]
    listener = listeners["127.0.0.1_8443"]
    assert listener.address.socket_address.address == "127.0.0.1"
    assert listener.enable_reuse_port.value is False and listener.HasField("enable_reuse_port")


def test_file_secret_names_round_trip_and_bad_ones_are_refused():
    assert parse_file_secret_name(file_cert_secret_name("/a b/c.crt", "/k.key")) == FileSecret("/a b/c.crt", "/k.key")
    assert parse_file_secret_name(file_root_secret_name("/ca.crt")) == FileSecret(ca_certificates="/ca.crt")
    with pytest.raises(ValueError, match="expected 'file-cert:CERT~KEY' or 'file-root:CA'"):
        parse_file_secret_name("file-cert:/only-a-cert")


def test_envoys_listeners_become_urls_and_bind_errors():
    hcm = {"typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network."
                                      "http_connection_manager.v3.HttpConnectionManager"}}
    tls = {"typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                                     "DownstreamTlsContext"}}
    dump = {"configs": [
        {"name": "0.0.0.0_8080", "active_state": {"listener": {
            "address": {"socket_address": {"address": "0.0.0.0", "port_value": 8080}},
            "filter_chains": [{"filters": [hcm]}]}}},
        {"name": "127.0.0.1_8443", "active_state": {"listener": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 8443}},
            "filter_chains": [
                {"filter_chain_match": {"server_names": ["a.example.com"]}, "filters": [hcm], "transport_socket": tls},
                {"filter_chain_match": {"server_names": ["b.example.com"]}, "filters": [{}]},
                {"filters": [{}]},
            ]}}},
        {"error_state": {"failed_configuration": {"name": "127.0.0.1_9000"}, "details": "cannot bind"}},
    ]}
    served, errors = describe_listeners(dump)
    assert [s.url for s in served] == [
        "http://127.0.0.1:8080/",
        "https://127.0.0.1:8443/ (SNI a.example.com)",
        "tcp://127.0.0.1:8443",
        "tls://127.0.0.1:8443 (SNI b.example.com)",
    ]
    assert errors == {"127.0.0.1_9000": "cannot bind"}
    assert ServedPort(8080, "http", "::1").url == "http://[::1]:8080/"
