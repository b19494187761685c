"""The control plane's port 15012: ADS, renewals and the remote agents' API, only for mesh certificates.

A control plane runs in this process (``tests.mtls.harness``; no Envoy). The
tests dial its mTLS port as a stranger would: in plaintext, with TLS but no
client certificate, with a certificate from another CA; and as a workload
would, with a certificate from the mesh CA, asking for its own node's
configuration or another's, and calling the agents' API for its own
namespace or another's.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2

from malla.agent.identity import build_csr
from malla.ca import material as files
from malla.ca.authority import CertificateAuthority
from malla.ca.material import CAMaterial
from malla.ca.spiffe import Identity
from malla.ca.discovery import TrustBundleError, fetch_trust_bundle, root_hashes
from malla.ca.service import CONTROL_PLANE_SAN, request_certificate
from malla.controlplane.remote_agents import FULL_METHOD as AGENT_API
from malla.controlplane.remote_agents import ApiCall, decode_answer
from malla.controlplane.server import ControlPlane, ControlPlaneOptions
from tests.mtls.conftest import mesh, namespace  # noqa: F401  (fixtures: a control plane per test)
from tests.mtls.harness import Mesh

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
CLUSTERS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


@dataclass(frozen=True)
class Credentials:
    key: bytes
    chain: bytes
    bundle: bytes


def mesh_certificate(cp: ControlPlane, namespace: str, account: str) -> Credentials:
    """A workload certificate from the mesh CA, got with a join token as an agent gets its first one."""
    assert cp.citadel is not None and cp.state is not None
    issued = cp.citadel.create_token(namespace=namespace, service_account=account, ttl=600)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = build_csr(key, f"spiffe://cluster.local/ns/{namespace}/sa/{account}")
    chain = asyncio.run(request_certificate(cp.state.ca_join_address, csr, ca_bundle=issued["rootCert"].encode(),
                                            token=issued["token"]))
    return Credentials(files.key_pem(key), "".join(chain[:-1]).encode(), chain[-1].encode())


def mtls_channel(address: str, creds: Credentials) -> grpc.Channel:
    """A channel to the mTLS port that checks the control plane's name, whatever address it dials."""
    credentials = grpc.ssl_channel_credentials(root_certificates=creds.bundle, private_key=creds.key,
                                               certificate_chain=creds.chain)
    return grpc.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", CONTROL_PLANE_SAN)])


def node_request(namespace: str, account: str) -> discovery_pb2.DiscoveryRequest:
    metadata = struct_pb2.Struct()
    metadata.update({"NAMESPACE": namespace, "SERVICE_ACCOUNT": account, "NAME": account})
    request = discovery_pb2.DiscoveryRequest(type_url=CLUSTERS)
    request.node.id = f"sidecar~127.0.9.9~{account}-abcdef.{namespace}~{namespace}.svc.cluster.local"
    request.node.metadata.CopyFrom(metadata)
    return request


def first_ads_answer(channel: grpc.Channel, request: discovery_pb2.DiscoveryRequest) -> discovery_pb2.DiscoveryResponse:
    done = threading.Event()

    def requests() -> Iterator[discovery_pb2.DiscoveryRequest]:
        yield request
        done.wait(15)  # keep the stream open until the answer is read

    stream = channel.stream_stream(ADS, request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
                                   response_deserializer=discovery_pb2.DiscoveryResponse.FromString)
    try:
        return next(iter(stream(requests(), timeout=15)))
    finally:
        done.set()


def refused_code(channel: grpc.Channel, request: discovery_pb2.DiscoveryRequest) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        first_ads_answer(channel, request)
    return caught.value.code()


def test_strangers_do_not_get_past_the_handshake(mesh: Mesh, namespace: str) -> None:
    request = node_request(namespace, "reviews")
    with grpc.insecure_channel(mesh.state.ca_address) as plaintext:
        assert refused_code(plaintext, request) is grpc.StatusCode.UNAVAILABLE
    bundle = (mesh.home / "ca" / "root-cert.pem").read_bytes()
    no_cert = grpc.ssl_channel_credentials(root_certificates=bundle)
    with grpc.secure_channel(mesh.state.ca_address, no_cert,
                             options=[("grpc.ssl_target_name_override", CONTROL_PLANE_SAN)]) as channel:
        assert refused_code(channel, request) is grpc.StatusCode.UNAVAILABLE
    # A certificate with the right SPIFFE ID from a CA the mesh does not trust.
    now = datetime.now(timezone.utc)
    other_key, other_root = files.make_root(trust_domain="cluster.local", now=now - timedelta(minutes=1))
    key = ec.generate_private_key(ec.SECP256R1())
    foreign = CertificateAuthority(CAMaterial(ca_cert=other_root, ca_key=other_key, intermediates=(), roots=(other_root,)))
    issued = foreign.sign_csr(build_csr(key, f"spiffe://cluster.local/ns/{namespace}/sa/reviews"),
                              identity=Identity("cluster.local", namespace, "reviews"))
    creds = Credentials(files.key_pem(key), issued.chain_pem(), bundle)
    with mtls_channel(mesh.state.ca_address, creds) as channel:
        assert refused_code(channel, request) is grpc.StatusCode.UNAVAILABLE


