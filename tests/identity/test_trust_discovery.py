"""What an agent on another host learns from its token, and whom it trusts (no network, no Envoy).

A token carries the roots' hashes (kubeadm's CA cert hash), the join port and
the trust domain; a bundle is trusted only for the roots those hashes name;
``--ca-root`` files are checked the same way; and the Envoy bootstrap of a
remote agent is one Envoy's API accepts.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from malla.agent.remote import remote_state
from malla.agent.run import AgentError
from malla.agent.sds import SDS_CLUSTER, sds_cluster
from malla.ca import material as files
from malla.ca.discovery import TrustBundleError, check_hashes, pinned_roots, root_hash, split_address
from malla.ca.service import CONTROL_PLANE_SAN
from malla.ca.tokens import JoinTokens, TokenError, read_hints
from malla.envoy.bootstrap import TcpAddress, bootstrap_proto, build_bootstrap
from malla.envoy.xds_tls import xds_mtls_transport_socket

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)


def pem(cert: object) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)  # type: ignore[attr-defined]


def test_the_hash_is_kubeadms_sha256_of_the_public_key() -> None:
    _, root = files.make_root(trust_domain="cluster.local", now=NOW)
    spki = root.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert root_hash(root) == "sha256:" + hashlib.sha256(spki).hexdigest()
    assert check_hashes([root_hash(root).upper().replace("SHA256:", "sha256:")]) == (root_hash(root),)
    for bad in ("sha1:" + "0" * 40, "sha256:" + "0" * 63, "sha256:" + "g" * 64, "0" * 64):
        with pytest.raises(ValueError, match="sha256:' and 64 hex digits"):
            check_hashes([bad])


def test_only_the_roots_the_token_names_are_kept() -> None:
    _, ours = files.make_root(trust_domain="cluster.local", now=NOW)
    _, theirs = files.make_root(trust_domain="cluster.local", now=NOW)
    padded = pem(theirs) + pem(ours)
    assert pinned_roots(padded, [root_hash(ours)], source="the bundle", advice="-") == pem(ours)
    with pytest.raises(TrustBundleError, match="none of the roots of the bundle has the hash .*: check it"):
        pinned_roots(pem(theirs), [root_hash(ours)], source="the bundle", advice="check it")


def test_a_token_carries_its_hints_and_the_ca_still_checks_its_mac() -> None:
    tokens = JoinTokens(b"s" * 32)
    token = tokens.create_token("shop", "cart", ttl=600, ca_hashes=["sha256:" + "ab" * 32], join_port=15013,
                                trust_domain="example.org")
    hints = read_hints(token)
    assert (hints.namespace, hints.service_account, hints.join_port, hints.trust_domain) == (
        "shop", "cart", 15013, "example.org")
    assert hints.ca_hashes == ("sha256:" + "ab" * 32,)
    assert tokens.verify(token).namespace == "shop"
    plain = read_hints(tokens.create_token("shop", ttl=60))
    assert plain.ca_hashes == () and plain.join_port is None and plain.service_account == "*"
    for bad in ("malla1.%%%.x", "nonsense", token.split(".")[0] + "..mac"):
        with pytest.raises(TokenError, match="malla token create"):
            read_hints(bad)


def test_addresses_name_host_and_port() -> None:
    assert split_address("cp.example:15012") == ("cp.example", 15012)
    assert split_address("10.0.0.5", default_port=15012) == ("10.0.0.5", 15012)
    assert split_address("[fd00::1]:9", default_port=15012) == ("fd00::1", 9)
    assert split_address("fd00::1", default_port=15012) == ("fd00::1", 15012)
    for bad in (":15012", "host:http", "host:70000"):
        with pytest.raises(ValueError, match="HOST|port"):
            split_address(bad, default_port=15012)


def test_a_ca_root_file_must_hold_the_root_the_token_names(tmp_path: Path) -> None:
    _, ours = files.make_root(trust_domain="cluster.local", now=NOW)
    _, theirs = files.make_root(trust_domain="cluster.local", now=NOW)
    token = JoinTokens(b"s" * 32).create_token("shop", "cart", ttl=600, ca_hashes=[root_hash(ours)], join_port=15013)
    given = tmp_path / "root-cert.pem"
    given.write_bytes(pem(theirs))
    with pytest.raises(AgentError, match="none of the roots of --ca-root .*: give the root-cert.pem"):
        remote_state(host="cp.example", port=15012, token=token, ca_root=given, home=tmp_path / "home",
                     api_url="http://127.0.0.1:1/x")

    given.write_bytes(pem(ours))
    state = remote_state(host="cp.example", port=15012, token=token, ca_root=given, home=tmp_path / "home",
                         api_url="http://127.0.0.1:1/x")
    assert Path(state.ca_root_cert).read_bytes() == pem(ours)
    assert (state.xds_address, state.ca_address, state.ca_join_address) == (
        "cp.example:15012", "cp.example:15012", "cp.example:15013")
    assert state.ca_server_name == CONTROL_PLANE_SAN and state.api_url == "http://127.0.0.1:1/x"
    assert not (tmp_path / "home" / "controlplane.json").exists()


def test_an_old_token_without_hashes_needs_a_ca_root(tmp_path: Path) -> None:
    token = JoinTokens(b"s" * 32).create_token("shop", "cart", ttl=600)
    with pytest.raises(AgentError, match="--ca-root FILE"):
        remote_state(host="cp.example", port=15012, token=token, ca_root=None, home=tmp_path,
                     api_url="http://127.0.0.1:1/x")


def test_the_remote_bootstrap_is_valid_envoy_config() -> None:
    bootstrap = build_bootstrap(
        node_id="sidecar~10.0.0.7~reviews-abcdef.shop~shop.svc.cluster.local", node_cluster="reviews.shop",
        xds_address=TcpAddress("cp.example", 15012),
        xds_transport_socket=xds_mtls_transport_socket(sds_cluster=SDS_CLUSTER, server_name=CONTROL_PLANE_SAN))
    bootstrap["static_resources"]["clusters"].append(sds_cluster("/tmp/sds.sock"))
    proto = bootstrap_proto(bootstrap)
    xds = proto.static_resources.clusters[0]
    assert xds.transport_socket.name == "envoy.transport_sockets.tls"
    with pytest.raises(ValueError, match="server_name"):
        xds_mtls_transport_socket(sds_cluster=SDS_CLUSTER, server_name="")
