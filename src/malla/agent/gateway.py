"""``malla gateway``: an ingress gateway, Envoy as a router proxy (Istio's istio-ingressgateway).

Theory of operation, in the order it happens:

1. Ask the control plane for the gateway's identity: its xDS node id, on
   the address it serves (127.0.0.1 by default, so ``curl
   http://127.0.0.1:8080/`` works from the host; ``--address auto`` leases a
   loopback address of its own). Its labels (``istio=NAME`` by default) are
   what Gateway resources select, in any namespace, as in Istio.
2. Check that the ports it is told to serve (``--port``) are free there, so
   a taken port is a clear error before anything starts.
3. Start Envoy with a bootstrap of kind ``router`` and a static
   ``sds-grpc`` cluster to the agent's SDS server (``gateway_sds``), which
   serves the certificates Envoy asks for from files (``gateway_credentials``)
   and pushes renewed ones, and the gateway's own mesh certificate for mTLS
   to sidecars (``gateway_identity``). Envoy is ready once it has its
   listeners and their certificates.
4. While it runs, read Envoy's listeners (admin ``config_dump``) and say
   which URLs it serves, and which ports it could not bind, as they change.
5. On SIGINT/SIGTERM: stop Envoy, the SDS server and the file watch, release
   the address, and exit 0.

``malla.agent.remote_gateway`` runs the same agent on a host without the
control plane: its node id is made there, ADS goes over mTLS, and the API
calls through a relay (the hooks ``lease``, ``xds_address``,
``xds_transport_socket``, ``state_home``).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import signal
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from malla.agent.gateway_credentials import CredentialFiles, credentials_dir
from malla.agent.gateway_identity import MESH_SECRETS, GatewayIdentity, SecretMerge
from malla.agent.gateway_sds import SdsServer
from malla.agent.pidfile import remove_pid, write_pid
from malla.agent.run import AgentError, Progress
from malla.agent.workload_identity import IdentityError, IdentityOptions
from malla.controlplane.home import ControlPlaneState
from malla.discovery.proxies import node_metadata
from malla.envoy.binary import EnvoyNotFoundError
from malla.envoy.bootstrap import TcpAddress, build_bootstrap
from malla.envoy.process import EnvoyError, EnvoyProcess
from malla.pilot.gateways import AGENT_SDS_CLUSTER
from malla.pilot.snapshot import Proxy, ProxyKind, XdsMode
from malla.telemetry.workload import WorkloadTelemetry

log = logging.getLogger(__name__)

LEASE = "auto"  # --address auto: a loopback address of its own from the control plane
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
_WILDCARDS = ("0.0.0.0", "::")


def _quiet(_message: str) -> None:
    pass


@dataclass(frozen=True)
class GatewayOptions:
    home: Path
    name: str = "ingressgateway"
    namespace: str = "istio-system"
    labels: dict[str, str] = field(default_factory=dict)  # added to istio=NAME, app=NAME
    address: str = "127.0.0.1"
    ports: tuple[int, ...] = ()
    xds_mode: XdsMode = XdsMode.SOTW
    startup_timeout: float = 30.0
    poll_seconds: float = 0.5
    service_account: str | None = None  # None: NAME-service-account, as Istio's gateway charts name it
    join_token: str | None = None  # None: minted from the control plane's home (same host only)

    def all_labels(self) -> dict[str, str]:
        return {"istio": self.name, "app": self.name, **self.labels}

    def account(self) -> str:
        return self.service_account or f"{self.name}-service-account"


@dataclass(frozen=True, order=True)
class ServedPort:
    """One port Envoy listens on, as a person would reach it."""

    port: int
    scheme: str  # http, https, tls (passthrough by SNI) or tcp
    host: str
    server_names: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        suffix = "/" if self.scheme in ("http", "https") else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        text = f"{self.scheme}://{host}:{self.port}{suffix}"
        return text + (f" (SNI {', '.join(self.server_names)})" if self.server_names else "")


def describe_listeners(dump: dict[str, Any]) -> tuple[list[ServedPort], dict[str, str]]:
    """Envoy's ``config_dump?resource=dynamic_listeners`` -> what it serves, and why listeners failed."""
    served: set[ServedPort] = set()
    errors: dict[str, str] = {}
    for entry in dump.get("configs", []):
        if "error_state" in entry:
            error = entry["error_state"]
            # Envoy may list a failed update twice, once without the listener's name.
            name = entry.get("name") or error.get("failed_configuration", {}).get("name", "")
            errors[name] = str(error.get("details", "rejected"))
        listener = (entry.get("active_state") or {}).get("listener")
        if listener is None:
            continue
        sock = listener.get("address", {}).get("socket_address", {})
        host = sock.get("address", "")
        host = "127.0.0.1" if host in _WILDCARDS else host
        for chain in listener.get("filter_chains", []):
            served.add(_served_chain(chain, host=host, port=int(sock.get("port_value", 0))))
    return sorted(served), errors


