"""Who may get which certificate, through the CA that ``malla up`` serves (ports from controlplane.json).

A join token covers one namespace and service account; a certificate
renews only itself; forged, foreign and expired tokens are refused; and
``malla run`` says so at once, leaving nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from malla.agent.identity import build_csr
from malla.ca import material as files
from malla.ca.service import CertificateRequestError, request_certificate
from malla.ca.tokens import SECRET_FILE, JoinTokens
from tests.ca.csr import make_csr, uri
from tests.controlplane.harness import processes_mentioning
from tests.mtls.harness import Mesh, clean_env

pytestmark = pytest.mark.envoy

SPIFFE = "spiffe://cluster.local/ns/{ns}/sa/{sa}"


def token(mesh: Mesh, namespace: str, service_account: str, ttl: str = "10m") -> dict[str, Any]:
    return mesh.cli_json("token", "create", "-n", namespace, "--service-account", service_account, "--ttl", ttl)


def ask(address: str, csr: bytes, *, bundle: bytes, **credentials: Any) -> list[str]:
    return asyncio.run(request_certificate(address, csr, ca_bundle=bundle, **credentials))


def refusal(address: str, csr: bytes, *, bundle: bytes, **credentials: Any) -> CertificateRequestError:
    with pytest.raises(CertificateRequestError) as caught:
        ask(address, csr, bundle=bundle, **credentials)
    return caught.value


def leaf(chain: list[str]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(chain[0].encode())


def test_a_token_gets_its_own_identity_and_no_other(mesh: Mesh, namespace: str) -> None:
    issued = token(mesh, namespace, "reviews")
    join, bundle = issued["caJoinAddress"], issued["rootCert"].encode()
    assert join == mesh.state.ca_join_address and issued["expiresAt"] > time.time()

    chain = ask(join, build_csr(ec.generate_private_key(ec.SECP256R1()), SPIFFE.format(ns=namespace, sa="reviews")),
                bundle=bundle, token=issued["token"])
    names = leaf(chain).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [SPIFFE.format(ns=namespace, sa="reviews")]
    leaf(chain).verify_directly_issued_by(x509.load_pem_x509_certificate(bundle))

    other = make_csr(sans=[uri(SPIFFE.format(ns=namespace, sa="ratings"))])
    denied = refusal(join, other, bundle=bundle, token=issued["token"])
    assert denied.code is grpc.StatusCode.PERMISSION_DENIED and "ratings" in str(denied)
    asked = refusal(join, make_csr(), bundle=bundle, token=issued["token"], service_account="ratings")
    assert asked.code is grpc.StatusCode.UNAUTHENTICATED and "not 'ratings'" in str(asked)
    elsewhere = refusal(join, make_csr(), bundle=bundle, token=issued["token"], namespace="kube-system")
    assert elsewhere.code is grpc.StatusCode.UNAUTHENTICATED and "kube-system" in str(elsewhere)


def test_a_certificate_renews_itself_only(mesh: Mesh, namespace: str) -> None:
    issued = token(mesh, namespace, "reviews")
    bundle = issued["rootCert"].encode()
    key = ec.generate_private_key(ec.SECP256R1())
    chain = ask(issued["caJoinAddress"], build_csr(key, SPIFFE.format(ns=namespace, sa="reviews")), bundle=bundle,
                token=issued["token"])
    mine = {"cert_chain": "".join(chain[:-1]).encode(), "key": files.key_pem(key)}

    renewed = ask(mesh.state.ca_address, make_csr(), bundle=bundle, **mine)
    assert leaf(renewed).serial_number != leaf(chain).serial_number

    for credentials in ({"service_account": "ratings"}, {"namespace": "default"}):
        denied = refusal(mesh.state.ca_address, make_csr(), bundle=bundle, **mine, **credentials)
        assert denied.code is grpc.StatusCode.PERMISSION_DENIED, denied
    other = make_csr(sans=[uri(SPIFFE.format(ns=namespace, sa="ratings"))])
    assert refusal(mesh.state.ca_address, other, bundle=bundle, **mine).code is grpc.StatusCode.PERMISSION_DENIED
    # The renewal port takes no tokens: a caller without a certificate does not get through the handshake.
    assert refusal(mesh.state.ca_address, make_csr(), bundle=bundle, token=issued["token"]).code in (
        grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


def test_forged_foreign_and_expired_tokens_are_refused(mesh: Mesh, namespace: str) -> None:
    issued = token(mesh, namespace, "reviews")
    join, bundle = mesh.state.ca_join_address, issued["rootCert"].encode()
    body, mac = issued["token"].rsplit(".", 1)
    forged = f"{body}.{('A' if mac[0] != 'A' else 'B')}{mac[1:]}"
    foreign = JoinTokens(os.urandom(32)).create_token(namespace, "reviews", ttl=600)
    secret = (mesh.home / "ca" / SECRET_FILE).read_bytes()
    expired = JoinTokens(secret, clock=lambda: time.time() - 3600).create_token(namespace, "reviews", ttl=60)

    for bad, why in ((forged, "forged"), (foreign, "forged"), (expired, "expired"), ("not-a-token", "not a malla")):
        refused = refusal(join, make_csr(), bundle=bundle, token=bad)
        assert refused.code is grpc.StatusCode.UNAUTHENTICATED and why in str(refused), refused


def test_malla_run_with_a_refused_token_fails_at_once_and_leaves_nothing(mesh: Mesh, namespace: str) -> None:
    issued = token(mesh, namespace, "reviews")
    body, mac = issued["token"].rsplit(".", 1)
    for bad, why in ((f"{body}.{mac[::-1]}", "forged"), (issued["token"], "not 'details'")):
        done = mesh.cli("run", "--name", "details", "-n", namespace, "--join-token", bad, "--", "true")
        assert done.returncode == 1, done.stderr
        assert "the CA refused a certificate" in done.stderr and why in done.stderr, done.stderr
    assert mesh.identities() == []
    assert not httpx.get(mesh.state.api_url + "/api/v1/workloads", trust_env=False).json()["items"]
    assert {pid: cmd for pid, cmd in processes_mentioning(str(mesh.home / "workloads")).items() if "envoy" in cmd} == {}


def test_an_agent_without_the_homes_secret_joins_with_a_token_from_token_create(
        mesh: Mesh, namespace: str, tmp_path: Path) -> None:
    # "Another host": a home of its own holding only the control plane's addresses, no CA secret.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    state = json.loads((mesh.home / "controlplane.json").read_text()) | {"home": str(elsewhere)}
    (elsewhere / "controlplane.json").write_text(json.dumps(state))
    env = clean_env(MALLA_HOME=str(elsewhere))

    without = mesh.cli("run", "--name", "reviews", "-n", namespace, "--", "true", env=env)
    assert without.returncode == 1
    assert "no join token" in without.stderr and "malla token create" in without.stderr, without.stderr

    issued = token(mesh, namespace, "reviews")
    done = mesh.cli("run", "--name", "reviews", "-n", namespace, "--join-token", issued["token"], "--",
                    "python3", "-c", "print('joined')", env=env)
    assert done.returncode == 0, done.stderr
    assert "joined" in done.stdout
    assert f"certificate for {SPIFFE.format(ns=namespace, sa='reviews')}" in done.stderr


def test_token_create_names_what_is_wrong(mesh: Mesh) -> None:
    for args, words in ((("-n", "default", "--ttl", "0s"), "--ttl '0s'"),
                        (("-n", "default", "--ttl", "soon"), "--ttl 'soon'"),
                        (("-n", "Not/A/Namespace"), "namespace 'Not/A/Namespace'")):
        done = mesh.cli("token", "create", *args)
        assert done.returncode == 2 and words in done.stderr, done.stderr
    response = httpx.post(mesh.state.api_url + "/api/v1/tokens", json={"serviceAccount": "x"}, trust_env=False)
    assert response.status_code == 400 and "namespace: required" in response.json()["error"]
