"""The end-to-end harness: real workloads joined through the real agent, traffic through real sidecars.

A ``Mesh`` is one test's slice of a running control plane: its own
namespace and its workloads, each a real agent process (``malla run``'s
``run()``: sidecar ready first, then the app, then registration; stopped by
SIGTERM) running ``tests/e2e/upstream.py``. Client workloads run the same script in client
mode: the test itself sends the traffic through their sidecar, as HTTP
proxy (``http://CLIENT_ADDRESS:15001``) or, for TCP services, by dialling
the client's own address at the service port. Config goes in as Istio YAML
through the HTTP API that ``malla apply`` uses. Every wait is a bounded poll
for a condition.

Agents run as processes of their own, never in the test process: they start
Envoy with a ``preexec_fn`` (die with the parent), and a fork that runs
Python code in a process where gRPC has threads (the control plane here)
aborts now and then (measured: 4-8 of 200 children died of SIGABRT). They
fork from a fork server with no gRPC in it (``agent_main``).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import multiprocessing
import re
import socket
import threading
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from malla.agent.ports import parse_ports
from malla.agent.run import RunOptions
from malla.controlplane.server import ControlPlane
from malla.pilot.snapshot import MeshSnapshot, XdsMode
from tests.e2e.agent_main import run_agent

UPSTREAM = Path(__file__).with_name("upstream.py")
# Agents fork from a server that imported them once (see agent_main).
_AGENTS = multiprocessing.get_context("forkserver")
_AGENTS.set_forkserver_preload(["tests.e2e.agent_main"])
OUTBOUND_PORT = 15001
T = TypeVar("T")


def wait_for(probe: Callable[[], T], accept: Callable[[T], bool], *, timeout: float, what: str,
             interval: float = 0.05) -> T:
    """Poll ``probe`` until ``accept`` says yes; fail naming ``what`` and the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last seen: {value!r}"[:4000])
        time.sleep(interval)


# -- traffic ----------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def version(self) -> str:
        """Which version of the upstream answered (from its JSON body)."""
        return str(self.json()["version"]) if self.status == 200 else f"HTTP {self.status}"


class HttpClient:
    """HTTP through a sidecar used as HTTP proxy, on one keep-alive connection."""

    def __init__(self, address: str, port: int = OUTBOUND_PORT, *, timeout: float = 15.0) -> None:
        self.address, self.port, self.timeout = address, port, timeout
        self._conn: http.client.HTTPConnection | None = None

    def get(self, url: str, *, headers: dict[str, str] | None = None) -> Reply:
        """GET an absolute URL (``http://reviews:9080/``) through the proxy."""
        host = url.split("/")[2]
        for attempt in (1, 2):
            conn = self._conn or http.client.HTTPConnection(self.address, self.port, timeout=self.timeout)
            self._conn = conn
            started = time.perf_counter()
            try:
                conn.request("GET", url, headers={"host": host, **(headers or {})})
                response = conn.getresponse()
                body = response.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                # The proxy closed an idle keep-alive connection: one fresh try.
                self.close()
                if attempt == 2:
                    raise
                continue
            reply = Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body,
                          time.perf_counter() - started)
            if response.will_close:
                self.close()
            return reply
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def tcp_line(address: str, port: int, *, timeout: float = 5.0) -> str:
    """Open a connection, read the one line the TCP upstream sends, close."""
    with socket.create_connection((address, port), timeout=timeout) as sock:
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(256)
            if not chunk:
                break
            data += chunk
    return data.decode().strip()


def shares(values: Iterable[str]) -> dict[str, float]:
    """Each distinct value's share of the whole, in percent."""
    items = list(values)
    counts: dict[str, int] = {}
    for v in items:
        counts[v] = counts.get(v, 0) + 1
    return {k: 100.0 * n / len(items) for k, n in sorted(counts.items())}


# -- workloads ----------------------------------------------------------------------


@dataclass(frozen=True)
class App:
    """An upstream workload: ``malla run --name NAME --version V -p PORT -- upstream.py ARGS``."""

    name: str
    version: str | None = None
    ports: tuple[str, ...] = ("9080/http",)
    args: tuple[str, ...] = ()


CLIENT = App("client", ports=(), args=("--client",))


