"""Telemetry in generated Envoy config: access logs to the agent, peer headers, the Zipkin tracer (pure).

Generated through ``generate`` as the control plane does, for proxies as
their agents describe them; the real-Envoy tests (``test_mesh_telemetry``)
show Envoy accepts and acts on it.
"""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2
from envoy.extensions.filters.http.header_to_metadata.v3 import header_to_metadata_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.config.trace.v3 import zipkin_pb2

from malla.pilot.consistency import check_consistency
from malla.pilot.generate import generate
from malla.pilot.protocol import Protocol
from malla.pilot.resources import CLUSTER, LISTENER
from malla.pilot.snapshot import MeshConfig, MeshSnapshot, Proxy, ProxyKind
from malla.telemetry import peer_metadata
from malla.telemetry.proxy_config import split_host_port
from tests.pilot.mesh import sidecar, snapshot, workload

MESH = MeshConfig(zipkin_address="127.0.0.1:20001", trace_sampling=25.0)
SOCKET = "/tmp/malla-als-test/als.sock"
GATEWAY_YAML = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
"""


def reviews_proxy(**changes: Any) -> Proxy:
    fields = dict(workload_name="reviews", access_log_service=SOCKET, metrics_address="127.0.1.5:15020",
                  labels={"app": "reviews", "version": "v2"}, service_account="reviews")
    fields.update(changes)
    return sidecar("reviews", ip="127.0.1.5", inbound=[(9080, 31000, Protocol.HTTP)], **fields)


def world(mesh: MeshConfig = MESH) -> MeshSnapshot:
    return snapshot(workloads=[
        workload("reviews-v2", "127.0.1.5", labels={"app": "reviews", "version": "v2"}),
        workload("mongo", "127.0.1.9", ports={"mongo": 27017}),
    ], mesh=mesh)


def managers(listener: Any) -> list[hcm_pb2.HttpConnectionManager]:
    return [hcm_pb2.HttpConnectionManager.FromString(f.typed_config.value)
            for c in listener.filter_chains for f in c.filters if f.name.endswith("http_connection_manager")]


def filter_config(manager: hcm_pb2.HttpConnectionManager, name: str, message: type) -> Any:
    found = [f for f in manager.http_filters if f.name == name]
    assert found, f"no {name} in {[f.name for f in manager.http_filters]}"
    return message.FromString(found[0].typed_config.value)


def access_log(manager: hcm_pb2.HttpConnectionManager) -> als_pb2.HttpGrpcAccessLogConfig:
    logs = [a for a in manager.access_log if a.name == "envoy.access_loggers.http_grpc"]
    assert len(logs) == 1
    return als_pb2.HttpGrpcAccessLogConfig.FromString(logs[0].typed_config.value)


def tags(common: als_pb2.CommonGrpcAccessLogConfig) -> dict[str, str]:
    return {t.tag: t.literal.value for t in common.custom_tags}


def test_a_proxy_without_an_agent_and_a_mesh_without_a_tracer_get_none_of_it() -> None:
    out = generate(sidecar("reviews", ip="127.0.1.5", inbound=[(9080, 31000, Protocol.HTTP)]), world(MeshConfig()))
    assert not {"envoy_accesslog_service", "zipkin"} & set(out[CLUSTER])
    for listener in out[LISTENER].values():
        for manager in managers(listener):
            assert not manager.access_log and not manager.HasField("tracing")
            assert not any("header_" in f.name for f in manager.http_filters)


def test_inbound_takes_the_callers_metadata_and_answers_with_its_own() -> None:
    out = generate(reviews_proxy(), world())
    (manager,) = {m.SerializeToString(): m for m in managers(out[LISTENER]["virtualInbound"])}.values()
    extract = filter_config(manager, "envoy.filters.http.header_to_metadata", header_to_metadata_pb2.Config)
    assert [(r.header, r.on_header_present.key, r.remove) for r in extract.request_rules] == [
        ("x-envoy-peer-metadata", "downstream", True), ("x-envoy-peer-metadata-id", "downstream_id", True)]
    mutation = filter_config(manager, "envoy.filters.http.header_mutation", header_mutation_pb2.HeaderMutation)
    sent = {m.append.header.key: m.append.header.value for m in mutation.mutations.response_mutations}
    me = peer_metadata.decode(sent["x-envoy-peer-metadata"])
    assert me is not None and (me.workload, me.namespace, me.app, me.version) == ("reviews", "default", "reviews", "v2")
    assert sent["x-envoy-peer-metadata-id"] == "sidecar~127.0.1.5~reviews.default"
    assert not mutation.mutations.request_mutations
    log = access_log(manager)
    assert log.common_config.log_name == "inbound"
    assert log.common_config.grpc_service.envoy_grpc.cluster_name == "envoy_accesslog_service"
    assert tags(log.common_config) == {
        "reporter": "destination", "destination_service": "reviews.default.svc.cluster.local",
        "destination_service_name": "reviews", "destination_service_namespace": "default"}
    assert list(log.additional_response_trailers_to_log) == ["grpc-status"]


def test_outbound_sends_its_metadata_and_strips_the_answers() -> None:
    out = generate(reviews_proxy(), world())
    (manager,) = managers(out[LISTENER]["127.0.1.5_15001"])
    mutation = filter_config(manager, "envoy.filters.http.header_mutation", header_mutation_pb2.HeaderMutation)
    assert {m.append.header.key for m in mutation.mutations.request_mutations} == {
        "x-envoy-peer-metadata", "x-envoy-peer-metadata-id"}
    extract = filter_config(manager, "envoy.filters.http.header_to_metadata", header_to_metadata_pb2.Config)
    assert {r.on_header_present.key for r in extract.response_rules} == {"upstream", "upstream_id"}
    assert all(r.remove for r in extract.response_rules)
    assert tags(access_log(manager).common_config) == {"reporter": "source"}
    assert manager.http_filters[-1].name == "envoy.filters.http.router"


def test_tcp_connections_are_logged_on_connect_periodically_and_on_close() -> None:
    out = generate(reviews_proxy(), world())
    (chain,) = out[LISTENER]["127.0.1.5_27017"].filter_chains
    tcp = tcp_proxy_pb2.TcpProxy.FromString(chain.filters[0].typed_config.value)
    assert tcp.access_log_options.flush_access_log_on_connected
    assert tcp.access_log_options.access_log_flush_interval.seconds == 5
    (log,) = tcp.access_log
    config = als_pb2.TcpGrpcAccessLogConfig.FromString(log.typed_config.value)
    assert config.common_config.log_name == "outbound" and tags(config.common_config) == {"reporter": "source"}


def test_every_http_connection_manager_traces_to_the_zipkin_cluster() -> None:
    out = generate(reviews_proxy(), world())
    for listener in out[LISTENER].values():
        for manager in managers(listener):
            tracing = manager.tracing
            assert tracing.random_sampling.value == 25.0 and tracing.provider.name == "envoy.tracers.zipkin"
            zipkin = zipkin_pb2.ZipkinConfig.FromString(tracing.provider.typed_config.value)
            assert (zipkin.collector_cluster, zipkin.collector_endpoint) == ("zipkin", "/api/v2/spans")
            assert zipkin.collector_endpoint_version == zipkin_pb2.ZipkinConfig.HTTP_JSON and zipkin.trace_id_128bit
            assert {t.tag: t.literal.value for t in tracing.custom_tags}["istio.canonical_revision"] == "v2"
    cluster = out[CLUSTER]["zipkin"]
    address = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert cluster.type == cluster_pb2.Cluster.STATIC and (address.address, address.port_value) == ("127.0.0.1", 20001)
    als = out[CLUSTER]["envoy_accesslog_service"]
    assert als.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe.path == SOCKET
    assert check_consistency(out).ok


def test_a_collector_named_by_host_is_resolved_by_dns() -> None:
    out = generate(reviews_proxy(), world(MESH.with_(zipkin_address="zipkin.tracing:9411")))
    cluster = out[CLUSTER]["zipkin"]
    assert cluster.cluster_type.name == "envoy.clusters.dns"
    assert cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address == "zipkin.tracing"


def test_gateways_report_as_source_and_trace() -> None:
    gateway = Proxy(id="router~127.0.0.1~ingressgateway-1.istio-system~istio-system.svc.cluster.local",
                    namespace="istio-system", kind=ProxyKind.ROUTER, labels={"istio": "ingressgateway"},
                    ip="127.0.0.1", workload_name="ingressgateway", access_log_service=SOCKET)
    out = generate(gateway, snapshot(GATEWAY_YAML, mesh=MESH))
    (manager,) = managers(out[LISTENER]["127.0.0.1_8080"])
    assert tags(access_log(manager).common_config) == {"reporter": "source"}
    assert manager.HasField("tracing")


@pytest.mark.parametrize("address", ["zipkin", "zipkin:", ":9411", "zipkin:http", "zipkin:70000"])
def test_a_collector_address_must_be_host_and_port(address: str) -> None:
    with pytest.raises(ValueError, match="is not host:port"):
        split_host_port(address)
