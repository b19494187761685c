"""Gateway credentials from files, for the gateway agent's SDS server.

Istio's ``credentialName`` names a Kubernetes Secret; on one machine it
names a directory of the control plane's home, holding what cert-manager
writes (``<home>/credentials/NAME/{tls.crt,tls.key,ca.crt}``; Istio's
generic ``cert``/``key``/``cacert`` keys are accepted too). Secret names in,
``Secret`` protos out:

- ``kubernetes://NAME``: ``NAME/tls.crt`` + ``tls.key``; a directory with
  only a CA (``caCertCredentialName``) gives a validation context;
- ``kubernetes://NAME-cacert``: ``NAME/ca.crt``, else ``NAME-cacert/ca.crt``
  (Istio's separate CA Secret);
- ``file-cert:CERT~KEY`` and ``file-root:CA``: Istio's file-mounted form.

Files are read whole and checked (the PEM parses, the key belongs to the
certificate) before they are served, so a certificate half-written during
renewal is never served: the last good one stays until the pair is whole.
A thread watches the directories (watchfiles: in-place writes, renames and
Kubernetes-style symlink swaps alike) and republishes what changed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import watchfiles
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from malla.pilot import names
from malla.pilot.gateways import FILE_CERT_PREFIX, FILE_ROOT_PREFIX, parse_file_secret_name

log = logging.getLogger(__name__)

CERT_KEYS = ("tls.crt", "cert")
KEY_KEYS = ("tls.key", "key")
CA_KEYS = ("ca.crt", "cacert")

Publish = Callable[[Mapping[str, secret_pb2.Secret]], None]
Report = Callable[[str], None]


class CredentialError(ValueError):
    """A credential's files are missing or do not make a usable secret; the message says which."""


@dataclass(frozen=True)
class SecretFiles:
    """The files one secret is read from: a certificate and key, or a CA bundle."""

    certificate: Path | None = None
    private_key: Path | None = None
    ca: Path | None = None

    def dirs(self) -> set[Path]:
        return {p.parent for p in (self.certificate, self.private_key, self.ca) if p is not None}


def credentials_dir(home: Path) -> Path:
    return home / "credentials"


def secret_files(name: str, *, root: Path) -> SecretFiles:
    """Which files serve secret ``name``; raises CredentialError naming what is missing."""
    if name.startswith((FILE_CERT_PREFIX, FILE_ROOT_PREFIX)):
        try:
            parsed = parse_file_secret_name(name)
        except ValueError as exc:
            raise CredentialError(str(exc)) from None
        if parsed.ca_certificates:
            return SecretFiles(ca=Path(parsed.ca_certificates))
        return SecretFiles(certificate=Path(parsed.certificate), private_key=Path(parsed.private_key))
    try:
        credential, is_ca = names.parse_secret_name(name)
    except ValueError as exc:
        raise CredentialError(str(exc)) from None
    if credential == name:
        raise CredentialError(f"{name!r} is the mesh's own secret; the gateway agent serves only gateway credentials")
    if is_ca:
        for folder in (root / credential, root / (credential + names.CA_CERT_SUFFIX)):
            ca = _first(folder, CA_KEYS)
            if ca is not None:
                return SecretFiles(ca=ca)
        raise CredentialError(f"credential {credential}: no {' or '.join(CA_KEYS)} in {root / credential}")
    folder = root / credential
    cert, key = _first(folder, CERT_KEYS), _first(folder, KEY_KEYS)
    if cert is not None or key is not None:
        return SecretFiles(certificate=cert or folder / CERT_KEYS[0], private_key=key or folder / KEY_KEYS[0])
    ca = _first(folder, CA_KEYS)
    if ca is not None:
        return SecretFiles(ca=ca)
    raise CredentialError(
        f"credential {credential}: no certificate in {folder}; put tls.crt and tls.key there (what cert-manager writes)"
    )


def _first(folder: Path, keys: tuple[str, ...]) -> Path | None:
    return next((folder / k for k in keys if (folder / k).is_file()), None)


def read_secret(name: str, files: SecretFiles) -> secret_pb2.Secret:
    """The Secret Envoy gets, with the files' bytes inline; raises CredentialError when they are unusable."""
    if files.ca is not None:
        ca = _read(files.ca)
        _certificates(ca, files.ca)
        trusted = base_pb2.DataSource(inline_bytes=ca)
        validation = common_pb2.CertificateValidationContext(trusted_ca=trusted)
        return secret_pb2.Secret(name=name, validation_context=validation)
    assert files.certificate is not None and files.private_key is not None
    chain, key = _read(files.certificate), _read(files.private_key)
    leaf = _certificates(chain, files.certificate)[0]
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialError(f"{files.private_key}: not an unencrypted PEM private key ({exc})") from None
    if _spki(private.public_key()) != _spki(leaf.public_key()):
        raise CredentialError(f"{files.private_key} is not the key of the certificate in {files.certificate}")
    certificate = common_pb2.TlsCertificate(
        certificate_chain=base_pb2.DataSource(inline_bytes=chain), private_key=base_pb2.DataSource(inline_bytes=key)
    )
    return secret_pb2.Secret(name=name, tls_certificate=certificate)