@dataclass
class Member:
    """A workload run by the agent: its process, mesh address, app port and sidecar."""

    app: App
    proc: multiprocessing.process.BaseProcess
    log: Path
    info_path: Path
    home: Path
    info: dict[str, Any] = field(default_factory=dict)
    node_id: str = ""

    @property
    def address(self) -> str:
        return str(self.info["address"])

    def app_port(self) -> int:
        return int(self.info["port"])

    def app_stats(self) -> dict[str, Any]:
        """What the app saw, asked straight at its own port (not through the mesh)."""
        return httpx.get(f"http://127.0.0.1:{self.app_port()}/_stats", timeout=5, trust_env=False).json()

    def wait_app_requests(self, count: int, *, timeout: float = 10.0) -> dict[str, Any]:
        """The app's stats once it has seen at least ``count`` requests."""
        return wait_for(self.app_stats, lambda s: s["requests"] >= count, timeout=timeout,
                        what=f"the app at {self.address} to see {count} requests")

    def http(self) -> HttpClient:
        """A client using this workload's sidecar as its HTTP proxy, as the app would."""
        return HttpClient(self.address)

    def envoy_stats(self, regex: str) -> dict[str, int]:
        """The sidecar's counters and gauges whose names match ``regex`` (Envoy admin /stats)."""
        token = self.node_id.split("~")[2]
        admin = (self.home / "workloads" / token / "admin-address").read_text().strip()
        body = httpx.get(f"http://{admin}/stats", params={"format": "json", "filter": regex}, timeout=5,
                         trust_env=False).json()
        return {s["name"]: int(s["value"]) for s in body.get("stats", []) if isinstance(s.get("value"), int)}

    def envoy_clusters(self) -> set[str]:
        """The clusters the sidecar has now (Envoy admin /clusters)."""
        token = self.node_id.split("~")[2]
        admin = (self.home / "workloads" / token / "admin-address").read_text().strip()
        body = httpx.get(f"http://{admin}/clusters", params={"format": "json"}, timeout=5, trust_env=False).json()
        return {c["name"] for c in body.get("cluster_statuses", [])}

    def log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return "(no log)"


