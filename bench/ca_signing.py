"""Benchmark 6, certificate signing: CSRs signed per second by malla's CA, in process and over gRPC.

In process: ``CertificateAuthority.sign_csr`` in a loop. Over gRPC: the
CA's ``CAServerThread`` in a process of its own pinned to core 0 (``python
-m bench.ca_signing serve DIR``), called from this process on core 1 with
a join token, first over one channel with 8 calls in flight (the service's
capacity), then one new TLS channel per CSR, one at a time (what an agent
joining does). CSRs (EC P-256) are made before the clock starts.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Result, safe_div
from bench.processes import ENV, affinity, stop_process

IN_FLIGHT = 8


def make_csrs(count: int) -> list[bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    out = []
    for _ in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
        out.append(csr.public_bytes(serialization.Encoding.PEM))
    return out


def in_process(directory: Path, csrs: list[bytes], *, seconds: float) -> float:
    from malla.ca.authority import CertificateAuthority
    from malla.ca.spiffe import Identity

    ca = CertificateAuthority.open(directory)
    identity = Identity("cluster.local", "default", "bench")
    signed, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        ca.sign_csr(csrs[signed % len(csrs)], identity=identity)
        signed += 1
    return signed / (time.perf_counter() - started)


async def _over_channel(address: str, csrs: list[bytes], *, bundle: bytes, token: str, seconds: float) -> float:
    import grpc

    from malla.ca.messages import FULL_METHOD, IstioCertificateRequest, IstioCertificateResponse

    signed = 0
    credentials = grpc.ssl_channel_credentials(root_certificates=bundle)
    async with grpc.aio.secure_channel(address, credentials) as channel:
        call = channel.unary_unary(FULL_METHOD, request_serializer=IstioCertificateRequest.SerializeToString,
                                   response_deserializer=IstioCertificateResponse.FromString)
        metadata = (("authorization", f"Bearer {token}"),)
        started = time.perf_counter()

        async def worker(offset: int) -> None:
            nonlocal signed
            i = offset
            while time.perf_counter() - started < seconds:
                await call(IstioCertificateRequest(csr=csrs[i % len(csrs)].decode()), metadata=metadata, timeout=30)
                signed += 1
                i += IN_FLIGHT

        await asyncio.gather(*(worker(k) for k in range(IN_FLIGHT)))
        return signed / (time.perf_counter() - started)


async def _channel_per_csr(address: str, csrs: list[bytes], *, bundle: bytes, token: str, seconds: float) -> float:
    from malla.ca.service import request_certificate

    signed, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        await request_certificate(address, csrs[signed % len(csrs)], ca_bundle=bundle, token=token)
        signed += 1
    return signed / (time.perf_counter() - started)


def serve(directory: Path) -> None:
    """The CA server process: print the join port, serve until stdin closes."""
    from malla.ca.runner import CAServerThread
    from malla.ca.authority import CertificateAuthority
    from malla.ca.tokens import JoinTokens, load_or_create_secret

    authority = CertificateAuthority.open(directory)
    server = CAServerThread(authority, tokens=JoinTokens(load_or_create_secret(directory)), port=None, join_port=0)
    _, join_port = server.start()
    print(json.dumps({"join_port": join_port}), flush=True)
    sys.stdin.read()
    server.stop()


def run(*, quick: bool, workdir: Path, seconds: float | None = None) -> Result:
    from malla.ca.authority import CertificateAuthority
    from malla.ca.tokens import JoinTokens, load_or_create_secret

    result = Result("ca_signing", "Certificate signing: CSRs per second", quick)
    seconds = seconds or (3.0 if quick else 10.0)
    directory = workdir / "ca"
    bundle = CertificateAuthority.open(directory).trust_bundle_pem()
    token = JoinTokens(load_or_create_secret(directory)).create_token("default", "bench", ttl=3600)
    csrs = make_csrs(64)
    os.sched_setaffinity(0, {1 % (os.cpu_count() or 1)})
    try:
        local = in_process(directory, csrs, seconds=seconds)
        server = subprocess.Popen([sys.executable, "-m", "bench.ca_signing", "serve", str(directory)], env=ENV, text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=affinity(0))
        try:
            assert server.stdout is not None
            port = json.loads(server.stdout.readline())["join_port"]
            address = f"localhost:{port}"
            channel = asyncio.run(_over_channel(address, csrs, bundle=bundle, token=token, seconds=seconds))
            per_csr = asyncio.run(_channel_per_csr(address, csrs, bundle=bundle, token=token, seconds=seconds))
        finally:
            if server.stdin is not None:
                server.stdin.close()
            stop_process(server)
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    result.figure("in-process sign_csr", local, "CSR/s")
    result.figure(f"gRPC, one channel, {IN_FLIGHT} in flight", channel, "CSR/s")
    result.figure("gRPC, a new TLS channel per CSR (agent join)", per_csr, "CSR/s")
    result.ratio("gRPC (one channel) / in-process", safe_div(channel, local), baseline="in-process, same run")
    result.ratio("gRPC (channel per CSR) / in-process", safe_div(per_csr, local), baseline="in-process, same run")
    result.notes.append(f"{seconds:g} s each; in-process on core 1; the gRPC server on core 0, the client on core 1.")
    return result


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(Path(sys.argv[2]))
    else:
        sys.exit("usage: python -m bench.ca_signing serve CA_DIR")
