"""Citadel inside `malla up`: the CA of a home directory, served from a thread of its own.

`open_ca(home)` opens (or makes, on first use) the CA kept in `<home>/ca`
(Istio's file names, see `malla.ca.material`) and the join-token secret
beside it. `CAServerThread` runs a `CAServer` on a private event loop in a
daemon thread, so certificate signing never waits behind an xDS push storm
and the synchronous control plane can start and stop it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from malla.ca.authority import CertificateAuthority
from malla.ca.service import DEFAULT_JOIN_PORT, DEFAULT_PORT, DEFAULT_SERVING_HOSTS, CAServer
from malla.ca.spiffe import DEFAULT_TRUST_DOMAIN
from malla.ca.tokens import JoinTokens, load_or_create_secret

T = TypeVar("T")
CA_DIR = "ca"


def ca_dir(home: Path) -> Path:
    return home / CA_DIR


def open_ca(home: Path, *,
            trust_domain: str = DEFAULT_TRUST_DOMAIN) -> tuple[CertificateAuthority, JoinTokens]:
    """The home's CA (self-signed root made on first use) and its join tokens."""
    directory = ca_dir(home)
    authority = CertificateAuthority.open(directory, trust_domain=trust_domain)
    return authority, JoinTokens(load_or_create_secret(directory))


class CAServerThread:
    """A `CAServer` on its own event loop in a daemon thread."""

    def __init__(self, authority: CertificateAuthority, *, tokens: JoinTokens | None,
                 host: str = "127.0.0.1", port: int | None = DEFAULT_PORT,
                 join_port: int | None = DEFAULT_JOIN_PORT,
                 serving_hosts: Sequence[str] = DEFAULT_SERVING_HOSTS) -> None:
        self.authority = authority
        self._host = host
        self._ports = (port, join_port)
        self._server = CAServer(authority, tokens=tokens, serving_hosts=serving_hosts)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def ca(self) -> CAServer:
        """The served CA: its handler and credentials can serve on another server too."""
        return self._server

    @property
    def port(self) -> int | None:
        return self._server.port

    @property
    def join_port(self) -> int | None:
        return self._server.join_port

    def start(self, *, timeout: float = 10.0) -> tuple[int | None, int | None]:
        """Listen; returns the bound (mTLS port, join port). Raises OSError when a port is taken."""
        if self._thread is not None:
            raise RuntimeError("this CAServerThread was already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="malla-ca", daemon=True)
        self._thread.start()
        port, join_port = self._ports
        try:
            self._run(self._server.start(host=self._host, port=port, join_port=join_port),
                      timeout=timeout)
        except BaseException:
            self._halt(timeout)
            raise
        return self.port, self.join_port

    def stop(self, *, grace: float = 1.0, timeout: float = 10.0) -> None:
        if self._loop is None:
            return
        try:
            self._run(self._server.stop(grace=grace), timeout=timeout)
        finally:
            self._halt(timeout)

    def _run(self, coro: Coroutine[Any, Any, T], *, timeout: float) -> T:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            if future.done():  # the coroutine's own TimeoutError (the same class since 3.11)
                raise
            future.cancel()
            raise TimeoutError(f"the CA server did not answer within {timeout} s") from None

    def _halt(self, timeout: float) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout)
        if loop is not None and not loop.is_running():
            loop.close()
