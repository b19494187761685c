"""Join tokens: how a new agent proves who it is before it has a certificate.

The control plane's home holds a random secret (`join-token.key`, mode
0600). `create_token(namespace, service_account, ttl=...)` mints
`malla1.<payload>.<mac>`: a base64url JSON payload (namespace, service
account or `*` for any in the namespace, issue and expiry times, a random id)
and an HMAC-SHA256 over it. `verify` checks the MAC in constant time, the
expiry against the injected clock, and that the token covers the identity
asked for. Renewals do not use tokens: they authenticate with the current
certificate over mTLS (see `malla.ca.service`).

A token may also carry what an agent on another host needs before it can
trust anything (`JoinHints`, under the payload's `join` key): the hashes of
the mesh's roots (kubeadm's discovery-token-ca-cert-hash, see
`malla.ca.discovery`), the join port and the trust domain. The agent reads
them with `read_hints`, which cannot check the MAC (only the control plane
holds the secret): the hints are as trustworthy as the channel the token
came through, which is the point of a secret token.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

from malla.ca.spiffe import Identity, check_segment

SECRET_FILE = "join-token.key"
ANY_SERVICE_ACCOUNT = "*"
_PREFIX = "malla1."
_SECRET_BYTES = 32


class TokenError(Exception):
    """A token is malformed, forged, expired, or does not cover the identity asked for."""


@dataclass(frozen=True)
class TokenClaims:
    namespace: str
    service_account: str  # "*": any service account in the namespace
    issued_at: int
    expires_at: int
    token_id: str

    def service_account_for(self, asked: str | None) -> str:
        """The service account this token lets a caller asking for `asked` join as."""
        if self.service_account != ANY_SERVICE_ACCOUNT:
            if asked not in (None, "", self.service_account):
                raise TokenError(f"the token is for service account {self.service_account!r} "
                                 f"in {self.namespace!r}, not {asked!r}")
            return self.service_account
        if not asked:
            raise TokenError(f"the token is valid for any service account in namespace "
                             f"{self.namespace!r}: name the service account to join as")
        return asked

    def identity_for(self, asked: str | None, *, trust_domain: str) -> Identity:
        return Identity(trust_domain, self.namespace, self.service_account_for(asked))


@dataclass(frozen=True)
class JoinHints:
    """What a token tells the agent that holds it (unverified: see the module's docstring)."""

    namespace: str
    service_account: str
    expires_at: int
    ca_hashes: tuple[str, ...] = ()  # "sha256:<hex>" of each root's public key
    join_port: int | None = None
    trust_domain: str | None = None

    def payload(self) -> dict[str, object]:
        """The `join` object a token carries."""
        found: dict[str, object] = {"ca": list(self.ca_hashes)}
        if self.join_port is not None:
            found["port"] = self.join_port
        if self.trust_domain is not None:
            found["td"] = self.trust_domain
        return found


def read_hints(token: str) -> JoinHints:
    """The claims and join hints of `token`, without checking its MAC (the CA does that)."""
    body, _, mac = token.strip().rpartition(".")
    if not body.startswith(_PREFIX) or not mac:
        raise TokenError("not a malla join token (expected 'malla1.<payload>.<mac>'); "
                         "copy the whole output of 'malla token create'")
    try:
        data = json.loads(_unb64(body[len(_PREFIX):]))
        claims = _claims(data)
        join = data.get("join") or {}
        if not isinstance(join, dict):
            raise ValueError("join is not an object")
        port = join.get("port")
        return JoinHints(
            namespace=claims.namespace, service_account=claims.service_account,
            expires_at=claims.expires_at, ca_hashes=tuple(str(h) for h in join.get("ca") or ()),
            join_port=int(port) if port is not None else None,
            trust_domain=str(join["td"]) if join.get("td") else None)
    except (ValueError, TypeError, binascii.Error):
        raise TokenError("the join token is damaged (its payload cannot be read); "
                         "copy the whole output of 'malla token create'") from None


def load_or_create_secret(directory: Path | str) -> bytes:
    """The token secret kept in `directory`, made (32 random bytes, 0600) on first use."""
    path = Path(directory) / SECRET_FILE
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        secret = secrets.token_bytes(_SECRET_BYTES)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return load_or_create_secret(directory)
        with os.fdopen(fd, "wb") as out:
            out.write(secret)
        return secret
    if len(secret) < 16:
        raise TokenError(f"{path}: holds {len(secret)} bytes; a token secret needs at least 16 "
                         "(delete the file to make a new one; issued tokens stop working)")
    return secret


class JoinTokens:
    """Mints and checks join tokens with one secret."""

    def __init__(self, secret: bytes, *, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("secret: needs at least 16 bytes")
        self._secret = secret
        self._clock = clock

    def create_token(self, namespace: str, service_account: str = ANY_SERVICE_ACCOUNT, *,
                     ttl: timedelta | float, ca_hashes: Sequence[str] = (),
                     join_port: int | None = None, trust_domain: str | None = None) -> str:
        """A token that lets an agent join as `namespace`/`service_account` until it expires.

        `ca_hashes`, `join_port` and `trust_domain` travel in it as `JoinHints`
        for an agent on another host.
        """
        seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
        if seconds <= 0:
            raise ValueError(f"ttl: {seconds} s; a token needs a positive lifetime")
        check_segment("namespace", namespace)
        if service_account != ANY_SERVICE_ACCOUNT:
            check_segment("service_account", service_account)
        now = int(self._clock())
        payload: dict[str, object] = {"ns": namespace, "sa": service_account, "iat": now,
                                      "exp": now + max(1, int(seconds)), "jti": secrets.token_hex(8)}
        if ca_hashes or join_port is not None or trust_domain is not None:
            payload["join"] = JoinHints(namespace, service_account, 0, tuple(ca_hashes), join_port,
                                        trust_domain).payload()
        body = _PREFIX + _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        return f"{body}.{_b64(self._mac(body.encode()))}"

    def verify(self, token: str, *, namespace: str | None = None,
               service_account: str | None = None) -> TokenClaims:
        """The token's claims, if it is genuine, current, and covers what is asked for."""
        body, _, mac = token.strip().rpartition(".")
        if not body.startswith(_PREFIX) or not mac:
            raise TokenError("not a malla join token (expected 'malla1.<payload>.<mac>')")
        try:
            self._check_mac(body.encode(), _unb64(mac))
            claims = _claims(json.loads(_unb64(body[len(_PREFIX):])))
        except (InvalidSignature, ValueError, binascii.Error):
            raise TokenError("the join token is forged, damaged or from another control "
                             "plane; create a new one with this control plane") from None
        if self._clock() >= claims.expires_at:
            raise TokenError(f"the join token expired {int(self._clock()) - claims.expires_at} s "
                             "ago; create a new one")
        if namespace is not None and namespace != claims.namespace:
            raise TokenError(f"the token is for namespace {claims.namespace!r}, "
                             f"not {namespace!r}")
        if service_account is not None:
            claims.service_account_for(service_account)
        return claims

    def _mac(self, data: bytes) -> bytes:
        signer = hmac.HMAC(self._secret, hashes.SHA256())
        signer.update(data)
        return signer.finalize()

    def _check_mac(self, data: bytes, mac: bytes) -> None:
        checker = hmac.HMAC(self._secret, hashes.SHA256())
        checker.update(data)
        checker.verify(mac)  # constant time


def _claims(data: object) -> TokenClaims:
    if not isinstance(data, dict):
        raise ValueError("payload is not an object")
    try:
        return TokenClaims(namespace=str(data["ns"]), service_account=str(data["sa"]),
                           issued_at=int(data["iat"]), expires_at=int(data["exp"]),
                           token_id=str(data["jti"]))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"payload lacks {exc}") from exc


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
