"""Citadel inside ``malla up``: the home's CA, served, and what agents report about their certificates.

In: the home directory (CA files under Istio's names in ``<home>/ca``:
``ca-cert.pem``, ``ca-key.pem``, ``cert-chain.pem``, ``root-cert.pem``; a
self-signed root is made there on first use unless plug-in files are
placed first; replaced files are picked up while running, see
``malla.ca.plugin_watch``), the CA ports (15012 mTLS renewals, 15013 join
tokens), and agents' reports of their current certificate. Out: a running
``IstioCertificateService`` (``malla.ca``), join tokens for agents on other
hosts, root rotation steps, and the certificate board ``malla status``
shows, with the time left computed when asked, never when reported.

Given the running xDS server, the mTLS port is istiod's 15012: ADS, the
renewals and the remote agents' API on one port
(``malla.controlplane.mesh_tls``); the join port stays on the CA's own
thread. Join tokens carry what an agent on another host needs to trust this
CA: the roots' hashes, the join port and the trust domain.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509

from malla.ca import material as files
from malla.ca.authority import CAError, CertificateAuthority
from malla.ca.discovery import root_hashes
from malla.ca.plugin_watch import PluginWatch
from malla.ca.runner import CAServerThread, ca_dir, open_ca
from malla.ca.service import CONTROL_PLANE_SAN
from malla.ca.tokens import ANY_SERVICE_ACCOUNT, JoinTokens, TokenError
from malla.controlplane.mesh_tls import MeshTlsServer
from malla.xds.runner import XdsServerThread

WILDCARD_HOSTS = ("0.0.0.0", "::", "")

ROTATION_STEPS = ("begin", "activate", "retire")
# A report older than this, from an agent that promised to report on every
# change and at least every few seconds, is shown as stale.
STALE_AFTER = 60.0
_STATES = ("PENDING", "VALID", "ROTATION FAILING", "EXPIRING", "EXPIRED")


class CitadelError(RuntimeError):
    """The CA cannot start or refuses a request; the message says what to do."""


def describe_certificate(cert: x509.Certificate) -> dict[str, Any]:
    return {
        "serial": f"{cert.serial_number:x}",
        "subject": cert.subject.rfc4514_string(),
        "notBefore": cert.not_valid_before_utc.timestamp(),
        "notAfter": cert.not_valid_after_utc.timestamp(),
    }


@dataclass
class Citadel:
    """The CA of one home, listening on its mTLS and join ports."""

    authority: CertificateAuthority
    tokens: JoinTokens
    server: CAServerThread
    host: str
    board: IdentityBoard = field(default_factory=lambda: IdentityBoard())
    mesh: MeshTlsServer | None = None  # the mTLS port with ADS beside the CA (istiod's 15012)
    watch: PluginWatch | None = None  # replaced CA files, installed while running

    @classmethod
    def start(cls, home: Path, *, host: str, port: int, join_port: int, trust_domain: str,
              bind_host: str | None = None, xds: XdsServerThread | None = None,
              services: Sequence[grpc.GenericRpcHandler] = ()) -> Citadel:
        """Serve the home's CA. `bind_host`: where the CA ports listen (default `host`, which
        agents on this host dial); `xds`: serve its ADS streams and `services` on the mTLS port."""
        bind = bind_host or host
        for number, what, flag in ((port, "renewals", "--ca-port"), (join_port, "join tokens", "--ca-join-port")):
            _check_free(bind, number, what=what, flag=flag)
        try:
            authority, tokens = open_ca(home, trust_domain=trust_domain)
        except (ValueError, TokenError, OSError) as exc:  # CAMaterialError is a ValueError
            raise CitadelError(f"cannot open the CA in {ca_dir(home)}: {exc}") from exc
        names = ("localhost", "127.0.0.1", host, bind, CONTROL_PLANE_SAN)
        server = CAServerThread(authority, tokens=tokens, host=bind, port=None if xds else port, join_port=join_port,
                                serving_hosts=tuple(n for n in dict.fromkeys(names) if n not in WILDCARD_HOSTS))
        try:
            server.start()
        except (OSError, TimeoutError) as exc:
            raise CitadelError(f"{exc} with --ca-port (renewals, 15012) or --ca-join-port (join tokens, 15013)"
                               ) from exc
        citadel = cls(authority=authority, tokens=tokens, server=server, host=host)
        if xds is not None:
            services = (server.ca.handler(), *services)
            ca = server.ca
            citadel.mesh = MeshTlsServer(xds, credentials=lambda: ca.credentials(require_client_certificate=True),
                                         services=services, trust_domain=trust_domain)
            try:
                citadel.mesh.start(host=bind, port=port)
            except (OSError, TimeoutError) as exc:
                server.stop(grace=0)
                raise CitadelError(f"{exc}; choose another port with --ca-port") from exc
        citadel.watch = PluginWatch(authority)
        citadel.watch.start()
        return citadel

    def stop(self) -> None:
        if self.watch is not None:
            self.watch.stop()
        if self.mesh is not None:
            self.mesh.stop()
        self.server.stop(grace=0.5)

    @property
    def address(self) -> str:
        return _join(self.host, self.mesh.port if self.mesh is not None else self.server.port)

    @property
    def join_address(self) -> str:
        return _join(self.host, self.server.join_port)

    @property
    def root_cert_path(self) -> Path:
        assert self.authority.directory is not None
        return self.authority.directory / files.ROOT_CERT_FILE

    # -- what the API offers -------------------------------------------------

    def create_token(self, *, namespace: str, service_account: str | None, ttl: float) -> dict[str, Any]:
        """A join token and everything an agent on another host needs with it."""
        account = service_account or ANY_SERVICE_ACCOUNT
        bundle = self.authority.trust_bundle_pem()
        hashes = root_hashes(bundle)
        token = self.tokens.create_token(namespace, account, ttl=ttl, ca_hashes=hashes,
                                         join_port=self.server.join_port, trust_domain=self.authority.trust_domain)
        claims = self.tokens.verify(token)
        return {
            "token": token, "namespace": namespace, "serviceAccount": account,
            "expiresAt": claims.expires_at, "trustDomain": self.authority.trust_domain,
            "caAddress": self.address, "caJoinAddress": self.join_address,
            "caCertHashes": list(hashes), "rootCert": bundle.decode(),
        }

    def describe(self) -> dict[str, Any]:
        rotation = self.authority.rotation()
        material = self.authority.material
        return {
            "trustDomain": self.authority.trust_domain,
            "address": self.address, "joinAddress": self.join_address,
            "directory": str(self.authority.directory), "pluggedIn": not material.self_signed,
            "rotation": rotation.phase,
            "signingCertificate": describe_certificate(material.ca_cert),
            "signingRoot": describe_certificate(rotation.signing_root),
            "roots": [describe_certificate(root) for root in rotation.roots],
            "problem": self.problem,
        }

    @property
    def problem(self) -> dict[str, Any] | None:
        """Why the CA files on disk were refused (the previous material still signs), or None."""
        found = self.watch.problem if self.watch is not None else None
        return found.to_json() if found is not None else None

    def rotate_root(self, step: str) -> dict[str, Any]:
        """One step of a root rotation (begin, activate, retire); the CA's state after it."""
        actions: Mapping[str, Callable[[], object]] = {
            "begin": self.authority.begin_root_rotation,
            "activate": self.authority.activate_next_root,
            "retire": self.authority.retire_old_roots,
        }
        if step not in actions:
            raise CitadelError(f"step {step!r}: use one of {', '.join(ROTATION_STEPS)}")
        try:
            actions[step]()
        except CAError as exc:
            raise CitadelError(str(exc)) from exc
        return self.describe()