def describe(secret: secret_pb2.Secret) -> str:
    """One line for people: whose certificate, valid until when."""
    if secret.HasField("validation_context"):
        count = len(x509.load_pem_x509_certificates(secret.validation_context.trusted_ca.inline_bytes))
        return f"CA bundle of {count} certificate{'s' if count != 1 else ''}"
    leaf = x509.load_pem_x509_certificates(secret.tls_certificate.certificate_chain.inline_bytes)[0]
    return f"certificate {leaf.subject.rfc4514_string()} valid until {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CredentialError(f"cannot read {path}: {exc.strerror}") from None


def _certificates(pem: bytes, path: Path) -> list[x509.Certificate]:
    try:
        found = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise CredentialError(f"{path}: not PEM certificates ({exc})") from None
    return found


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class CredentialFiles:
    """The secrets Envoy asked for, loaded from files, republished when the files change."""

    def __init__(
        self, root: Path, *, publish: Publish, report: Report = lambda _m: None, debounce_ms: int = 200
    ) -> None:
        self.root = root
        self._publish = publish
        self._report = report
        self._debounce_ms = debounce_ms
        self._lock = threading.Lock()
        self._reloading = threading.Lock()  # the SDS thread and the watcher both reload
        self._wanted: set[str] = set()
        self._served: dict[str, secret_pb2.Secret] = {}
        self._problems: dict[str, str] = {}
        self._stop = threading.Event()
        self._rewatch = threading.Event()
        self._thread: threading.Thread | None = None

    def want(self, requested: frozenset[str]) -> None:
        """Serve these names from now on (called on each SDS request)."""
        with self._lock:
            new = requested - self._wanted
            self._wanted |= new
        if new:
            self.reload()
            self._rewatch.set()

    def reload(self) -> None:
        """Read every wanted secret again; publish when anything changed."""
        with self._reloading:
            self._reload()

    def _reload(self) -> None:
        with self._lock:
            wanted = sorted(self._wanted)
            served = dict(self._served)
        for name in wanted:
            try:
                secret = read_secret(name, secret_files(name, root=self.root))
            except CredentialError as exc:
                self._problem(name, str(exc))
                continue  # the last good secret, if any, stays
            self._problems.pop(name, None)
            if served.get(name) != secret:
                verb = "serving" if name not in served else "renewed"
                served[name] = secret
                self._report(f"{verb} {name}: {describe(secret)}")
        with self._lock:
            changed = served != self._served
            self._served = served
        if changed:
            self._publish(served)

    def _problem(self, name: str, message: str) -> None:
        if self._problems.get(name) != message:
            self._problems[name] = message
            self._report(f"cannot serve {name} yet: {message}")

    # -- watching ----------------------------------------------------------

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._watch, name="malla-credentials", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _dirs(self) -> list[str]:
        with self._lock:
            wanted = sorted(self._wanted)
        found = {self.root}
        for name in wanted:
            try:
                found |= secret_files(name, root=self.root).dirs()
            except CredentialError:
                pass  # a kubernetes:// credential not there yet: the root covers it
        # The root is watched recursively; a directory inside it needs no watch of its own.
        return sorted(str(d) for d in found if d.is_dir() and (d == self.root or self.root not in d.parents))

    def _watch(self) -> None:
        while not self._stop.is_set():
            self._rewatch.clear()
            try:
                self._watch_once(self._dirs())
            except Exception as exc:  # e.g. a watched directory was removed: watch again
                log.warning("watching the credential files failed (%s); watching again", exc)
                self._stop.wait(1.0)
            self.reload()  # anything that changed while the watch was being replaced

    def _watch_once(self, watched: list[str]) -> None:
        either = _Either(self._stop, self._rewatch)
        for changes in watchfiles.watch(
            *watched, watch_filter=None, debounce=self._debounce_ms, stop_event=either,
            rust_timeout=2000, yield_on_timeout=True, raise_interrupt=False,
        ):
            if changes:
                self.reload()
            elif self._dirs() != watched:
                return  # a watched file's directory appeared: watch it


class _Either:
    """``is_set`` of either event: what watchfiles polls to end a watch."""

    def __init__(self, *events: threading.Event) -> None:
        self._events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self._events)