def _served_chain(chain: dict[str, Any], *, host: str, port: int) -> ServedPort:
    http = any(f.get("typed_config", {}).get("@type") == _HCM for f in chain.get("filters", []))
    tls = chain.get("transport_socket", {}).get("typed_config", {}).get("@type") == _TLS
    sni = tuple(sorted(chain.get("filter_chain_match", {}).get("server_names", [])))
    scheme = ("https" if http else "tls") if tls else ("http" if http else ("tls" if sni else "tcp"))
    return ServedPort(port=port, scheme=scheme, host=host, server_names=sni)


def check_ports_free(address: str, ports: Iterable[int]) -> None:
    """Raise AgentError naming the first port that cannot be bound on ``address``."""
    for port in ports:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address, port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise AgentError(f"cannot listen on {address}:{port}: {exc.strerror}; check --address") from None
                raise AgentError(
                    f"port {port} on {address} is taken ({exc.strerror}): another gateway or program listens "
                    "there; stop it, or serve on another address with --address (another IP of this host, or 'auto' "
                    "for a loopback address of its own next to a local control plane)"
                ) from None


def _sds_cluster(path: Path) -> dict[str, Any]:
    """The static cluster Envoy reaches this agent's SDS server by (a Unix socket, HTTP/2)."""
    return {
        "name": AGENT_SDS_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": AGENT_SDS_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": str(path)}}}}]}],
        },
        "typed_extension_protocol_options": {
            _HTTP_OPTIONS: {
                "@type": "type.googleapis.com/" + _HTTP_OPTIONS,
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
    }


class GatewayAgent:
    def __init__(
        self,
        options: GatewayOptions,
        state: ControlPlaneState,
        *,
        progress: Progress = _quiet,
        announce: Progress = _quiet,
    ) -> None:
        self.options = options
        self.state = state
        self.progress = progress  # commentary
        self.announce = announce  # the URLs it serves, as they come and go
        self.address: str | None = None
        self.node_id: str | None = None
        self.envoy: EnvoyProcess | None = None
        self._leased = False
        self.sds = SdsServer(want=self._want, on_nack=self._on_nack)
        # One SDS socket serves the Gateways' credentials and the gateway's own mesh certificate.
        self.secrets = SecretMerge(self.sds.publish)
        self.credentials = CredentialFiles(credentials_dir(options.home), publish=self.secrets.credentials, report=progress)
        self.identity: GatewayIdentity | None = None
        self._served: list[ServedPort] = []
        self.telemetry: WorkloadTelemetry | None = None  # Istio metrics: access logs in, :15020 out
        self._errors: dict[str, str] = {}

    def _api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = httpx.request(method, self.state.api_url + path, timeout=10, trust_env=False, **kwargs)
        except httpx.HTTPError as exc:
            raise AgentError(f"the control plane at {self.state.api_url} did not answer: {exc}") from exc
        if response.status_code >= 400:
            raise AgentError(f"the control plane refused {method} {path}: {response.text[:300]}")
        return response

    def _want(self, names: frozenset[str]) -> None:
        self.credentials.want(names - MESH_SECRETS)  # default and ROOTCA come from self.identity

    def _on_nack(self, names: str, message: str) -> None:
        self.progress(f"Envoy rejected {names}: {message}")

    # -- start ----------------------------------------------------------------

    def start(self, stop: threading.Event | None = None) -> None:
        """Up to a ready Envoy; returns early, with nothing left to wait for, once ``stop`` is set."""
        o = self.options
        self._check_address()
        if o.address != LEASE:
            check_ports_free(o.address, o.ports)
        lease = self.lease()
        self.address, self.node_id = lease["address"], lease["nodeId"]
        self._leased = o.address == LEASE
        if self._leased:
            check_ports_free(self.address, o.ports)
        self.envoy = EnvoyProcess(self._bootstrap(self.sds.prepare()), workdir=self._workdir(), die_with_parent=True)
        write_pid(self._workdir())  # malla down finds gateways by it: they register no workload
        labels = _labels_text(o.all_labels())
        self.progress(f"starting gateway {o.name}.{o.namespace} at {self.address} (labels {labels})")
        try:
            # Forked before gRPC's threads exist (the SDS server's): gRPC warns about forks after them.
            self.envoy.start()
        except (EnvoyNotFoundError, EnvoyError, OSError) as exc:
            raise AgentError(f"cannot start the gateway's Envoy: {exc}") from exc
        self._start_identity()
        self.credentials.start()
        self.sds.start()
        self.progress(f"metrics at {self.telemetry.start(envoy=self.envoy)}")  # type: ignore[union-attr]
        self._wait_ready(stop or threading.Event())

    def lease(self) -> dict[str, Any]:
        """The gateway's address and xDS node id, from the control plane."""
        o = self.options
        body = {"name": o.name, "namespace": o.namespace, "kind": "router"}
        if o.address != LEASE:
            body["address"] = o.address
        return dict(self._api("POST", "/api/v1/addresses", json=body).json())

    # -- where the control plane is (overridden by malla.agent.remote_gateway.RemoteGatewayAgent) --

    def state_home(self) -> Path | None:
        """The home whose controlplane.json follows the control plane (None: ``self.state`` is fixed)."""
        return self.options.home

    def xds_address(self) -> TcpAddress:
        host, _, port = self.state.xds_address.rpartition(":")
        return TcpAddress(host, int(port))

    def xds_transport_socket(self) -> dict[str, Any] | None:
        """The ADS connection's transport socket (None: plaintext, to the local control plane)."""
        return None

    def _start_identity(self) -> None:
        """The gateway's certificate for Istio mTLS to sidecars (ISTIO_MUTUAL), served with the credentials."""
        o = self.options
        assert self.node_id is not None
        options = IdentityOptions(namespace=o.namespace, service_account=o.account(), join_token=o.join_token)
        self.identity = GatewayIdentity(self.state, options, publish=self.secrets.mesh, node_id=self.node_id,
                                        name=o.name, home=self.state_home())
        try:
            cert = self.identity.start(timeout=o.startup_timeout)
        except IdentityError as exc:
            raise AgentError(str(exc)) from exc
        self.progress(f"mesh certificate {cert.spiffe_id} (serial {cert.serial_hex})")

    def _wait_ready(self, stop: threading.Event) -> None:
        """Envoy's readiness, in short waits so that a signal is not kept waiting for the whole timeout."""
        assert self.envoy is not None
        deadline = time.monotonic() + self.options.startup_timeout
        while not stop.is_set():
            try:
                self.envoy.wait_ready(timeout=0.5)
                return
            except EnvoyError as exc:
                if not self.envoy.running() or time.monotonic() > deadline:
                    raise AgentError(f"the gateway's Envoy did not get its configuration: {exc}") from exc

    def _check_address(self) -> None:
        if self.options.address == LEASE:
            return
        try:
            ipaddress.ip_address(self.options.address)
        except ValueError:
            raise AgentError(
                f"--address {self.options.address!r}: give an IP address such as 127.0.0.1 or 0.0.0.0, "
                f"or '{LEASE}' for a loopback address of the gateway's own"
            ) from None

    def _workdir(self) -> Path:
        assert self.node_id is not None
        return self.options.home / "gateways" / self.node_id.split("~")[2]

    def _bootstrap(self, sds_socket: Path) -> dict[str, Any]:
        o = self.options
        assert self.address is not None and self.node_id is not None
        self.telemetry = WorkloadTelemetry(name=o.name, namespace=o.namespace, labels=o.all_labels(),
                                           service_account=o.account(), address=self.address,
                                           api_url=self.state.api_url)
        proxy = Proxy(
            id=self.node_id, namespace=o.namespace, kind=ProxyKind.ROUTER, labels=o.all_labels(), ip=self.address,
            service_account=o.account(), xds_mode=o.xds_mode, **self.telemetry.prepare(),
        )
        bootstrap = build_bootstrap(
            node_id=self.node_id, node_cluster=f"{o.name}.{o.namespace}", xds_address=self.xds_address(),
            mode=o.xds_mode.value, node_metadata=node_metadata(proxy, workload_name=o.name),
            xds_transport_socket=self.xds_transport_socket(),
        )
        bootstrap["static_resources"]["clusters"].append(_sds_cluster(sds_socket))
        return bootstrap

    # -- while running ------------------------------------------------------------

    def refresh(self) -> None:
        """Read Envoy's listeners; report URLs that appeared or went away and ports it could not bind."""
        assert self.envoy is not None
        try:
            served, errors = describe_listeners(self.envoy.config_dump(resource="dynamic_listeners"))
        except (EnvoyError, OSError, ValueError) as exc:
            log.debug("could not read the gateway's listeners: %s", exc)
            return
        for gone in [s for s in self._served if s not in served]:
            self.announce(f"stopped serving {gone.url}")
        for new in [s for s in served if s not in self._served]:
            self.announce(f"serving {new.url}")
        for name, detail in sorted(errors.items()):
            if self._errors.get(name) != detail:
                self.progress(f"cannot listen on {name}: {_bind_problem(detail)}")
        if self._served and not served:
            self.progress(self._nothing_selected())
        self._served, self._errors = served, errors

    def _nothing_selected(self) -> str:
        return (
            f"no Gateway selects this gateway yet: apply one whose selector matches its labels "
            f"({_labels_text(self.options.all_labels())})"
        )

    def watch(self, stop: threading.Event) -> int:
        """Report listener changes until ``stop``; 1 if Envoy died meanwhile."""
        assert self.envoy is not None
        self.refresh()
        if not self._served and not self._errors:
            self.progress(self._nothing_selected())
        missing = sorted(set(self.options.ports) - {s.port for s in self._served})
        if missing and self._served:
            self.progress(f"no Gateway server uses port(s) {', '.join(map(str, missing))} on this gateway yet")
        while not stop.wait(self.options.poll_seconds):
            if not self.envoy.running():
                self.progress(f"the gateway's Envoy exited (code {self.envoy.returncode})\n{self.envoy.log_tail()}")
                return 1
            self.refresh()
        return 0

    # -- stop -------------------------------------------------------------------

    def stop(self) -> None:
        if self.envoy is not None:
            self.envoy.stop()
        if self.node_id is not None:
            remove_pid(self._workdir())
        self.credentials.stop()  # before the SDS server: nothing is published to a stopped loop
        if self.identity is not None:
            self.identity.stop()
        self.sds.stop()
        if self.telemetry is not None:
            self.telemetry.stop()
        if self._leased and self.address is not None:
            try:
                self._api("DELETE", "/api/v1/addresses", params={"address": self.address})
            except AgentError as exc:
                log.warning("could not release %s: %s", self.address, exc)
            self._leased = False


def _labels_text(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _bind_problem(detail: str) -> str:
    if "address already in use" in detail.lower():
        return f"the port is taken by another gateway or program ({detail.strip()})"
    return detail.strip()


def run_gateway(
    options: GatewayOptions, state: ControlPlaneState, *, progress: Progress = _quiet, announce: Progress = _quiet,
    agent: GatewayAgent | None = None,
) -> int:
    """Run the gateway (`agent`, when given) until SIGINT/SIGTERM; returns the exit status (0 on a clean stop)."""
    if agent is None:
        agent = GatewayAgent(options, state, progress=progress, announce=announce)
    stop = threading.Event()
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda _signum, _frame: stop.set())
    try:
        agent.start(stop)
        return 0 if stop.is_set() else agent.watch(stop)
    finally:
        agent.stop()
        for s, h in previous.items():
            signal.signal(s, h)

