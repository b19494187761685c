"""``malla run``: a workload with its own sidecar, pilot-agent's job for a process on a host.

Theory of operation, in the order it happens:

1. Ask the control plane for this workload's identity on the host: a
   loopback address of its own and an xDS node id.
2. Pick a free local port per declared service port for the app, get the
   workload's SPIFFE certificate from the CA and serve it over SDS
   (``malla.agent.workload_identity``; renewed at half-life), render the
   Envoy bootstrap (node metadata describes the proxy, see
   ``malla.discovery.proxies``) and start Envoy. Its bootstrap has
   ``initial_fetch_timeout: 0``, so Envoy is ready only once it has its
   config: wait for that *before* starting the app.
3. Start the app with ``PORT`` (and ``MALLA_*``) set and the standard proxy
   variables pointing at the sidecar's outbound listener, so plain HTTP to
   ``http://reviews:9080/`` goes through the mesh with no code change.
4. When the app answers (TCP connect, or ``--ready-path`` over HTTP),
   register the workload: only now does it receive traffic.
5. On SIGINT/SIGTERM: withdraw the endpoint first, give the mesh a moment
   to stop sending (``drain``), then pass the signal to the app. When the
   app exits: deregister, stop Envoy, release the address, and exit with
   the app's exit status (128+N when a signal N ended it).

With ``--transparent`` the same steps run with the workload in a network
namespace of its own and its traffic captured: ``malla.agent.transparent``
overrides the hooks below (``lease``, ``app_port``, ``xds_address``,
``envoy_process``, ``app_command``).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from malla.agent.membership import keep_registered
from malla.agent.supervise import supervise_sidecar
from malla.agent.ports import PortSpec, app_port
from malla.agent.sds import sds_cluster
from malla.agent.workload_identity import IdentityError, IdentityOptions, SidecarIdentity
from malla.controlplane.home import ControlPlaneState
from malla.discovery.proxies import node_metadata
from malla.envoy.binary import EnvoyNotFoundError
from malla.envoy.bootstrap import TcpAddress, build_bootstrap
from malla.envoy.process import EnvoyError, EnvoyProcess
from malla.pilot.snapshot import CaptureMode, InboundPort, Proxy, XdsMode
from malla.telemetry.workload import WorkloadTelemetry

log = logging.getLogger(__name__)

class AgentError(RuntimeError):
    """The workload could not join the mesh; the message says why."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class RunOptions:
    name: str
    command: tuple[str, ...]
    home: Path
    namespace: str = "default"
    version: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    service_account: str | None = None
    ports: tuple[PortSpec, ...] = ()
    ready_path: str | None = None
    xds_mode: XdsMode = XdsMode.SOTW
    startup_timeout: float = 30.0
    drain_seconds: float = 1.0
    stop_timeout: float = 10.0
    transparent: bool = False  # own network namespace with capture rules (malla.agent.transparent)
    netns: str | None = None  # the namespace's name with --transparent (default: malla-NAME-<6 random hex>)
    cert_ttl: float | None = None  # the workload certificate's lifetime, in seconds (None: the CA's, 24 h)
    join_token: str | None = None  # None: minted from the control plane's token secret (same host)


@dataclass
class Workload:
    """What the agent holds while the workload runs."""

    address: str
    node_id: str
    app_ports: dict[int, int]
    envoy: EnvoyProcess
    env: dict[str, str]
    registered_key: str | None = None


Progress = Callable[[str], None]


