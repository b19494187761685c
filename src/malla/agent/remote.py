"""``malla run --controlplane HOST``: a workload on a host that has no control plane of its own.

Theory of operation, in the order it happens:

1. The join token (``malla token create`` on the control plane's host) says
   which namespace and service account the workload may join as, the hashes
   of the mesh's roots, the join port and the trust domain (``JoinHints``).
2. Trust: the roots of ``--ca-root FILE`` (checked against the token's hashes
   when it has some), or the roots the control plane serves on its join
   port, kept only if the token names their hash (``malla.ca.discovery``).
   They are written to ``<home>/controlplanes/<host>-<port>/root-cert.pem``.
3. This agent's own ``ControlPlaneState``: xDS and renewals at HOST:PORT
   (15012, mTLS), the first certificate at HOST:<join port> with the token,
   the CA checked against istiod's name whatever address was dialled, and
   the HTTP API through a loopback relay (``malla.agent.api_relay``) that
   carries each call over the mTLS port with the workload's certificate.
4. ``RemoteAgent`` runs the workload as a local agent does, except that its
   address is its host's (``--address``, by default the local address that
   routes to the control plane: the control plane's loopback leases mean
   nothing here), its Envoy connects ADS over mTLS with the workload's own
   certificate from SDS (``malla.envoy.xds_tls``; rotation reaches the ADS
   connection), and it follows no home's ``controlplane.json``.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509

from malla.agent.api_relay import ApiRelay, Tunnel
from malla.agent.identity import WorkloadCertificate
from malla.agent.run import Agent, AgentError, Progress, RunOptions, run
from malla.agent.sds import SDS_CLUSTER
from malla.ca.discovery import TrustBundleError, fetch_trust_bundle, join_address, pinned_roots, split_address
from malla.ca.service import CONTROL_PLANE_SAN, DEFAULT_JOIN_PORT, DEFAULT_PORT
from malla.ca.spiffe import DEFAULT_TRUST_DOMAIN
from malla.ca.tokens import JoinHints, TokenError, read_hints
from malla.controlplane.home import ControlPlaneState
from malla.envoy.bootstrap import TcpAddress
from malla.envoy.xds_tls import xds_mtls_transport_socket


@dataclass(frozen=True)
class RemoteOptions:
    controlplane: str  # HOST or HOST:PORT of the control plane's mTLS port
    ca_root: Path | None = None  # the mesh's roots; None: fetched, pinned by the token's hashes
    address: str | None = None  # where other hosts reach this workload; None: towards the control plane


def run_remote(options: RunOptions, remote: RemoteOptions, *, progress: Progress = lambda _m: None) -> int:
    """Run the workload against the control plane at ``remote.controlplane``; the app's exit status."""
    if not options.join_token:
        raise AgentError("--controlplane needs a join token: create one where the control plane runs "
                         "('malla token create -n NAMESPACE') and pass it with --join-token or --join-token-file",
                         exit_code=2)
    try:
        host, port = split_address(remote.controlplane, default_port=DEFAULT_PORT)
    except ValueError as exc:
        raise AgentError(f"--controlplane {exc}", exit_code=2) from None
    target = join_address(host, port)
    agent_box: list[RemoteAgent] = []
    relay = ApiRelay(Tunnel(target, server_name=CONTROL_PLANE_SAN,
                            certificate=lambda: agent_box[0].certificate() if agent_box else None))
    api_url = relay.start()
    try:
        state = remote_state(host=host, port=port, token=options.join_token, ca_root=remote.ca_root,
                             home=options.home, api_url=api_url)
        progress(f"trusting the control plane at {target} (roots in {state.ca_root_cert})")
        check_reachable(host, port)
        address = remote.address or local_address_towards(host, port)
        make = _transparent_agent if options.transparent else RemoteAgent
        agent = make(options, state, progress=progress, address=address)
        agent_box.append(agent)
        return run(options, state, progress=progress, agent=agent)
    finally:
        relay.stop()


def _transparent_agent(options: RunOptions, state: ControlPlaneState, *, progress: Progress,
                       address: str) -> RemoteAgent:
    from malla.agent.remote_transparent import RemoteTransparentAgent  # it imports this module

    return RemoteTransparentAgent(options, state, progress=progress, address=address)


