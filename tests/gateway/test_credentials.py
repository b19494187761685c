"""Gateway credentials from files: which files serve which secret, what is checked, renewal."""

from __future__ import annotations

import pytest

from malla.agent.gateway_credentials import CredentialError, CredentialFiles, read_secret, secret_files

from tests.gateway.certs import self_signed, write_pair
from tests.gateway.conftest import eventually


def test_a_credential_name_reads_cert_managers_files(tmp_path):
    write_pair(tmp_path / "web-cert", *self_signed("web"))
    files = secret_files("kubernetes://web-cert", root=tmp_path)
    assert (files.certificate, files.private_key) == (tmp_path / "web-cert/tls.crt", tmp_path / "web-cert/tls.key")
    secret = read_secret("kubernetes://web-cert", files)
    assert secret.name == "kubernetes://web-cert"
    assert secret.tls_certificate.certificate_chain.inline_bytes == (tmp_path / "web-cert/tls.crt").read_bytes()


def test_istios_generic_secret_keys_are_accepted(tmp_path):
    write_pair(tmp_path / "generic", *self_signed("g"), cert_name="cert", key_name="key")
    files = secret_files("kubernetes://generic", root=tmp_path)
    assert files.certificate == tmp_path / "generic/cert"


def test_the_ca_half_comes_from_ca_crt_or_a_separate_cacert_credential(tmp_path):
    ca, _ = self_signed("root")
    (tmp_path / "web-cert").mkdir()
    (tmp_path / "web-cert/ca.crt").write_bytes(ca)
    assert secret_files("kubernetes://web-cert-cacert", root=tmp_path).ca == tmp_path / "web-cert/ca.crt"
    (tmp_path / "other-cacert").mkdir()
    (tmp_path / "other-cacert/ca.crt").write_bytes(ca)
    files = secret_files("kubernetes://other-cacert", root=tmp_path)
    secret = read_secret("kubernetes://other-cacert", files)
    assert secret.validation_context.trusted_ca.inline_bytes == ca


def test_file_mounted_names_read_the_named_paths(tmp_path):
    write_pair(tmp_path, *self_signed("f"))
    files = secret_files(f"file-cert:{tmp_path}/tls.crt~{tmp_path}/tls.key", root=tmp_path / "unused")
    assert files.private_key == tmp_path / "tls.key"
    assert secret_files(f"file-root:{tmp_path}/tls.crt", root=tmp_path).ca == tmp_path / "tls.crt"


def test_a_missing_credential_says_where_to_put_it(tmp_path):
    with pytest.raises(CredentialError, match=r"no certificate in .*/nope; put tls.crt and tls.key there"):
        secret_files("kubernetes://nope", root=tmp_path)
    with pytest.raises(CredentialError, match="mesh's own secret"):
        secret_files("default", root=tmp_path)


def test_a_key_that_is_not_the_certificates_is_refused(tmp_path):
    cert, _ = self_signed("a")
    _, other_key = self_signed("b")
    write_pair(tmp_path / "c", cert, other_key)
    with pytest.raises(CredentialError, match="tls.key is not the key of the certificate in .*tls.crt"):
        read_secret("kubernetes://c", secret_files("kubernetes://c", root=tmp_path))
    (tmp_path / "c/tls.crt").write_text("not a certificate")
    with pytest.raises(CredentialError, match="tls.crt: not PEM certificates"):
        read_secret("kubernetes://c", secret_files("kubernetes://c", root=tmp_path))


def test_a_half_written_renewal_keeps_the_last_good_certificate(tmp_path):
    published: list[dict] = []
    reports: list[str] = []
    files = CredentialFiles(tmp_path, publish=lambda s: published.append(dict(s)), report=reports.append)
    first = self_signed("one")
    write_pair(tmp_path / "web", *first)
    files.want(frozenset({"kubernetes://web"}))
    assert published[-1]["kubernetes://web"].tls_certificate.certificate_chain.inline_bytes == first[0]
    second = self_signed("two")
    (tmp_path / "web/tls.crt").write_bytes(second[0])  # the key is not written yet
    files.reload()
    assert len(published) == 1
    assert "cannot serve kubernetes://web yet" in reports[-1]
    (tmp_path / "web/tls.key").write_bytes(second[1])
    files.reload()
    assert published[-1]["kubernetes://web"].tls_certificate.certificate_chain.inline_bytes == second[0]
    assert reports[-1].startswith("renewed kubernetes://web: certificate CN=two")


def test_a_credential_that_appears_later_is_served_when_it_does(tmp_path):
    published: list[dict] = []
    files = CredentialFiles(tmp_path, publish=lambda s: published.append(dict(s)))
    files.want(frozenset({"kubernetes://late"}))
    assert published == []
    write_pair(tmp_path / "late", *self_signed("late"))
    files.reload()
    assert list(published[-1]) == ["kubernetes://late"]


def test_the_watch_serves_files_written_after_envoy_asked(tmp_path):
    published: list[dict] = []
    files = CredentialFiles(tmp_path, publish=lambda s: published.append(dict(s)), debounce_ms=50)
    files.start()
    try:
        files.want(frozenset({"kubernetes://soon"}))
        write_pair(tmp_path / "soon", *self_signed("soon"))
        eventually(lambda: published and "kubernetes://soon" in published[-1], what="the new credential")
    finally:
        files.stop()