class Agent:
    capture = CaptureMode.EXPLICIT  # what the sidecar's Proxy says (TransparentAgent: TRANSPARENT)

    def __init__(self, options: RunOptions, state: ControlPlaneState, *, progress: Progress = lambda _m: None) -> None:
        self.options = options
        self.state = state
        self.progress = progress
        self.workload: Workload | None = None
        self.telemetry: WorkloadTelemetry | None = None  # Istio metrics: access logs in, :15020 out
        self.identity: SidecarIdentity | None = None  # SPIFFE certificate, rotated, served over SDS
        self._app: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self.sidecar_failed: str | None = None  # why the supervisor stopped the workload
        self.stop_signal: int | None = None
        # Held while the app starts or the workload registers, so a signal never
        # slips between "is it stopping?" and the action (see on_signal).
        self._lock = threading.Lock()

    # -- control plane calls ----------------------------------------------------

    def _api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return httpx.request(method, self.state.api_url + path, timeout=10, trust_env=False, **kwargs)
        except httpx.HTTPError as exc:
            raise AgentError(f"the control plane at {self.state.api_url} did not answer: {exc}") from exc

    def labels(self) -> dict[str, str]:
        labels = {"app": self.options.name, **self.options.labels}
        if self.options.version:
            labels["version"] = self.options.version
        return labels

    # -- start ----------------------------------------------------------------

    def start_sidecar(self) -> Workload:
        o = self.options
        lease = self.lease()
        address, node_id = lease["address"], lease["nodeId"]
        app_ports = {p.port: self.app_port(p) for p in o.ports}
        self.telemetry = WorkloadTelemetry(name=o.name, namespace=o.namespace, labels=self.labels(), address=address,
                                           service_account=o.service_account or o.name, api_url=self.state.api_url)
        proxy = Proxy(
            id=node_id, namespace=o.namespace, labels=self.labels(), ip=address, app_address="127.0.0.1",
            service_account=o.service_account or o.name,
            inbound=tuple(InboundPort(port=p.port, app_port=app_ports[p.port], name=p.name, protocol=p.protocol) for p in o.ports),
            xds_mode=o.xds_mode, capture=self.capture, **self.telemetry.prepare(),
        )
        bootstrap = build_bootstrap(
            node_id=node_id, node_cluster=f"{o.name}.{o.namespace}", xds_address=self.xds_address(),
            mode=o.xds_mode.value, node_metadata=node_metadata(proxy, workload_name=o.name),
            xds_transport_socket=self.xds_transport_socket(),
        )
        self.identity = SidecarIdentity(self.state, IdentityOptions(
            namespace=o.namespace, service_account=proxy.service_account, cert_ttl=o.cert_ttl, join_token=o.join_token,
        ), node_id=node_id, name=o.name, home=self.state_home())
        bootstrap["static_resources"]["clusters"].append(sds_cluster(self.identity.socket_path))
        workdir = self.options.home / "workloads" / node_id.split("~")[2]
        envoy = self.envoy_process(bootstrap, workdir=workdir)
        self.progress(f"starting sidecar for {o.name} at {address}")
        self.workload = Workload(address, node_id, app_ports, envoy, self._app_env(address, app_ports, proxy))
        self._start_identity()
        try:
            envoy.start()
        except (EnvoyNotFoundError, EnvoyError, OSError) as exc:
            raise AgentError(f"cannot start the sidecar: {exc}") from exc
        try:
            envoy.wait_ready(timeout=o.startup_timeout)
        except EnvoyError as exc:
            raise AgentError(f"the sidecar did not get its configuration: {exc}") from exc
        self.progress("sidecar ready (configured by the control plane)")
        return self.workload

    def _start_identity(self) -> None:
        """The workload's first certificate, served over SDS before Envoy starts, then rotated."""
        assert self.identity is not None
        try:
            cert = self.identity.start(timeout=self.options.startup_timeout, owner=self.proxy_owner())
        except IdentityError as exc:
            raise AgentError(str(exc)) from exc
        self.progress(f"certificate for {cert.spiffe_id} (serial {cert.serial_hex}), rotated by the agent")

    # -- what a capture mode changes (overridden by malla.agent.transparent.TransparentAgent) --

    def proxy_owner(self) -> tuple[int, int] | None:
        """The uid and gid Envoy runs as, when not the agent's: its SDS socket is handed to them."""
        return None

    def lease(self) -> dict[str, Any]:
        """This workload's address (a loopback address of its own) and xDS node id."""
        o = self.options
        return dict(self._api("POST", "/api/v1/addresses", json={"name": o.name, "namespace": o.namespace}).json())

    def app_port(self, spec: PortSpec) -> int:
        return app_port()

    # -- where the control plane is (overridden by malla.agent.remote.RemoteAgent) --

    def state_home(self) -> Path | None:
        """The home whose controlplane.json follows the control plane (None: ``self.state`` is fixed)."""
        return self.options.home

    def xds_transport_socket(self) -> dict[str, Any] | None:
        """The ADS connection's transport socket (None: plaintext, to the local control plane)."""
        return None

    def xds_address(self) -> TcpAddress:
        host, _, port = self.state.xds_address.rpartition(":")
        return TcpAddress(host, int(port))

    def envoy_process(self, bootstrap: dict[str, Any], *, workdir: Path) -> EnvoyProcess:
        return EnvoyProcess(bootstrap, workdir=workdir, die_with_parent=True)

    def app_command(self) -> list[str]:
        return list(self.options.command)

    def _app_env(self, address: str, app_ports: dict[int, int], proxy: Proxy) -> dict[str, str]:
        o = self.options
        outbound = f"http://{address}:{proxy.outbound_port or 15001}"
        env = dict(os.environ)
        env.update(
            {
                "MALLA_NAME": o.name,
                "MALLA_NAMESPACE": o.namespace,
                "MALLA_ADDRESS": address,
                "MALLA_SIDECAR": outbound,
                "MALLA_SERVICE_ACCOUNT": proxy.service_account,
                "MALLA_LABELS": ",".join(f"{k}={v}" for k, v in sorted(self.labels().items())),
                # The standard proxy variables: Python, curl, Go, Node's agents and most clients honour them.
                "HTTP_PROXY": outbound,
                "http_proxy": outbound,
                "NO_PROXY": "localhost,127.0.0.1,::1",
                "no_proxy": "localhost,127.0.0.1,::1",
            }
        )
        if o.version:
            env["MALLA_VERSION"] = o.version
        if app_ports:
            first = o.ports[0].port
            env["PORT"] = str(app_ports[first])
            env["MALLA_PORTS"] = ",".join(f"{p}={a}" for p, a in app_ports.items())
        return env

    def start_app(self) -> subprocess.Popen[bytes] | None:
        """Start the command, unless a stop signal came first (then None)."""
        assert self.workload is not None
        with self._lock:
            if self._stopping.is_set():
                return None
            try:
                self._app = _spawn_app(self.app_command(), env=self.workload.env)
            except OSError as exc:
                # A shell's statuses: 127 not found, 126 found but not runnable.
                code = 127 if isinstance(exc, FileNotFoundError) else 126
                raise AgentError(f"cannot start {self.options.command[0]!r}: {exc.strerror}", exit_code=code) from exc
        if self.telemetry is not None:  # after the forks: its gRPC server must not run across one
            self.progress(f"metrics at {self.telemetry.start(envoy=self.workload.envoy)}")
        return self._app

    def wait_app_ready(self) -> bool:
        """True once every app port answers; False if the app exited first."""
        assert self.workload is not None and self._app is not None
        deadline = time.monotonic() + self.options.startup_timeout
        pending = set(self.workload.app_ports.values())
        while pending:
            if self._app.poll() is not None or self._stopping.is_set():
                return False
            for port in list(pending):
                if self._answers(port):
                    pending.discard(port)
            if time.monotonic() > deadline:
                raise AgentError(
                    f"the app did not listen on PORT {sorted(pending)} within {self.options.startup_timeout:.0f} s; "
                    "it must listen on the port given in $PORT"
                )
            time.sleep(0.05)
        return True

    def _answers(self, port: int) -> bool:
        if self.options.ready_path:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}{self.options.ready_path}", timeout=1, trust_env=False)
                return r.status_code < 500
            except httpx.HTTPError:
                return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    @property
    def stopping(self) -> threading.Event:
        return self._stopping

    def register(self) -> None:
        assert self.workload is not None
        o = self.options
        body = {
            "name": o.name, "namespace": o.namespace, "labels": self.labels(), "address": self.workload.address,
            "ports": {p.name: p.port for p in o.ports}, "serviceAccount": o.service_account or o.name,
            "nodeId": self.workload.node_id,
            "agentPid": os.getpid(),  # lets `malla down` stop the workloads of its mesh
        }
        with self._lock:
            if self._stopping.is_set():
                return
            self.workload.registered_key = self._api("POST", "/api/v1/workloads", json=body).json()["key"]
        self.progress(f"{o.name} joined the mesh at {self.workload.address} ports {[p.port for p in o.ports]}")

    # -- stop -------------------------------------------------------------------

    def deregister(self) -> None:
        w = self.workload
        if w is None or w.registered_key is None:
            return
        key, w.registered_key = w.registered_key, None
        try:
            self._api("DELETE", "/api/v1/workloads", params={"key": key})
        except AgentError as exc:
            log.warning("could not withdraw the endpoint: %s", exc)

    def on_signal(self, signum: int) -> None:
        """Withdraw first, drain, then pass the signal on (runs on its own thread)."""
        with self._lock:
            first = not self._stopping.is_set()
            self._stopping.set()
            if first:
                self.stop_signal = signum
            registered = self.workload is not None and self.workload.registered_key is not None
        if first and registered:
            self.deregister()
            time.sleep(self.options.drain_seconds)
        if self._app is not None and self._app.poll() is None:
            self._app.send_signal(signum)

    def wait_app(self) -> int:
        if self._app is None:  # stopped by a signal before the app started
            return 128 + (self.stop_signal or signal.SIGTERM)
        code = self._app.wait()
        return 128 - code if code < 0 else code

    def shutdown(self) -> None:
        if self._app is not None and self._app.poll() is None:
            self._app.terminate()
            try:
                self._app.wait(self.options.stop_timeout)
            except subprocess.TimeoutExpired:
                self._app.kill()
                self._app.wait()
        self.deregister()
        if self.telemetry is not None:
            self.telemetry.stop()
        w = self.workload
        if w is None:
            return
        w.envoy.stop()
        if self.identity is not None:
            self.identity.stop()
        try:
            self._api("DELETE", "/api/v1/addresses", params={"address": w.address})
        except AgentError:
            pass


