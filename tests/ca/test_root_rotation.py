"""Root rotation: the new root is trusted beside the old one before any leaf moves to it."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from malla.ca import material as files
from malla.ca.authority import CAError, CertificateAuthority, IssuedCertificate
from malla.ca.spiffe import Identity
from tests.ca.conftest import Clock, write_plugin
from tests.ca.csr import make_csr
from tests.ca.spiffe_rules import assert_svid

REVIEWS = Identity("cluster.local", "default", "reviews")


def verifies(issued: IssuedCertificate, bundle, clock: Clock) -> bool:
    verifier = PolicyBuilder().store(Store(list(bundle))).time(clock.now).build_client_verifier()
    try:
        verifier.verify(issued.certificate, list(issued.intermediates))
    except VerificationError:
        return False
    return True


def test_rotation_phases_keep_every_leaf_verifiable(ca: CertificateAuthority, ca_dir: Path,
                                                    clock: Clock):
    old_root = ca.material.ca_cert
    old_leaf = ca.sign_csr(make_csr(), identity=REVIEWS)
    assert ca.rotation().phase == "steady"

    new_root = ca.begin_root_rotation()
    assert ca.rotation().phase == "staged"
    assert ca.trust_bundle == (old_root, new_root)
    assert files.read_certs(ca_dir / "root-cert.pem") == [old_root, new_root]
    staged_leaf = ca.sign_csr(make_csr(), identity=REVIEWS)
    assert staged_leaf.certificate.issuer == old_root.subject  # the old root still signs
    assert staged_leaf.trust_bundle == (old_root, new_root)  # agents learn the new root now

    ca.activate_next_root()
    assert ca.rotation().phase == "overlap"
    new_leaf = ca.sign_csr(make_csr(), identity=REVIEWS)
    assert_svid(new_leaf.certificate, spiffe_id=REVIEWS.uri)
    assert new_leaf.certificate.issuer == new_root.subject
    both = new_leaf.trust_bundle
    assert both == (old_root, new_root)
    # Peers holding the two-root bundle accept old and new leaves alike.
    assert verifies(old_leaf, both, clock) and verifies(new_leaf, both, clock)
    # A peer that never got the bundle would refuse the new leaf: hence the staged phase.
    assert not verifies(new_leaf, (old_root,), clock)

    dropped = ca.retire_old_roots()
    assert dropped == (old_root,)
    assert ca.rotation().phase == "steady"
    assert ca.trust_bundle == (new_root,)
    assert not verifies(old_leaf, ca.trust_bundle, clock)
    assert verifies(ca.sign_csr(make_csr(), identity=REVIEWS), ca.trust_bundle, clock)


def test_rotation_survives_a_restart(ca: CertificateAuthority, ca_dir: Path, clock: Clock):
    new_root = ca.begin_root_rotation()
    reopened = CertificateAuthority.open(ca_dir, clock=clock)
    assert reopened.rotation().phase == "staged"
    assert reopened.activate_next_root() == new_root
    again = CertificateAuthority.open(ca_dir, clock=clock)
    assert again.material.ca_cert == new_root
    assert len(again.trust_bundle) == 2


def test_rotation_steps_out_of_order_say_what_to_do(ca: CertificateAuthority):
    with pytest.raises(CAError, match="no new root is staged; call begin_root_rotation"):
        ca.activate_next_root()
    ca.begin_root_rotation()
    with pytest.raises(CAError, match="already staged; activate it"):
        ca.begin_root_rotation()
    with pytest.raises(CAError, match="activate_next_root first"):
        ca.retire_old_roots()


def test_plugin_material_rotates_by_replacing_files(ca_dir: Path, clock: Clock):
    write_plugin(ca_dir, now=clock.now)
    ca = CertificateAuthority.open(ca_dir, clock=clock)
    with pytest.raises(CAError, match="plug-in CA material; rotate it by replacing the files"):
        ca.begin_root_rotation()
    # The operator adds a second root to the bundle and reloads: both are served.
    _, extra = files.make_root(trust_domain="cluster.local", now=clock.now)
    files.write_file(ca_dir / "root-cert.pem", files.pem_bytes([*ca.trust_bundle, extra]))
    ca.reload()
    assert ca.sign_csr(make_csr(), identity=REVIEWS).trust_bundle[-1] == extra
