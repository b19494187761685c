"""``malla run --transparent``: the workload in a network namespace of its own, its traffic captured.

What Istio's CNI plugin and init container do for a pod, for a process on
a Linux host (as root). The agent itself stays in the root namespace; in
the order it happens:

1. Check for root, ``ip``, ``iptables-restore``, ``setpriv``; clean up after
   agents that were killed (``netns.sweep_stale``).
2. Create the namespace (``netns.create``): a veth pair with a /30, the
   capture rules, ``resolv.conf`` pointing at the agent's DNS relay with
   Kubernetes' search list. The workload's address is its namespace
   address, which the root namespace reaches through the veth.
3. Start the relays (``relay``): xDS for the sidecar (127.0.0.1:15010 in the
   namespace), the sidecar's egress to the host and other workloads, DNS
   for the app (with its namespace) and for the sidecar (host answers only).
4. Start Envoy inside the namespace as uid/gid 1337 (the capture rules let
   its own traffic through), its files and admin socket in a directory that
   uid owns under ``/run/malla/NAMESPACE``, with ``CaptureMode.TRANSPARENT``
   so the control plane gives it Istio's capture layout (15001/15006).
5. Start the app inside the namespace with no proxy settings, on the ports
   it declares (the namespace is its own port space): ``http://reviews:9080/``
   works because mesh DNS answers the name and the rules capture the call.
6. On exit, after the usual withdraw/stop: relays closed, namespace, veth,
   resolver files and run directory deleted.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

from malla.agent import netns
from malla.agent.ports import PortSpec
from malla.agent.relay import Relays
from malla.agent.run import Agent, AgentError, Proxy
from malla.dns.hints import Hints
from malla.envoy.bootstrap import TcpAddress
from malla.envoy.process import EnvoyProcess
from malla.pilot.services import DEFAULT_DOMAIN
from malla.pilot.snapshot import CaptureMode

log = logging.getLogger(__name__)

_NETNS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def default_netns_name(workload: str) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", workload.lower()).strip("-")[:40] or "workload"
    return f"malla-{cleaned}-{secrets.token_hex(3)}"


def check_netns_name(name: str) -> None:
    if not _NETNS_NAME.match(name):
        raise ValueError(f"--netns {name!r}: use letters, digits, '.', '_' and '-' (at most 63), starting with a letter or digit")


class NamespacedEnvoy(EnvoyProcess):
    """An Envoy started inside a namespace as the proxy's uid (``ip netns exec`` + ``setpriv``)."""

    def __init__(self, config: Any, *, netns_name: str, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.netns_name = netns_name

    def command(self) -> list[str]:
        args = super().command()
        if Path(args[0]).name == "setpriv":  # the parent-death wrapper: ours sets it after the uid change
            args = args[args.index("--") + 1 :]
        return [*netns.exec_prefix(self.netns_name, as_proxy=True), "--", *args]


class TransparentAgent(Agent):
    capture = CaptureMode.TRANSPARENT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.link: netns.Link | None = None
        self.run_dir: Path | None = None
        self.relays: Relays | None = None
        self._created = False  # the namespace is ours to delete

    @property
    def netns_name(self) -> str:
        assert self.link is not None
        return self.link.netns

    # -- hooks of Agent -----------------------------------------------------------------

    def lease(self) -> dict[str, Any]:
        """Set up the namespace first: the workload's address is its namespace address."""
        o = self.options
        link = self._allocate_link()
        body = {"name": o.name, "namespace": o.namespace, "address": link.ns_address}
        lease = dict(self._api("POST", "/api/v1/addresses", json=body).json())
        self._open_namespace()
        return lease

    def _allocate_link(self) -> netns.Link:
        o = self.options
        name = o.netns or default_netns_name(o.name)
        try:
            netns.check_requirements()
            for stale in netns.sweep_stale():
                log.warning("deleted network namespace %s, left behind by an agent that was killed", stale)
            if netns.netns_exists(name):
                raise AgentError(f"network namespace {name} exists already; choose another --netns")
            self.link = link = netns.allocate_link(name)
        except netns.NetnsError as exc:
            raise AgentError(str(exc)) from exc
        return link

    def _open_namespace(self) -> None:
        """The namespace, its rules and the relays (malla.agent.remote_transparent calls it too)."""
        assert self.link is not None
        link = self.link
        self._create_namespace()
        self._start_relays()
        self.progress(
            f"network namespace {link.netns}: {self.options.name} at {link.ns_address}, "
            f"host side {link.host_address} ({link.host_interface})"
        )

    def app_port(self, spec: PortSpec) -> int:
        return spec.port  # the namespace is the app's own port space

    def proxy_owner(self) -> tuple[int, int]:
        return netns.PROXY_UID, netns.PROXY_GID

    def xds_address(self) -> TcpAddress:
        return TcpAddress("127.0.0.1", netns.XDS_RELAY_PORT)

    def envoy_process(self, bootstrap: dict[str, Any], *, workdir: Path) -> EnvoyProcess:
        assert self.run_dir is not None
        # Admin on a socket in the run directory: the agent, in the root namespace, cannot reach
        # the namespace's loopback, and uid 1337 can write nowhere else the agent can read.
        bootstrap["admin"] = {"address": {"pipe": {"path": str(self.run_dir / "admin.sock")}}}
        self._grant_proxy_telemetry()
        return NamespacedEnvoy(
            bootstrap, workdir=self.run_dir, die_with_parent=True, netns_name=self.netns_name
        )

    def app_command(self) -> list[str]:
        assert self.workload is not None
        command = list(self.options.command)
        if shutil.which(command[0], path=self.workload.env.get("PATH")) is None:
            raise FileNotFoundError(errno.ENOENT, "command not found", command[0])
        return [*netns.exec_prefix(self.netns_name), *command]

    def _app_env(self, address: str, app_ports: dict[int, int], proxy: Proxy) -> dict[str, str]:
        o = self.options
        # No proxy variables: the capture rules do their job. One inherited from the shell would
        # name an address of the root namespace, which the app cannot reach.
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env.update(
            {
                "MALLA_NAME": o.name,
                "MALLA_NAMESPACE": o.namespace,
                "MALLA_ADDRESS": address,
                "MALLA_NETNS": self.netns_name,
                "MALLA_SERVICE_ACCOUNT": proxy.service_account,
                "MALLA_LABELS": ",".join(f"{k}={v}" for k, v in sorted(self.labels().items())),
            }
        )
        if o.version:
            env["MALLA_VERSION"] = o.version
        if app_ports:
            env["PORT"] = str(o.ports[0].port)
            env["MALLA_PORTS"] = ",".join(f"{p}={a}" for p, a in app_ports.items())
        return env

    def start_app(self) -> subprocess.Popen[bytes] | None:
        app = super().start_app()
        self._grant_proxy_telemetry()  # the access-log socket exists now
        return app

    def _answers(self, port: int) -> bool:
        """Is the app listening inside the namespace (and, with --ready-path, answering)?"""
        try:
            with netns.connect(self.netns_name, "127.0.0.1", port, timeout=1.0) as sock:
                if not self.options.ready_path:
                    return True
                return _http_status(sock, self.options.ready_path) < 500
        except OSError:
            return False

    def shutdown(self) -> None:
        try:
            super().shutdown()
        finally:
            self._teardown()

    # -- the namespace ------------------------------------------------------------------------

    def _create_namespace(self) -> None:
        assert self.link is not None
        o, link = self.options, self.link
        run_dir = netns.RUN_DIR / link.netns
        try:
            netns.RUN_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
            run_dir.mkdir(mode=0o700)
            self.run_dir = run_dir  # ours from here on: removed at exit
            os.chown(run_dir, netns.PROXY_UID, netns.PROXY_GID)
            netns.write_owner(link, run_dir=run_dir)
            netns.create(
                link,
                hosts=netns.hosts_file(ns_address=link.ns_address, hostname=o.name),
                resolv_conf=netns.resolv_conf(namespace=o.namespace, domain=DEFAULT_DOMAIN),
                rules=netns.capture_rules(),
            )
            self._created = True
        except FileExistsError as exc:
            raise AgentError(f"{exc.filename} exists: network namespace {link.netns} is in use; choose another --netns") from exc
        except (netns.NetnsError, OSError) as exc:
            raise AgentError(f"cannot set up network namespace {link.netns}: {exc}") from exc

    def _start_relays(self) -> None:
        dns = _dns_address(self.state)
        host, _, port = self.state.xds_address.rpartition(":")
        ns = self.netns_name
        self.relays = relays = Relays(ns)
        try:
            relays.tcp(netns.listen(ns, "127.0.0.1", netns.XDS_RELAY_PORT), target=(host, int(port)))
            relays.tcp(netns.listen(ns, "127.0.0.1", netns.EGRESS_RELAY_PORT), target=None)
            for address, port_, hints in (
                (netns.APP_NAMESERVER, 53, Hints(namespace=self.options.namespace)),
                ("127.0.0.1", netns.PROXY_DNS_PORT, Hints(upstream_only=True)),
            ):
                relays.dns(
                    udp=netns.listen(ns, address, port_, kind=socket.SOCK_DGRAM),
                    tcp=netns.listen(ns, address, port_),
                    upstream=dns,
                    hints=hints,
                )
        except netns.NetnsError as exc:
            raise AgentError(str(exc)) from exc

    def _grant_proxy_telemetry(self) -> None:
        """Envoy runs as uid 1337: let it reach the agent's access-log socket (telemetry)."""
        als = getattr(getattr(self.telemetry, "als", None), "socket_path", None)
        for path in (als.parent, als) if als is not None else ():
            try:
                os.chown(path, netns.PROXY_UID, netns.PROXY_GID)
            except OSError:
                pass  # not created yet

    def _teardown(self) -> None:
        if self.relays is not None:
            self.relays.close()
            self.relays = None
        if self.link is not None:
            self._keep_envoy_log()
            if self._created:
                for problem in netns.delete(self.link):
                    log.warning("cleaning up network namespace %s: %s", self.link.netns, problem)
            self.link.release()
            self.link = None
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None

    def _keep_envoy_log(self) -> None:
        """The sidecar's log outlives the run directory, in the home as explicit workloads' do."""
        w = self.workload
        if w is None or self.run_dir is None:
            return
        target = self.options.home / "workloads" / w.node_id.split("~")[2]
        try:
            target.mkdir(parents=True, exist_ok=True)
            for name in ("envoy.log", "envoy.out"):
                if (self.run_dir / name).exists():
                    shutil.copy(self.run_dir / name, target / name)
        except OSError as exc:
            log.debug("could not keep the sidecar's log: %s", exc)


def _dns_address(state: Any) -> tuple[str, int]:
    address = getattr(state, "dns_address", "") or ""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise AgentError(
            f"the control plane at {state.api_url} serves no mesh DNS, which --transparent needs; "
            "restart it ('malla down', 'malla up') with this version of malla"
        )
    return host, int(port)


def _http_status(sock: socket.socket, path: str) -> int:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    line = sock.makefile("rb").readline(1024).decode("latin-1").split()
    return int(line[1]) if len(line) >= 2 and line[1].isdigit() else 599
