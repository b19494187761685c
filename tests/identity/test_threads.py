"""The thread runners the synchronous control plane and agent use: CA and workload identity."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import pytest

from malla.agent.identity import CertificateRotator, ca_fetcher
from malla.agent.sds import WorkloadIdentityThread
from malla.ca.runner import CAServerThread, ca_dir, open_ca
from tests.identity.conftest import REVIEWS


def test_control_plane_ca_and_agent_identity_threads(tmp_path: Path):
    authority, tokens = open_ca(tmp_path)
    assert (ca_dir(tmp_path) / "root-cert.pem").is_file()
    assert (ca_dir(tmp_path) / "join-token.key").is_file()
    ca = CAServerThread(authority, tokens=tokens, port=0, join_port=0)
    port, join_port = ca.start()
    socket_dir = Path(tempfile.mkdtemp(prefix="malla-t-"))
    fetch = ca_fetcher(address=f"127.0.0.1:{port}", join_address=f"127.0.0.1:{join_port}",
                       ca_bundle=(ca_dir(tmp_path) / "root-cert.pem").read_bytes(),
                       token=tokens.create_token("default", "reviews", ttl=60))
    identity = WorkloadIdentityThread(CertificateRotator(spiffe_id=REVIEWS, fetch=fetch),
                                      socket_path=socket_dir / "sds.sock")
    try:
        cert = identity.start(timeout=10)
        assert cert.spiffe_id == REVIEWS
        status = identity.status()
        assert (status.state, status.serial) == ("VALID", cert.serial_hex)
        assert (socket_dir / "sds.sock").is_socket()
        assert identity.synced() is False  # no Envoy has asked yet
    finally:
        identity.stop()
        ca.stop()
    assert not (socket_dir / "sds.sock").exists()
    socket_dir.rmdir()


def test_identity_thread_says_why_there_is_no_certificate(tmp_path: Path):
    authority, _ = open_ca(tmp_path)
    fetch = ca_fetcher(address="127.0.0.1:1", join_address="127.0.0.1:1",
                       ca_bundle=authority.trust_bundle_pem(), token="malla1.x.y", timeout=0.5)
    socket_dir = Path(tempfile.mkdtemp(prefix="malla-t-"))
    identity = WorkloadIdentityThread(
        CertificateRotator(spiffe_id=REVIEWS, fetch=fetch, retry_base=0.1),
        socket_path=socket_dir / "sds.sock")
    with pytest.raises(TimeoutError, match=r"no certificate for spiffe://cluster\.local/ns/default/"
                                           r"sa/reviews within 1 s: the CA at 127\.0\.0\.1:1"):
        identity.start(timeout=1)
    assert not (socket_dir / "sds.sock").exists()
    socket_dir.rmdir()


def test_ca_thread_names_a_port_in_use(tmp_path: Path):
    authority, tokens = open_ca(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"127.0.0.1:{port} \\(mTLS port\\); is the port in use"):
            CAServerThread(authority, tokens=tokens, port=port, join_port=0).start()