def run(options: RunOptions, state: ControlPlaneState, *, progress: Progress = lambda _m: None,
        agent: Agent | None = None) -> int:
    """Run the workload to completion (with `agent`, when given); returns the app's exit status."""
    if agent is None:
        agent = _make_agent(options, state, progress=progress)
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, _frame: Any) -> None:
        threading.Thread(target=agent.on_signal, args=(signum,), daemon=True).start()

    for s in previous:
        signal.signal(s, handler)
    try:
        agent.start_sidecar()
        supervise_sidecar(agent)
        if agent.start_app() is not None and options.ports and agent.wait_app_ready():
            agent.register()
            keep_registered(agent, home=agent.state_home())
        code = agent.wait_app()
        # A workload stopped because its sidecar kept crashing has failed, however its app exited.
        return 1 if agent.sidecar_failed and code == 0 else code
    finally:
        agent.shutdown()
        for s, h in previous.items():
            signal.signal(s, h)


def _make_agent(options: RunOptions, state: ControlPlaneState, *, progress: Progress) -> Agent:
    if options.transparent:
        from malla.agent.transparent import TransparentAgent  # it imports this module

        return TransparentAgent(options, state, progress=progress)
    return Agent(options, state, progress=progress)


def _spawn_app(command: list[str], *, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start the app so that it gets SIGTERM when the agent dies.

    setpriv sets the parent-death signal without Python code between fork and
    exec (unsafe once gRPC threads run in the agent); preexec_fn is the fallback.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return subprocess.Popen(command, env=env, preexec_fn=_term_with_parent)
    program = shutil.which(command[0], path=env.get("PATH"))
    if program is None:
        raise FileNotFoundError(errno.ENOENT, "command not found", command[0])
    if not os.access(program, os.X_OK):
        raise PermissionError(errno.EACCES, "permission denied", command[0])
    return subprocess.Popen([setpriv, "--pdeathsig", "TERM", "--", program, *command[1:]], env=env)


def _term_with_parent() -> None:
    """In the app's child before exec: SIGTERM when the agent dies (Linux).

    An agent killed with SIGKILL takes its sidecar along (see EnvoyProcess); the
    app, left without a sidecar and withdrawn from the mesh, is told to stop too.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


_PR_SET_PDEATHSIG = 1
