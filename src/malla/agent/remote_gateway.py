"""``malla gateway --controlplane HOST``: a gateway on a host that has no control plane of its own.

Theory of operation, in the order it happens (the trust and transport steps
are those of ``malla run --controlplane``, ``malla.agent.remote``):

1. The join token (``malla token create -n istio-system`` where the control
   plane runs) decides the gateway's identity: its namespace must be the
   gateway's (``--namespace``), and its service account is the token's, or
   ``NAME-service-account`` (Istio's gateway charts' name) when the token
   covers any service account of the namespace (``gateway_with_token``).
2. The mesh's roots are pinned by the token or ``--ca-root`` and kept under
   this host's home (``remote_state``); the gateway's HTTP API calls (its
   certificate reports, the telemetry's workload directory) go through a
   loopback ``ApiRelay`` over the mTLS port with the gateway's certificate.
3. ``RemoteGatewayAgent`` runs as a local gateway does, except that its
   xDS node id is made here for the address it listens on (``--address``,
   127.0.0.1 by default; the control plane's loopback leases, ``--address
   auto``, mean nothing on this host), its first certificate comes from the
   CA's join port with the token and renewals over 15012 with the current
   one, its Envoy connects ADS over mTLS with that certificate from the
   gateway's own SDS server (``malla.envoy.xds_tls``; rotation reaches the
   ADS connection), and it follows no home's ``controlplane.json``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from typing import Any

from malla.agent.api_relay import ApiRelay, Tunnel
from malla.agent.gateway import LEASE, GatewayAgent, GatewayOptions, run_gateway
from malla.agent.identity import WorkloadCertificate
from malla.agent.remote import RemoteOptions, check_reachable, remote_node_id, remote_state
from malla.agent.run import AgentError, Progress
from malla.ca.discovery import join_address, split_address
from malla.ca.service import CONTROL_PLANE_SAN, DEFAULT_PORT
from malla.ca.tokens import ANY_SERVICE_ACCOUNT, TokenError, read_hints
from malla.envoy.bootstrap import TcpAddress
from malla.envoy.xds_tls import xds_mtls_transport_socket
from malla.pilot.gateways import AGENT_SDS_CLUSTER


def _quiet(_message: str) -> None:
    pass


def gateway_with_token(options: GatewayOptions, token: str) -> GatewayOptions:
    """`options` with the identity `token` grants; AgentError (exit 2) when it is not a gateway's of this namespace."""
    try:
        hints = read_hints(token)
    except TokenError as exc:
        raise AgentError(f"the join token (--join-token, --join-token-file): {exc}", exit_code=2) from None
    if hints.namespace != options.namespace:
        raise AgentError(
            f"the join token is for namespace {hints.namespace!r}, the gateway's (--namespace) is "
            f"{options.namespace!r}: create a token with 'malla token create -n {options.namespace}' "
            f"or run the gateway with -n {hints.namespace}", exit_code=2)
    account = None if hints.service_account == ANY_SERVICE_ACCOUNT else hints.service_account
    return dataclasses.replace(options, join_token=token, service_account=account or options.service_account)


def run_remote_gateway(options: GatewayOptions, remote: RemoteOptions, *, progress: Progress = _quiet,
                       announce: Progress = _quiet) -> int:
    """Run the gateway against the control plane at ``remote.controlplane``; its exit status."""
    if not options.join_token:
        raise AgentError("--controlplane needs a join token: create one where the control plane runs "
                         f"('malla token create -n {options.namespace}') and pass it with --join-token "
                         "or --join-token-file", exit_code=2)
    _check_address(options.address)
    options = gateway_with_token(options, options.join_token)
    try:
        host, port = split_address(remote.controlplane, default_port=DEFAULT_PORT)
    except ValueError as exc:
        raise AgentError(f"--controlplane {exc}", exit_code=2) from None
    target = join_address(host, port)
    check_reachable(host, port)
    agent_box: list[RemoteGatewayAgent] = []
    relay = ApiRelay(Tunnel(target, server_name=CONTROL_PLANE_SAN,
                            certificate=lambda: agent_box[0].certificate() if agent_box else None))
    api_url = relay.start()
    try:
        state = remote_state(host=host, port=port, token=options.join_token or "", ca_root=remote.ca_root,
                             home=options.home, api_url=api_url)
        progress(f"trusting the control plane at {target} (roots in {state.ca_root_cert})")
        agent = RemoteGatewayAgent(options, state, progress=progress, announce=announce)
        agent_box.append(agent)
        return run_gateway(options, state, progress=progress, announce=announce, agent=agent)
    finally:
        relay.stop()


def _check_address(address: str) -> None:
    if address == LEASE:
        raise AgentError(f"--address {LEASE} leases a loopback address from a control plane on this host; "
                         "with --controlplane give an IP address of this host to listen on (default 127.0.0.1)",
                         exit_code=2)
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise AgentError(f"--address {address!r}: give an IP address of this host to listen on, such as "
                         "127.0.0.1 or 0.0.0.0", exit_code=2) from None


class RemoteGatewayAgent(GatewayAgent):
    """A gateway whose control plane is on another host, reached over mTLS only."""

    def certificate(self) -> WorkloadCertificate | None:
        """The gateway's current mesh certificate: the API relay's credential."""
        rotator = self.identity.rotator if self.identity is not None else None
        return rotator.current if rotator is not None else None

    def lease(self) -> dict[str, Any]:
        o = self.options
        return {"address": o.address,
                "nodeId": remote_node_id("router", address=o.address, name=o.name, namespace=o.namespace)}

    def state_home(self) -> Path | None:
        return None

    def xds_address(self) -> TcpAddress:
        host, port = split_address(self.state.xds_address)  # "[v6]:port" too
        return TcpAddress(host, port)

    def xds_transport_socket(self) -> dict[str, Any] | None:
        return xds_mtls_transport_socket(sds_cluster=AGENT_SDS_CLUSTER, server_name=self.state.ca_server_name)
