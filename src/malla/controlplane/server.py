"""``malla up``: wire the pieces together and run them until asked to stop.

Threads: the xDS server on its own loop (XdsServerThread), the push loop
(DiscoveryService.run), the HTTP API (uvicorn) and the monitoring endpoint
each on their own; the main thread watches the config directories. Ports
that cannot be bound fail start-up with the port and a way out named.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from google.protobuf import any_pb2
from google.protobuf.json_format import MessageToDict

from malla.config.source import DirectorySource
from malla.config.store import ConfigStore
from malla.controlplane.addresses import AddressPool
from malla.controlplane.api import build_app
from malla.controlplane.citadel import Citadel, CitadelError
from malla.controlplane.home import ControlPlaneState, applied_dir
from malla.controlplane.monitoring import MonitoringServer
from malla.controlplane.remote_agents import AgentApiService
from malla.controlplane.remote_dns import MeshDnsService
from malla.controlplane.zipkin import span_store, with_collector
from malla.discovery.debounce import DebounceSettings
from malla.discovery.service import DiscoveryService
from malla.dns.server import MeshDnsServer
from malla.pilot.generate import Change
from malla.pilot.snapshot import MeshConfig
from malla.xds.cache import SnapshotCache
from malla.xds.runner import XdsServerThread

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The control plane cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class ControlPlaneOptions:
    home: Path
    config_dirs: tuple[Path, ...] = ()
    host: str = "127.0.0.1"
    xds_port: int = 15010
    api_port: int = 20001
    monitoring_port: int = 15014
    dns_port: int = 0  # mesh DNS, UDP and TCP (0: a free port; controlplane.json says which)
    ca_port: int = 15012  # xDS and certificate renewals over mTLS (istiod's 15012)
    ca_join_port: int = 15013  # first certificates, with a join token
    # Where 15012 and 15013 listen (None: `host`); 0.0.0.0 lets agents on other hosts join.
    mtls_host: str | None = None
    # Every sidecar gets its certificate from its agent's SDS server ("sds-grpc"): mTLS by default.
    mesh: MeshConfig = field(
        default_factory=lambda: MeshConfig(enable_auto_mtls=True, default_mtls_mode="PERMISSIVE", sds_cluster="sds-grpc")
    )
    debounce: DebounceSettings = field(default_factory=DebounceSettings)


class ControlPlane:
    def __init__(self, options: ControlPlaneOptions) -> None:
        self.options = options
        self.home = options.home
        self.applied_root = applied_dir(options.home)
        self.store = ConfigStore()
        roots = (*options.config_dirs, self.applied_root)
        self.source = DirectorySource(roots[0], self.store, extra_roots=tuple(roots[1:]))
        self.cache = SnapshotCache()
        self.discovery = DiscoveryService(store=self.store, cache=self.cache, mesh=options.mesh, debounce=options.debounce)
        self.xds = XdsServerThread(
            self.cache,
            tcp=(options.host, options.xds_port),
            on_connect=self.discovery.on_connect,
            on_disconnect=self.discovery.on_disconnect,
            # gRPC sets SO_REUSEPORT by default: a second control plane on the same port
            # would then start and share the proxies with the first one.
            options=(("grpc.so_reuseport", 0),),
        )
        self.addresses = AddressPool(probe_port=options.mesh.outbound_port)
        self.discovery.orphan_listeners.append(self.addresses.release_owner)
        self.started_at = time.time()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._api_server: uvicorn.Server | None = None
        self._monitoring: MonitoringServer | None = None
        self._lock_file: Any = None
        self.state: ControlPlaneState | None = None
        self.dns = MeshDnsServer(lambda: self.discovery.snapshot, host=options.host, port=options.dns_port)
        self.citadel: Citadel | None = None
        self.spans = span_store(options.home)  # the built-in Zipkin collector's traces

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> ControlPlaneState:
        self.home.mkdir(parents=True, exist_ok=True)
        self.applied_root.mkdir(parents=True, exist_ok=True)
        self._lock_home()
        o = self.options
        # Fixed ports are tried with a plain bind first: gRPC's own bind error does not say why.
        for port, what, flag in ((o.xds_port, "xDS", "--xds-port"), (o.monitoring_port, "monitoring", "--monitoring-port")):
            if port:
                _bind(o.host, port, what=what, flag=flag).close()
        api_sock = _bind(o.host, o.api_port, what="the HTTP API", flag="--api-port")
        # Spans go to the collector on the API port unless --zipkin-address named another one.
        self.discovery.mesh = with_collector(self.discovery.mesh, host=o.host, port=api_sock.getsockname()[1])
        self.discovery.request_push(Change(kinds=frozenset({"MeshConfig"})))
        self.source.sync()
        self.discovery.flush()
        try:
            xds_port = self.xds.start()
        except Exception as exc:
            api_sock.close()
            raise StartupError(
                f"cannot serve xDS on {self.options.host}:{self.options.xds_port}: {exc}. Is another control plane "
                "running? Stop it with 'malla down', or choose another port with --xds-port"
            ) from exc
        self._monitoring = MonitoringServer(self, host=self.options.host, port=self.options.monitoring_port)
        try:
            monitoring_port = self._monitoring.start()
        except OSError as exc:
            self.xds.stop()
            api_sock.close()
            raise StartupError(
                f"cannot serve monitoring on {self.options.host}:{self.options.monitoring_port}: {exc.strerror or exc}; "
                "choose another port with --monitoring-port"
            ) from exc
        try:
            self.citadel = Citadel.start(self.home, host=o.host, port=o.ca_port, join_port=o.ca_join_port,
                                         trust_domain=o.mesh.trust_domain, bind_host=o.mtls_host, xds=self.xds,
                                         services=(AgentApiService(self), MeshDnsService(self)))
        except CitadelError as exc:
            self._monitoring.stop()
            self.xds.stop()
            api_sock.close()
            raise StartupError(str(exc)) from exc
        self.discovery.orphan_listeners.append(self.citadel.board.forget)
        try:
            self.dns.start()
        except OSError as exc:
            api_sock.close()
            self.stop()
            raise StartupError(f"cannot serve mesh DNS on {o.host}:{o.dns_port}: {exc.strerror or exc}; choose another dns_port") from exc
        self._spawn("malla-push", lambda: self.discovery.run(self._stop))
        self._start_api(api_sock)
        host = self.options.host
        self.state = ControlPlaneState(
            pid=os.getpid(),
            xds_address=f"{host}:{xds_port}",
            api_url=f"http://{host}:{api_sock.getsockname()[1]}",
            monitoring_url=f"http://{host}:{monitoring_port}",
            home=str(self.home),
            config_dirs=tuple(str(d) for d in self.options.config_dirs),
            started_at=self.started_at,
            dns_address=self.dns.address,
            ca_address=self.citadel.address,
            ca_join_address=self.citadel.join_address,
            ca_root_cert=str(self.citadel.root_cert_path),
            trust_domain=o.mesh.trust_domain,
        )
        self.state.write(self.home)
        return self.state

    def _lock_home(self) -> None:
        """One control plane per home, even when two ``malla up`` race (the lock dies with the process)."""
        self._lock_file = (self.home / "controlplane.lock").open("a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            self._lock_file = None
            raise StartupError(
                f"a control plane is already running for {self.home}; 'malla down' stops it "
                "(or give another home with --home / MALLA_HOME)"
            ) from None

    def _start_api(self, sock: socket.socket) -> None:
        config = uvicorn.Config(build_app(self), log_level="warning", lifespan="off", access_log=False)
        self._api_server = uvicorn.Server(config)
        self._spawn("malla-api", lambda: self._api_server.run(sockets=[sock]))  # type: ignore[union-attr]

    def _spawn(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def serve_forever(self) -> None:
        """Watch config until SIGINT/SIGTERM or ``request_stop()``; then stop everything."""
        loop = asyncio.new_event_loop()
        stop_async = asyncio.Event()

        def on_signal() -> None:
            self.request_stop()

        async def main() -> None:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, on_signal)
            watcher = asyncio.create_task(self.source.watch(stop_async))
            while not self._stop.is_set():
                await asyncio.sleep(0.1)
            stop_async.set()
            await asyncio.wait_for(watcher, 5)

        try:
            loop.run_until_complete(main())
        finally:
            loop.close()
            self.stop()

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        self.discovery._wake.set()
        if self._api_server is not None:
            self._api_server.should_exit = True
        if self.citadel is not None:  # first: its mTLS port runs on the xDS server's loop
            self.citadel.stop()
        self.xds.stop()
        if self._monitoring is not None:
            self._monitoring.stop()
        self.dns.stop()
        self.spans.close()
        for t in self._threads:
            t.join(5)
        self.addresses.close()
        state_file = self.home / "controlplane.json"
        if self.state is not None and state_file.exists():
            current = ControlPlaneState.read(self.home)
            if current is not None and current.pid == os.getpid():
                state_file.unlink(missing_ok=True)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- views -------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        pushes = self.discovery.pushes
        return {
            "healthy": True,
            "pid": os.getpid(),
            "uptimeSeconds": round(time.time() - self.started_at, 1),
            "addresses": {
                "xds": self.state.xds_address if self.state else None,
                "api": self.state.api_url if self.state else None,
                "monitoring": self.state.monitoring_url if self.state else None,
                "dns": self.state.dns_address if self.state else None,
                "ca": self.state.ca_address if self.state else None,
                "caJoin": self.state.ca_join_address if self.state else None,
            },
            "configDirs": [str(d) for d in self.options.config_dirs],
            "resources": len(self.store),
            "configProblems": sum(len(v) for v in self.source.problems.values()),
            "caProblem": self.citadel.problem if self.citadel is not None else None,
            "workloads": len(self.discovery.workloads()),
            "proxies": self.proxy_status(),
            "meshVersion": self.discovery.snapshot.version,
            "lastPush": (
                {"version": pushes[-1].version, "proxies": pushes[-1].proxies, "ms": round(pushes[-1].seconds * 1e3, 2)}
                if pushes
                else None
            ),
        }

    def proxy_status(self) -> list[dict[str, Any]]:
        try:
            statuses = self.xds.status(timeout=5)
        except (TimeoutError, RuntimeError):
            return []
        out = []
        for s in statuses:
            out.append(
                {
                    "node": s.node_id,
                    "connection": s.connection_id,
                    "mode": s.mode,
                    "envoyVersion": s.envoy_version,
                    "connectedAt": s.connected_at,
                    "snapshotVersion": s.snapshot_version,
                    "problem": self.discovery.rejected_nodes.get(s.node_id),
                    "types": [
                        {
                            "type": t.type_url.rsplit(".", 1)[-1],
                            "typeUrl": t.type_url,
                            "state": str(t.state.value if hasattr(t.state, "value") else t.state),
                            "sentVersion": t.sent_version,
                            "ackedVersion": t.acked_version,
                            "error": t.error,
                            "rejected": list(t.rejected),
                            "responses": t.responses,
                            "nacks": t.nacks,
                        }
                        for t in s.types
                    ],
                }
            )
        return out

    def proxy_config(self, proxy: str) -> dict[str, Any] | None:
        """The resources the control plane holds for a proxy (by node id, or a unique part of it)."""
        ids = self.cache.node_ids()
        matches = [i for i in ids if i == proxy] or [i for i in ids if proxy in i]
        if len(matches) != 1:
            return None
        view = self.cache.get_snapshot(matches[0])
        if view is None:
            return None
        out: dict[str, Any] = {"node": matches[0], "version": view.version, "resources": {}}
        for type_url in view.type_urls():
            items = []
            for name in sorted(view.versions(type_url)):
                res = view.resource(type_url, name)
                if res is not None:
                    items.append(MessageToDict(any_pb2.Any(type_url=res.type_url, value=res.payload)))
            out["resources"][type_url] = items
        return out


def _bind(host: str, port: int, *, what: str, flag: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot serve {what} on {host}:{port}: {exc.strerror}; choose another port with {flag}") from exc
    sock.listen(128)
    return sock
