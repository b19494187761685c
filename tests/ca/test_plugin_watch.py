"""Replaced plug-in CA files while the CA runs: installed when whole and consistent, refused otherwise.

The watcher is driven one look at a time (`poll`): a changed set is judged
only after it stayed the same for one look, so two looks install it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from malla.ca import material as files
from malla.ca.authority import CertificateAuthority
from malla.ca.plugin_watch import PluginWatch
from malla.ca.spiffe import Identity
from tests.ca.conftest import Clock, make_intermediate
from tests.ca.csr import make_csr
from tests.ca.test_root_rotation import verifies

REVIEWS = Identity("cluster.local", "default", "reviews")


class Plugin:
    """An offline root and the CA directory its intermediates are written to."""

    def __init__(self, directory: Path, clock: Clock) -> None:
        self.directory = directory
        self.clock = clock
        self.root_key, self.root = files.make_root(trust_domain="cluster.local", now=clock.now)

    def install(self, name: str, *, roots: list | None = None, root_key=None, root=None):
        key, cert = make_intermediate(root_key or self.root_key, root or self.root,
                                      now=self.clock.now, name=name)
        files.write_signing(self.directory, key=key, chain=[cert, root or self.root])
        files.write_file(self.directory / files.ROOT_CERT_FILE, files.pem_bytes(roots or [self.root]))
        return cert


@pytest.fixture
def plugin(ca_dir: Path, clock: Clock) -> Plugin:
    return Plugin(ca_dir, clock)


@pytest.fixture
def opened(plugin: Plugin, ca_dir: Path, clock: Clock) -> tuple[CertificateAuthority, PluginWatch]:
    plugin.install("intermediate A")
    authority = CertificateAuthority.open(ca_dir, clock=clock)
    return authority, PluginWatch(authority, clock=clock.seconds)


def settle(watch: PluginWatch) -> str:
    first = watch.poll()
    assert first == "settling"
    return watch.poll()


def test_new_intermediate_under_the_same_root_signs_after_it_settles(opened, plugin: Plugin, clock: Clock):
    authority, watch = opened
    old_leaf = authority.sign_csr(make_csr(), identity=REVIEWS)
    assert watch.poll() == "unchanged"

    new_cert = plugin.install("intermediate B")
    assert watch.poll() == "settling"
    assert authority.material.ca_cert.subject != new_cert.subject  # not judged half-way
    assert watch.poll() == "installed"

    leaf = authority.sign_csr(make_csr(), identity=REVIEWS)
    assert leaf.certificate.issuer == new_cert.subject
    assert leaf.intermediates == (new_cert,)
    assert leaf.trust_bundle == (plugin.root,)
    assert verifies(leaf, leaf.trust_bundle, clock) and verifies(old_leaf, leaf.trust_bundle, clock)
    assert watch.problem is None
    assert watch.poll() == "unchanged"


def test_a_set_still_being_copied_is_never_judged(opened, plugin: Plugin):
    authority, watch = opened
    key, cert = make_intermediate(plugin.root_key, plugin.root, now=plugin.clock.now, name="intermediate B")
    files.write_file(plugin.directory / files.CA_CERT_FILE, files.pem_bytes([cert]))
    assert watch.poll() == "settling"
    files.write_file(plugin.directory / files.CA_KEY_FILE, files.key_pem(key), private=True)
    assert watch.poll() == "settling"  # changed again since the last look: wait once more
    files.write_file(plugin.directory / files.CERT_CHAIN_FILE, files.pem_bytes([cert, plugin.root]))
    assert watch.poll() == "settling"
    assert authority.material.ca_cert.subject.rfc4514_string() == "CN=intermediate A"
    assert watch.poll() == "installed"
    assert authority.material.ca_cert == cert
    assert watch.problem is None


def test_mismatched_key_is_refused_and_the_old_signer_keeps_signing(opened, plugin: Plugin, clock: Clock,
                                                                    caplog: pytest.LogCaptureFixture):
    authority, watch = opened
    signing = authority.material.ca_cert
    caplog.set_level(logging.ERROR, logger="malla.ca.plugin_watch")
    files.write_file(plugin.directory / files.CA_KEY_FILE, files.key_pem(ec.generate_private_key(ec.SECP256R1())),
                     private=True)
    assert settle(watch) == "refused"

    problem = watch.problem
    assert problem is not None and problem.file == "ca-key.pem"
    assert "this key does not belong to" in problem.message and problem.since == clock.seconds()
    assert "ca-key.pem: this key does not belong to" in caplog.text and "still signing with" in caplog.text
    leaf = authority.sign_csr(make_csr(), identity=REVIEWS)
    assert leaf.certificate.issuer == signing.subject
    assert verifies(leaf, authority.trust_bundle, clock)
    # Looking again at the same refused files neither retries nor logs again.
    caplog.clear()
    assert watch.poll() == "unchanged" and caplog.text == ""

    new_cert = plugin.install("intermediate B")
    assert settle(watch) == "installed"
    assert watch.problem is None
    assert authority.sign_csr(make_csr(), identity=REVIEWS).certificate.issuer == new_cert.subject


@pytest.mark.parametrize(("name", "content", "says"), [
    (files.ROOT_CERT_FILE, b"-----BEGIN CERTIFICATE-----\nMIIB", "holds no PEM certificate"),
    (files.CA_KEY_FILE, b"not a key", "not an unencrypted PEM private key"),
])
def test_malformed_file_is_refused_naming_it(opened, plugin: Plugin, name: str, content: bytes, says: str):
    authority, watch = opened
    before = authority.material
    files.write_file(plugin.directory / name, content)
    assert settle(watch) == "refused"
    assert watch.problem is not None and watch.problem.file == name and says in watch.problem.message
    assert authority.material is before


def test_intermediate_from_an_untrusted_root_is_refused(opened, plugin: Plugin):
    authority, watch = opened
    other_key, other_root = files.make_root(trust_domain="cluster.local", now=plugin.clock.now)
    key, cert = make_intermediate(other_key, other_root, now=plugin.clock.now, name="stray")
    files.write_signing(plugin.directory, key=key, chain=[cert, other_root])
    assert settle(watch) == "refused"
    assert watch.problem is not None and watch.problem.file == "root-cert.pem"
    assert "no root in it issued" in watch.problem.message
    assert authority.material.ca_cert.subject.rfc4514_string() == "CN=intermediate A"


def test_new_root_alone_in_root_cert_keeps_the_old_root_trusted(opened, plugin: Plugin, ca_dir: Path,
                                                                 clock: Clock):
    authority, watch = opened
    old_leaf = authority.sign_csr(make_csr(), identity=REVIEWS)
    new_root_key, new_root = files.make_root(trust_domain="cluster.local", now=clock.now)
    new_cert = plugin.install("intermediate C", roots=[new_root], root_key=new_root_key, root=new_root)
    assert settle(watch) == "installed"

    assert authority.trust_bundle == (plugin.root, new_root)
    assert authority.rotation().phase == "overlap"
    new_leaf = authority.sign_csr(make_csr(), identity=REVIEWS)
    assert new_leaf.certificate.issuer == new_cert.subject
    assert new_leaf.trust_bundle == (plugin.root, new_root)
    assert verifies(old_leaf, new_leaf.trust_bundle, clock) and verifies(new_leaf, new_leaf.trust_bundle, clock)
    # Kept on disk, so a restart still trusts the old root; the write is not taken as news.
    assert files.read_certs(ca_dir / files.ROOT_CERT_FILE) == [plugin.root, new_root]
    assert watch.poll() == "unchanged"
    assert CertificateAuthority.open(ca_dir, clock=clock).trust_bundle == (plugin.root, new_root)

    assert authority.retire_old_roots() == (plugin.root,)
    assert settle(watch) == "same"  # the retire step's own write
    assert authority.trust_bundle == (new_root,)
    assert not verifies(old_leaf, authority.trust_bundle, clock)


def test_both_roots_in_root_cert_are_taken_as_written(opened, plugin: Plugin, clock: Clock):
    authority, watch = opened
    new_root_key, new_root = files.make_root(trust_domain="cluster.local", now=clock.now)
    plugin.install("intermediate C", roots=[new_root, plugin.root], root_key=new_root_key, root=new_root)
    assert settle(watch) == "installed"
    assert authority.trust_bundle == (new_root, plugin.root)
    assert authority.material.anchor == new_root


def test_self_signed_rotation_steps_are_not_mistaken_for_a_replacement(ca_dir: Path, clock: Clock):
    authority = CertificateAuthority.open(ca_dir, clock=clock)
    watch = PluginWatch(authority, clock=clock.seconds)
    for step in (authority.begin_root_rotation, authority.activate_next_root, authority.retire_old_roots):
        step()
        material = authority.material
        assert settle(watch) == "same"
        assert authority.material is material and watch.problem is None
