"""Plug-in CA files, watched while the CA runs (istiod's reload of its ``cacerts``).

In: the CA directory of a running `CertificateAuthority` (``ca-cert.pem``,
``ca-key.pem``, ``cert-chain.pem``, ``root-cert.pem``). Out: the authority
switched to the new material once a replaced set is complete and
consistent, or a `MaterialProblem` naming the file and what is wrong while
the old material keeps signing.

Theory of operation: every few seconds the files' contents are hashed
(content, not mtime: a Kubernetes Secret mount swaps a symlink and keeps
old mtimes). A changed set is loaded only after it stayed the same for one
whole interval, so a set still being copied file by file is not judged
half-way. The load is the same check `malla up` runs at start
(`material.load`): key matches certificate, certificate is a CA, the chain
reaches a root in ``root-cert.pem``, valid now. It runs under the
authority's lock, so it never sees a root-rotation step half-written.

When the new material signs under another root and ``root-cert.pem`` no
longer lists the old one, the old roots stay in the trust bundle (written
back to ``root-cert.pem``, so a restart keeps them): leaves the old root
signed still verify, as in the overlap phase of ``malla ca rotate-root``,
until ``malla ca rotate-root retire`` drops them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from malla.ca import material as files
from malla.ca.authority import CertificateAuthority
from malla.ca.material import CAMaterial, CAMaterialError

_log = logging.getLogger(__name__)

WATCHED = (files.CA_CERT_FILE, files.CA_KEY_FILE, files.CERT_CHAIN_FILE, files.ROOT_CERT_FILE)
POLL_INTERVAL = 2.0

Fingerprint = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class MaterialProblem:
    """Why the files on disk do not sign; the CA keeps its previous material meanwhile."""

    file: str
    message: str
    since: float

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "message": self.message, "since": self.since}


class PluginWatch:
    """Polls a CA directory and installs replaced material that passes every check."""

    def __init__(self, authority: CertificateAuthority, *, interval: float = POLL_INTERVAL,
                 clock: Callable[[], float] = time.time) -> None:
        if authority.directory is None:
            raise ValueError("authority: a CA opened from a directory is needed to watch its files")
        self.authority = authority
        self.directory: Path = authority.directory
        self.interval = interval
        self._clock = clock
        self._handled = self._fingerprint()  # what the authority was opened from
        self._pending: Fingerprint | None = None
        self._problem: MaterialProblem | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def problem(self) -> MaterialProblem | None:
        return self._problem

    def poll(self) -> str:
        """One look at the files: `unchanged`, `settling`, `same`, `installed` or `refused`."""
        seen = self._fingerprint()
        if seen == self._handled:
            self._pending = None
            return "unchanged"
        if seen != self._pending:
            self._pending = seen  # judge it only once it stayed put for one interval
            return "settling"
        self._handled, self._pending = seen, None
        before = self.authority.material
        try:
            after = self.authority.swap_material(self._next_material)
        except CAMaterialError as exc:
            self._refuse(exc, signing=before)
            return "refused"
        self._problem = None
        if after is before:
            return "same"
        # Carried roots were written back to root-cert.pem: that write is ours, not news.
        self._handled = self._fingerprint()
        _log.info("CA material in %s replaced: now signing with %s (chains to %s), trusting %d root(s)",
                  self.directory, after.ca_cert.subject.rfc4514_string(),
                  after.anchor.subject.rfc4514_string(), len(after.roots))
        return "installed"

    def _next_material(self, current: CAMaterial) -> CAMaterial:
        loaded = files.load(self.directory, now=self.authority.clock())
        if (loaded.ca_cert, loaded.intermediates, loaded.roots) == (
                current.ca_cert, current.intermediates, current.roots):
            return current
        if loaded.anchor == current.anchor:
            return loaded  # roots added or dropped by hand are the user's call
        carried = tuple(root for root in current.roots if root not in loaded.roots)
        if current.anchor not in loaded.roots:
            _log.warning("%s: the new CA material chains to a root workloads did not trust before; "
                         "peers accept its certificates only after their next renewal. To avoid that, "
                         "first add the new root to root-cert.pem alone, then replace the signing files",
                         self.directory)
        if not carried:
            return loaded
        merged = replace(loaded, roots=(*carried, *loaded.roots))
        try:
            files.write_file(self.directory / files.ROOT_CERT_FILE, files.pem_bytes(merged.roots))
        except OSError as exc:
            _log.warning("%s: cannot keep the old root(s) in it (%s); they stay trusted until a restart",
                         self.directory / files.ROOT_CERT_FILE, exc.strerror)
        return merged

    def _refuse(self, exc: CAMaterialError, *, signing: CAMaterial) -> None:
        message = str(exc)
        path, _, _ = message.partition(": ")
        name = Path(path).name if path.startswith(str(self.directory)) else files.CA_CERT_FILE
        if self._problem is None or self._problem.message != message:
            self._problem = MaterialProblem(file=name, message=message, since=self._clock())
        _log.error("refused the replaced CA material: %s; still signing with %s",
                   message, signing.ca_cert.subject.rfc4514_string())

    def _fingerprint(self) -> Fingerprint:
        seen = []
        for name in WATCHED:
            try:
                digest = hashlib.sha256((self.directory / name).read_bytes()).hexdigest()
            except FileNotFoundError:
                digest = "missing"
            except OSError as exc:
                digest = f"unreadable: {exc.strerror}"
            seen.append((name, digest))
        return tuple(seen)

    # -- the thread ------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("this PluginWatch was already started")
        self._thread = threading.Thread(target=self._run, name="malla-ca-watch", daemon=True)
        self._thread.start()

    def stop(self, *, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # a watcher that dies silently would freeze the CA's material
                _log.exception("watching the CA files in %s failed; trying again", self.directory)
