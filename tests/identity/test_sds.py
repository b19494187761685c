"""The agent's SDS server with a scripted client on its Unix socket (real Envoy: test_envoy_mtls)."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2

from malla.agent.identity import (
    WorkloadCertificate,
    build_csr,
    certificate_from_response,
    generate_key,
)
from malla.agent.sds import SdsServer
from malla.ca.authority import CertificateAuthority
from malla.ca.spiffe import parse_spiffe_id
from malla.xds import resources
from tests.identity.conftest import REVIEWS

METHOD = "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets"


def issue(ca: CertificateAuthority) -> WorkloadCertificate:
    key = generate_key()
    chain = ca.sign_csr(build_csr(key, REVIEWS), identity=parse_spiffe_id(REVIEWS)).cert_chain()
    return certificate_from_response(chain, key=key, spiffe_id=REVIEWS, now=0)


class Client:
    def __init__(self, path: str) -> None:
        self.channel = grpc.aio.insecure_channel(f"unix:{path}")
        self.call = self.channel.stream_stream(
            METHOD, request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DiscoveryResponse.FromString)()
        # Cancelling a pending read cancels the whole call: read in a task of its own.
        self.responses: asyncio.Queue[object] = asyncio.Queue()
        self.pump = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        while True:
            response = await self.call.read()
            if response is grpc.aio.EOF:
                return
            self.responses.put_nowait(response)

    async def ask(self, *names: str, version: str = "", nonce: str = "") -> None:
        await self.call.write(discovery_pb2.DiscoveryRequest(
            node=base_pb2.Node(id="sidecar~reviews"), type_url=resources.SECRET,
            resource_names=list(names), version_info=version, response_nonce=nonce))

    async def read(self, timeout: float = 5.0) -> discovery_pb2.DiscoveryResponse:
        return await asyncio.wait_for(self.responses.get(), timeout)  # type: ignore[return-value]

    async def close(self) -> None:
        self.pump.cancel()
        await self.channel.close()


def secrets_of(response: discovery_pb2.DiscoveryResponse) -> dict[str, secret_pb2.Secret]:
    found = {}
    for packed in response.resources:
        secret = secret_pb2.Secret()
        packed.Unpack(secret)
        found[secret.name] = secret
    return found


def test_serves_default_and_rootca_and_pushes_rotations(tmp_path: Path):
    ca = CertificateAuthority.open(tmp_path / "ca")

    async def main() -> None:
        sds = SdsServer()
        await sds.start(tmp_path / "agent" / "sds.sock")
        client = Client(sds.path or "")
        try:
            await client.ask("default", "ROOTCA")
            with pytest.raises(asyncio.TimeoutError):  # nothing to serve before a certificate
                await client.read(timeout=0.3)
            first = issue(ca)
            sds.update(first)
            response = await client.read()
            found = secrets_of(response)
            assert response.type_url == resources.SECRET
            assert found["default"].tls_certificate.certificate_chain.inline_bytes == first.chain_pem
            assert found["default"].tls_certificate.private_key.inline_bytes == first.key_pem
            assert found["ROOTCA"].validation_context.trusted_ca.inline_bytes == (
                ca.trust_bundle_pem())
            await client.ask("default", "ROOTCA", version=response.version_info,
                             nonce=response.nonce)
            await _until(sds.synced)
            second = issue(ca)
            sds.update(second)
            pushed = await client.read()
            assert pushed.version_info != response.version_info
            # Only what changed travels: the key and chain; the bundle is the same.
            assert set(secrets_of(pushed)) == {"default"}
            assert secrets_of(pushed)["default"].tls_certificate.certificate_chain.inline_bytes == (
                second.chain_pem)
            assert not sds.synced()
            await client.ask("default", "ROOTCA", version=pushed.version_info, nonce=pushed.nonce)
            await _until(sds.synced)
        finally:
            await client.close()
            await sds.stop(grace=0)
    asyncio.run(main())


def test_names_it_does_not_hold_get_no_answer(tmp_path: Path):
    ca = CertificateAuthority.open(tmp_path / "ca")

    async def main() -> None:
        sds = SdsServer()
        sds.update(issue(ca))
        await sds.start(tmp_path / "sds.sock")
        client = Client(sds.path or "")
        try:
            await client.ask("file-cert:/etc/certs/cert.pem")
            with pytest.raises(asyncio.TimeoutError):
                await client.read(timeout=0.3)
            await client.ask("ROOTCA")
            assert set(secrets_of(await client.read())) == {"ROOTCA"}
        finally:
            await client.close()
            await sds.stop(grace=0)
    asyncio.run(main())


def test_socket_is_private_and_cleaned_up(tmp_path: Path):
    async def main() -> None:
        sds = SdsServer()
        path = tmp_path / "run" / "sds.sock"
        await sds.start(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        await sds.stop(grace=0)
        assert not path.exists()
        path.write_text("not a socket")
        with pytest.raises(ValueError, match="exists and is not a socket"):
            await SdsServer().start(path)
    asyncio.run(main())


async def _until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)