@dataclass
class Mesh:
    """One test's namespace on a shared control plane, and the workloads it started."""

    cp: ControlPlane
    namespace: str
    mode: XdsMode
    workdir: Path
    members: list[Member] = field(default_factory=list)

    # -- starting and stopping ---------------------------------------------------

    def start(self, *apps: App, clients: int = 0) -> list[Member]:
        """Start workloads (and client workloads) in parallel; return once every proxy is in sync."""
        todo: list[Member] = []
        for app in (*apps, *[CLIENT] * clients):
            member = self._spawn(app)
            todo.append(member)
            self.members.append(member)
        for member in todo:
            self._wait_joined(member)
        self.settle()
        return todo

    def _spawn(self, app: App) -> Member:
        assert self.cp.state is not None
        stem = self.workdir / f"{app.name}-{app.version or 'x'}-{len(self.members)}"
        info = stem.with_suffix(".json")
        tcp = ("--tcp",) if any(p.endswith("/tcp") for p in app.ports) else ()
        options = RunOptions(
            name=app.name, namespace=self.namespace, version=app.version, home=self.cp.home,
            command=(sys.executable, str(UPSTREAM), "--info", str(info), *tcp, *app.args),
            ports=parse_ports(list(app.ports)), xds_mode=self.mode, drain_seconds=0.0,
        )
        log = stem.with_suffix(".log")
        proc = _AGENTS.Process(target=run_agent, args=(options, self.cp.state, str(log)), daemon=False)
        proc.start()
        return Member(app, proc, log, info, self.cp.home)

    def _wait_joined(self, member: Member, *, timeout: float = 30.0) -> None:
        def probe() -> str:
            if member.proc.exitcode is not None:
                raise AssertionError(f"the agent of {member.app.name} exited with {member.proc.exitcode}:\n"
                                     f"{member.log_tail()}")
            return member.info_path.read_text() if member.info_path.exists() else ""

        member.info = json.loads(wait_for(probe, bool, timeout=timeout, what=f"{member.app.name} to start"))
        rows = wait_for(lambda: [p for p in self.proxies() if p["node"].split("~")[1] == member.address],
                        bool, timeout=timeout, what=f"the sidecar of {member.app.name} to connect")
        member.node_id = rows[0]["node"]
        expected = "Delta" if self.mode is XdsMode.DELTA else "SotW"
        assert rows[0]["mode"] == expected, f"{member.node_id} speaks {rows[0]['mode']}, not {expected}"
        if member.app.ports:
            wait_for(lambda: {w["address"] for w in self._api("/api/v1/workloads")["items"]},
                     lambda seen: member.address in seen, timeout=timeout,
                     what=f"{member.app.name} at {member.address} to register")

    def close(self) -> None:
        """Stop every workload as a user would (SIGTERM to ``malla run``) and wait for them to leave."""
        members, self.members = self.members, []
        for member in members:
            if member.proc.exitcode is None:
                member.proc.terminate()
        for member in members:
            member.proc.join(15)
            if member.proc.exitcode is None:
                member.proc.kill()
                member.proc.join()

    # -- config ----------------------------------------------------------------------

    def apply(self, yaml_text: str, *, wait: bool = True) -> dict[str, Any]:
        """``malla apply -n NAMESPACE``, through the control plane's HTTP API; wait until proxies have it."""
        body = self._config("POST", yaml_text)
        if wait:
            self.settle()
        return body

    def delete(self, yaml_text: str) -> dict[str, Any]:
        """``malla delete -n NAMESPACE``; wait until proxies have the result."""
        body = self._config("DELETE", yaml_text)
        self.settle()
        return body

    def _config(self, method: str, yaml_text: str) -> dict[str, Any]:
        assert self.cp.state is not None
        resp = httpx.request(method, self.cp.state.api_url + "/api/v1/config", content=yaml_text.encode(),
                             params={"namespace": self.namespace}, timeout=10, trust_env=False,
                             headers={"content-type": "application/yaml", "x-malla-source": "e2e.yaml"})
        body = resp.json()
        assert resp.status_code == 200 and body["ok"], f"malla apply refused the config: {body}"
        return body

    # -- waiting for the control plane and the proxies --------------------------------

    def settle(self, *, timeout: float = 15.0) -> None:
        """Wait until the control plane pushed what its inputs say now, and every proxy here ACKed it."""
        wait_for(self._versions, lambda v: v[0] == v[1], timeout=timeout,
                 what="the control plane to push its current config and registry")
        for member in self.members:
            wait_for(lambda m=member: self.proxy_status(m), _synced, timeout=timeout,
                     what=f"proxy {member.node_id} to be SYNCED")

    def _versions(self) -> tuple[str | None, str]:
        """(the last pushed mesh version, the version of the config and registry as they are now).

        The API says what was pushed last, not whether a change is still waiting in
        the debouncer: rebuilding the snapshot from the store and the registry does.
        """
        discovery = self.cp.discovery
        pushes = discovery.pushes
        now = MeshSnapshot.build(configs=self.cp.store.list(), kube_services=[],
                                 workloads=list(discovery.workloads().values()), mesh=discovery.mesh)
        return (pushes[-1].version if pushes else None), now.version

    def _api(self, path: str) -> Any:
        assert self.cp.state is not None
        return httpx.get(self.cp.state.api_url + path, timeout=10, trust_env=False).json()

    def proxies(self) -> list[dict[str, Any]]:
        """What ``malla proxy-status`` shows, from the same HTTP API."""
        return list(self._api("/api/v1/proxies")["items"])

    def proxy_status(self, member: Member) -> list[dict[str, Any]]:
        """This member's rows of ``malla proxy-status`` (one per xDS connection)."""
        return [p for p in self.proxies() if p["node"] == member.node_id]

    def type_status(self, member: Member, short: str) -> dict[str, Any]:
        """One type's row (``Cluster``, ``Listener``, ``RouteConfiguration``, ...) of the member's status."""
        rows = self.proxy_status(member)
        assert len(rows) == 1, f"expected one xDS connection for {member.node_id}, found {len(rows)}"
        found = [t for t in rows[0]["types"] if t["type"] == short]
        assert found, f"{member.node_id} has no {short} subscription: {rows[0]['types']}"
        return found[0]


def _synced(rows: list[dict[str, Any]]) -> bool:
    return len(rows) == 1 and bool(rows[0]["types"]) and all(t["state"] == "SYNCED" for t in rows[0]["types"])


def namespace_for(test_name: str) -> str:
    """A DNS-1123 label naming the test: ``test_weighted_split[delta]`` -> ``weighted-split-delta``."""
    text = re.sub(r"[^a-z0-9]+", "-", test_name.lower().removeprefix("test_")).strip("-")
    if len(text) <= 63:
        return text
    digest = hashlib.sha256(test_name.encode()).hexdigest()[:8]
    return f"{text[:54].rstrip('-')}-{digest}"


class Traffic:
    """Requests sent back to back on a thread while the ``with`` block runs; their statuses."""

    def __init__(self, member: Member, url: str) -> None:
        self._http, self._url = member.http(), url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.statuses: list[int] = []
        self.failures: list[Reply] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            reply = self._http.get(self._url)
            self.statuses.append(reply.status)
            if reply.status != 200:
                self.failures.append(reply)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(20)
        self._http.close()