def _check_free(host: str, port: int, *, what: str, flag: str) -> None:
    """A plain bind first: gRPC's own bind error does not say why."""
    if not port:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise CitadelError(f"cannot serve the CA ({what}) on {_join(host, port)}: {exc.strerror}; "
                               f"choose another port with {flag}") from exc


def _join(host: str, port: int | None) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class IdentityBoard:
    """The last certificate report of each agent, by xDS node id."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._reports: dict[str, dict[str, Any]] = {}

    def report(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Record an agent's report; raises ValueError naming the field that is wrong."""
        entry = _checked_report(body)
        entry["reportedAt"] = self._clock()
        with self._lock:
            self._reports[entry["nodeId"]] = entry
        return entry

    def forget(self, node_id: str) -> bool:
        with self._lock:
            return self._reports.pop(node_id, None) is not None

    def items(self) -> list[dict[str, Any]]:
        """Every report, with the time left and the state as of now."""
        now = self._clock()
        with self._lock:
            reports = [dict(r) for _, r in sorted(self._reports.items())]
        for entry in reports:
            not_after = entry.get("notAfter")
            entry["secondsLeft"] = None if not_after is None else round(not_after - now, 1)
            if not_after is not None and not_after <= now:
                entry["state"] = "EXPIRED"  # the agent may be too stuck to say so itself
            entry["stale"] = now - entry["reportedAt"] > STALE_AFTER
        return reports


def _checked_report(body: Mapping[str, Any]) -> dict[str, Any]:
    def text(key: str, *, required: bool = True) -> str | None:
        value = body.get(key)
        if value is None or value == "":
            if required:
                raise ValueError(f"{key}: required")
            return None
        if not isinstance(value, str):
            raise ValueError(f"{key}: must be a string")
        return value

    def number(key: str) -> float | None:
        value = body.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{key}: must be a number")
        return float(value)

    state = text("state")
    if state not in _STATES:
        raise ValueError(f"state: {state!r} is not one of {', '.join(_STATES)}")
    roots = body.get("roots") or []
    if not isinstance(roots, list) or not all(isinstance(r, dict) for r in roots):
        raise ValueError("roots: must be a list of objects")
    synced = body.get("envoySynced")
    return {
        "nodeId": text("nodeId"), "name": text("name"), "namespace": text("namespace"),
        "kind": text("kind", required=False) or "sidecar", "spiffeId": text("spiffeId"),
        "state": state, "serial": text("serial", required=False),
        "notBefore": number("notBefore"), "notAfter": number("notAfter"),
        "issuer": text("issuer", required=False), "lastError": text("lastError", required=False),
        "rotations": int(number("rotations") or 0), "failures": int(number("failures") or 0),
        "envoySynced": synced if isinstance(synced, bool) else None,
        "roots": [{k: r.get(k) for k in ("serial", "subject", "notAfter")} for r in roots],
    }


def ttl_seconds(value: object, *, field_name: str = "ttlSeconds",
                default: float = timedelta(hours=1).total_seconds()) -> float:
    """A positive number of seconds from a request body (the default when absent)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{field_name}: give a positive number of seconds")
    return float(value)
