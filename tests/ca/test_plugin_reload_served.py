"""A running Citadel picks up replaced plug-in CA files: agents' next certificates show it, no restart.

The CA is served as in ``malla up`` (``Citadel.start``; join port and
renewal port on loopback) and certificates are asked for over gRPC with a
join token, as an agent asks for its first one. The watcher looks every
0.1 s here; waits are generous because the machine is shared.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from malla.agent.identity import build_csr
from malla.ca import material as files
from malla.ca.service import request_certificate
from malla.cli.ca_cmd import print_problem
from malla.controlplane.citadel import Citadel
from tests.ca.conftest import make_intermediate

WAIT = 60.0


class Leaf:
    def __init__(self, chain: list[str]) -> None:
        certs = [x509.load_pem_x509_certificate(pem.encode()) for pem in chain[:-1]]
        self.certificate, self.intermediates = certs[0], certs[1:]
        self.bundle = x509.load_pem_x509_certificates(chain[-1].encode())

    def verifies(self, bundle: list[x509.Certificate]) -> bool:
        verifier = PolicyBuilder().store(Store(bundle)).build_client_verifier()
        try:
            verifier.verify(self.certificate, self.intermediates)
        except VerificationError:
            return False
        return True


@pytest.fixture
def plugged(tmp_path: Path) -> Iterator[tuple[Citadel, ec.EllipticCurvePrivateKey, x509.Certificate]]:
    """A control plane's CA started on Istio plug-in files (intermediate A under an offline root)."""
    now = datetime.now(timezone.utc)
    root_key, root = files.make_root(trust_domain="cluster.local", now=now)
    key, cert = make_intermediate(root_key, root, now=now, name="intermediate A")
    directory = tmp_path / "ca"
    files.write_signing(directory, key=key, chain=[cert, root])
    files.write_file(directory / files.ROOT_CERT_FILE, files.pem_bytes([root]))
    citadel = Citadel.start(tmp_path, host="127.0.0.1", port=0, join_port=0, trust_domain="cluster.local")
    assert citadel.watch is not None
    citadel.watch.interval = 0.1
    try:
        yield citadel, root_key, root
    finally:
        citadel.stop()


def issue(citadel: Citadel) -> Leaf:
    offer = citadel.create_token(namespace="default", service_account="reviews", ttl=600)
    csr = build_csr(ec.generate_private_key(ec.SECP256R1()), "spiffe://cluster.local/ns/default/sa/reviews")
    chain = asyncio.run(request_certificate(citadel.join_address, csr, ca_bundle=offer["rootCert"].encode(),
                                            token=offer["token"], timeout=30))
    return Leaf(chain)


def wait_for(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


def signing_subject(citadel: Citadel) -> str:
    return citadel.describe()["signingCertificate"]["subject"]


def test_new_intermediate_signs_the_next_leaves_without_a_restart(plugged):
    citadel, root_key, root = plugged
    before = issue(citadel)
    assert before.certificate.issuer.rfc4514_string() == "CN=intermediate A"

    key, cert = make_intermediate(root_key, root, now=datetime.now(timezone.utc), name="intermediate B")
    files.write_signing(citadel.authority.directory, key=key, chain=[cert, root])
    wait_for("intermediate B signs", lambda: signing_subject(citadel) == "CN=intermediate B")

    after = issue(citadel)
    assert after.certificate.issuer == cert.subject
    assert after.intermediates == [cert]
    assert after.bundle == [root]
    assert after.verifies(after.bundle) and before.verifies(after.bundle)
    assert citadel.describe()["problem"] is None


def test_mismatched_key_is_refused_shown_and_the_old_signer_still_works(plugged, capsys):
    citadel, _, root = plugged
    files.write_file(citadel.authority.directory / files.CA_KEY_FILE,
                     files.key_pem(ec.generate_private_key(ec.SECP256R1())), private=True)
    wait_for("the new key is refused", lambda: citadel.describe()["problem"] is not None)

    shown = citadel.describe()
    assert shown["problem"]["file"] == "ca-key.pem"
    assert "ca-key.pem: this key does not belong to" in shown["problem"]["message"]
    assert shown["signingCertificate"]["subject"] == "CN=intermediate A"
    leaf = issue(citadel)
    assert leaf.certificate.issuer.rfc4514_string() == "CN=intermediate A"
    assert leaf.verifies([root])

    print_problem(shown["problem"])  # what `malla ca show` and `malla status` print
    err = capsys.readouterr().err
    assert "CA files refused (ca-key.pem" in err and "still signing with the previous material" in err


def test_new_root_is_trusted_beside_the_old_one_during_the_move(plugged):
    citadel, _, old_root = plugged
    before = issue(citadel)
    now = datetime.now(timezone.utc)
    new_root_key, new_root = files.make_root(trust_domain="cluster.local", now=now)
    key, cert = make_intermediate(new_root_key, new_root, now=now, name="intermediate C")
    directory = citadel.authority.directory
    files.write_signing(directory, key=key, chain=[cert, new_root])
    files.write_file(directory / files.ROOT_CERT_FILE, files.pem_bytes([new_root]))
    wait_for("intermediate C signs", lambda: signing_subject(citadel) == "CN=intermediate C")

    after = issue(citadel)
    assert after.certificate.issuer == cert.subject
    assert after.bundle == [old_root, new_root]  # ROOTCA for workloads: both roots
    assert after.verifies(after.bundle) and before.verifies(after.bundle)
    shown = citadel.describe()
    assert shown["rotation"] == "overlap" and len(shown["roots"]) == 2

    citadel.rotate_root("retire")
    assert issue(citadel).bundle == [new_root]