def check_reachable(host: str, port: int, *, timeout: float = 10.0) -> None:
    """A TCP connection to the mTLS port: a wrong --controlplane is said now, not after Envoy's start-up timeout."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise AgentError(
            f"--controlplane {join_address(host, port)}: cannot reach the control plane's mTLS port "
            f"({exc.strerror or exc}); give the HOST:PORT where it serves xDS and renewals (printed by "
            "'malla token create'; 'malla up --mtls-host' makes it listen where other hosts reach it)") from None


def remote_state(*, host: str, port: int, token: str, ca_root: Path | None, home: Path,
                 api_url: str) -> ControlPlaneState:
    """Steps 1-3: the trusted roots on disk, and the state this agent runs with; AgentError says why not."""
    try:
        hints = read_hints(token)
    except TokenError as exc:
        raise AgentError(str(exc), exit_code=2) from None
    join = join_address(host, hints.join_port or DEFAULT_JOIN_PORT)
    try:
        roots = _trusted_roots(hints, ca_root=ca_root, join=join)
    except TrustBundleError as exc:
        raise AgentError(str(exc)) from None
    directory = home / "controlplanes" / f"{host}-{port}".replace(":", "_")
    root_file = directory / "root-cert.pem"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        partial = root_file.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(roots)
        partial.replace(root_file)
    except OSError as exc:
        raise AgentError(f"cannot keep the mesh's roots in {directory}: {exc.strerror}; "
                         "give a writable --home") from None
    address = join_address(host, port)
    return ControlPlaneState(
        pid=0, xds_address=address, api_url=api_url, monitoring_url="", home=str(home),
        ca_address=address, ca_join_address=join, ca_root_cert=str(root_file),
        trust_domain=hints.trust_domain or DEFAULT_TRUST_DOMAIN, ca_server_name=CONTROL_PLANE_SAN)


def _trusted_roots(hints: JoinHints, *, ca_root: Path | None, join: str) -> bytes:
    if ca_root is not None:
        try:
            given = ca_root.read_bytes()
        except OSError as exc:
            raise TrustBundleError(f"--ca-root {ca_root}: {exc.strerror}") from None
        if hints.ca_hashes:
            return pinned_roots(given, hints.ca_hashes, source=f"--ca-root {ca_root}",
                                advice="give the root-cert.pem of the control plane that made the token")
        try:
            x509.load_pem_x509_certificates(given)
        except ValueError:
            raise TrustBundleError(f"--ca-root {ca_root}: holds no PEM certificates") from None
        return given
    if not hints.ca_hashes:
        raise TrustBundleError("the join token names no CA hash (it was made by an older control plane); "
                               "copy the control plane's root-cert.pem here and pass it with --ca-root FILE")
    return fetch_trust_bundle(join, hashes=hints.ca_hashes)


def local_address_towards(host: str, port: int) -> str:
    """This host's address on the route to the control plane (no packet is sent)."""
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(sockaddr)
            return str(probe.getsockname()[0])
    except OSError as exc:
        raise AgentError(f"cannot find this host's address towards {host}: {exc.strerror or exc}; "
                         "give it with --address") from None


def remote_node_id(kind: str, *, address: str, name: str, namespace: str) -> str:
    """An xDS node id made on this host, of the shape of the control plane's own leases (malla.controlplane.api)."""
    return f"{kind}~{address}~{name}-{secrets.token_hex(3)}.{namespace}~{namespace}.svc.cluster.local"


class RemoteAgent(Agent):
    """An agent whose control plane is on another host, reached over mTLS only."""

    def __init__(self, options: RunOptions, state: ControlPlaneState, *, progress: Progress,
                 address: str) -> None:
        super().__init__(options, state, progress=progress)
        self.address = address

    def certificate(self) -> WorkloadCertificate | None:
        """The workload's current certificate: the API relay's credential."""
        thread = self.identity.thread if self.identity is not None else None
        return thread.rotator.current if thread is not None else None

    def lease(self) -> dict[str, Any]:
        o = self.options
        return {"address": self.address, "nodeId": remote_node_id("sidecar", address=self.address, name=o.name,
                                                                  namespace=o.namespace)}

    def state_home(self) -> Path | None:
        return None

    def xds_address(self) -> TcpAddress:
        host, port = split_address(self.state.xds_address)  # "[v6]:port" too
        return TcpAddress(host, port)

    def xds_transport_socket(self) -> dict[str, Any] | None:
        return xds_mtls_transport_socket(sds_cluster=SDS_CLUSTER, server_name=self.state.ca_server_name)

    def _api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = super()._api(method, path, **kwargs)
        # A withdrawal of what is already gone is fine; anything else refused is not.
        if response.status_code >= 400 and not (method == "DELETE" and response.status_code == 404):
            try:
                why = response.json().get("error")
            except (ValueError, AttributeError):
                why = response.text
            raise AgentError(f"the control plane refused {method} {path}: {why}")
        return response