def test_a_workload_certificate_gets_its_own_configuration_and_no_other(mesh: Mesh, namespace: str) -> None:
    creds = mesh_certificate(mesh.cp, namespace, "reviews")
    with mtls_channel(mesh.state.ca_address, creds) as channel:
        answer = first_ads_answer(channel, node_request(namespace, "reviews"))
        assert answer.type_url == CLUSTERS and answer.resources
    with mtls_channel(mesh.state.ca_address, creds) as channel:
        assert refused_code(channel, node_request("kube-system", "reviews")) is grpc.StatusCode.PERMISSION_DENIED
    with mtls_channel(mesh.state.ca_address, creds) as channel:
        assert refused_code(channel, node_request(namespace, "ratings")) is grpc.StatusCode.PERMISSION_DENIED


def api_call(channel: grpc.Channel, call: ApiCall) -> tuple[int, object]:
    return decode_answer(channel.unary_unary(AGENT_API)(call.encode(), timeout=10))


def workload_body(namespace: str, account: str, address: str) -> dict[str, object]:
    return {"name": "reviews", "namespace": namespace, "address": address, "ports": {"http": 9080},
            "serviceAccount": account, "agentPid": 1,
            "nodeId": f"sidecar~{address}~reviews-abcdef.{namespace}~{namespace}.svc.cluster.local"}


def test_the_agents_api_on_15012_does_only_what_the_certificate_covers(mesh: Mesh, namespace: str) -> None:
    creds = mesh_certificate(mesh.cp, namespace, "reviews")
    with mtls_channel(mesh.state.ca_address, creds) as channel:
        status, body = api_call(channel, ApiCall("POST", "/api/v1/workloads",
                                                 json=workload_body(namespace, "reviews", "127.200.9.9")))
        assert status == 200, body
        key = body["key"]  # type: ignore[index]
        listed = mesh._get("/api/v1/workloads")["items"]
        assert [(w["key"], w["agentPid"]) for w in listed] == [(key, None)], "a remote agent's pid means nothing here"

        for call in (ApiCall("POST", "/api/v1/workloads", json=workload_body("kube-system", "reviews", "127.200.9.8")),
                     ApiCall("POST", "/api/v1/workloads", json=workload_body(namespace, "ratings", "127.200.9.8")),
                     ApiCall("POST", "/api/v1/config", json={}),
                     ApiCall("POST", "/api/v1/shutdown")):
            with pytest.raises(grpc.RpcError) as caught:
                api_call(channel, call)
            assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED, call
            assert "not open to agents" in caught.value.details() or "does not cover" in caught.value.details()

    others = mesh_certificate(mesh.cp, namespace, "ratings")
    with mtls_channel(mesh.state.ca_address, others) as channel, pytest.raises(grpc.RpcError) as caught:
        api_call(channel, ApiCall("DELETE", "/api/v1/workloads", params={"key": key}))
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    with mtls_channel(mesh.state.ca_address, creds) as channel:
        assert api_call(channel, ApiCall("DELETE", "/api/v1/workloads", params={"key": key}))[0] == 200
    assert mesh._get("/api/v1/workloads")["items"] == []


def test_the_join_port_serves_the_roots_that_the_token_names(mesh: Mesh) -> None:
    bundle = (mesh.home / "ca" / "root-cert.pem").read_bytes()
    assert fetch_trust_bundle(mesh.state.ca_join_address, hashes=root_hashes(bundle)) == bundle
    with pytest.raises(TrustBundleError, match="none of the roots"):
        fetch_trust_bundle(mesh.state.ca_join_address, hashes=["sha256:" + "0" * 64])
    with pytest.raises(TrustBundleError, match="cannot reach"):
        fetch_trust_bundle("127.0.0.1:1", hashes=root_hashes(bundle))


def test_with_mtls_host_only_the_mtls_ports_answer_beyond_loopback(tmp_path: Path) -> None:
    cp = ControlPlane(ControlPlaneOptions(home=tmp_path / "home", xds_port=0, api_port=0, monitoring_port=0,
                                          ca_port=0, ca_join_port=0, mtls_host="0.0.0.0"))
    state = cp.start()
    try:
        # 127.0.0.2 stands for the control plane host's address on the network: not in its certificate.
        port, join, xds = (int(a.rpartition(":")[2]) for a in (state.ca_address, state.ca_join_address,
                                                              state.xds_address))
        bundle = (tmp_path / "home" / "ca" / "root-cert.pem").read_bytes()
        assert fetch_trust_bundle(f"127.0.0.2:{join}", hashes=root_hashes(bundle)) == bundle
        creds = mesh_certificate(cp, "shop", "cart")
        with mtls_channel(f"127.0.0.2:{port}", creds) as channel:
            assert first_ads_answer(channel, node_request("shop", "cart")).resources
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", xds), timeout=5).close()
        assert state.ca_address == f"127.0.0.1:{port}", "agents on this host still dial loopback"
    finally:
        cp.stop()
