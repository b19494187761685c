"""Every workload gets a SPIFFE identity and talks mTLS by default: ``malla up`` + ``malla run``, nothing else."""

from __future__ import annotations

import pytest
from cryptography import x509

from tests.mtls.harness import Mesh, xfcc

pytestmark = pytest.mark.envoy

URL = "http://reviews:9080/"


def test_workloads_talk_mtls_and_the_app_sees_the_callers_spiffe_id(mesh: Mesh, namespace: str) -> None:
    mesh.server("reviews", namespace=namespace)
    client = mesh.client("productpage", namespace=namespace)

    reply = client.http().get(URL)

    assert reply.status == 200, reply.body
    header = xfcc(reply)
    # The server's sidecar terminated mTLS and vouches for the caller's certificate.
    assert f"URI=spiffe://cluster.local/ns/{namespace}/sa/productpage" in header, header
    assert f"By=spiffe://cluster.local/ns/{namespace}/sa/reviews" in header, header


def test_status_and_proxy_config_show_each_workloads_certificate(mesh: Mesh, namespace: str) -> None:
    server = mesh.server("reviews", "--service-account", "bookinfo-reviews", namespace=namespace)
    mesh.client("productpage", namespace=namespace)

    status = mesh.cli_json("status")
    certs = {c["name"]: c for c in status["certificates"]}
    assert set(certs) == {"reviews", "productpage"}
    reviews = certs["reviews"]
    assert reviews["spiffeId"] == f"spiffe://cluster.local/ns/{namespace}/sa/bookinfo-reviews"
    assert reviews["state"] == "VALID" and reviews["envoySynced"] is True
    assert 0 < reviews["secondsLeft"] <= 24 * 3600  # the CA's default lifetime
    text = mesh.cli("status").stdout
    for cert in certs.values():
        assert cert["spiffeId"] in text and cert["serial"] in text, text

    secret = mesh.cli_json("proxy-config", "secret", server.address)
    default, root = secret["secrets"][0], secret["secrets"][1]
    assert (default["name"], default["spiffeId"], default["status"]) == ("default", reviews["spiffeId"], "ACTIVE")
    assert default["serial"] == mesh.identity(server)["serial"]
    assert default["secondsLeft"] > 0 and default["notAfter"] > default["notBefore"]
    ca_root = x509.load_pem_x509_certificate(mesh.cp.citadel.root_cert_path.read_bytes())
    assert (root["name"], root["serial"]) == ("ROOTCA", f"{ca_root.serial_number:x}")
    table = mesh.cli("proxy-config", "secret", server.address).stdout
    assert "default" in table and "ROOTCA" in table and default["serial"] in table and "TIME LEFT" in table


def test_a_workload_that_leaves_takes_its_certificate_report_along(mesh: Mesh, namespace: str) -> None:
    server = mesh.server("reviews", namespace=namespace)
    assert [i["name"] for i in mesh.identities()] == ["reviews"]

    mesh.stop_workloads()

    assert mesh.identities() == []
    assert server.proc.returncode == 128 + 15  # the app's SIGTERM, passed on
