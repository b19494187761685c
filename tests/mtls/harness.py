"""A mesh for the identity tests: the real control plane in this process, real ``malla run`` workloads.

The control plane listens on ports the kernel picks, the CA's two ports
included, in a temporary home; tests can stop its CA (``cp.citadel``) while
everything else keeps running. Workloads are ``python -m malla run``
subprocesses (started without ``preexec_fn``: this process runs gRPC
threads) running ``tests/e2e/upstream.py``, which answers with the headers
it received, so a test sees the ``x-forwarded-client-cert`` its caller's
sidecar caused. CLI commands (``malla status``, ``apply``, ``token create``,
...) run as subprocesses against the same home. Every wait is a bounded poll.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from malla.controlplane.server import ControlPlane, ControlPlaneOptions
from malla.pilot.snapshot import MeshSnapshot
from tests.e2e.mesh import UPSTREAM, HttpClient, Reply, wait_for

PYTHON = sys.executable


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and not k.startswith("MALLA_")}
    return env | extra


def xfcc(reply: Reply) -> str:
    """The ``x-forwarded-client-cert`` header the app received (upstream.py echoes its headers)."""
    return str(reply.json()["headers"].get("x-forwarded-client-cert", ""))


@dataclass
class Workload:
    """A ``malla run`` process and what its app wrote about itself (address, port)."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    info_path: Path
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return str(self.info["address"])

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def http(self) -> HttpClient:
        """A client that uses this workload's sidecar as its HTTP proxy, as its app would."""
        return HttpClient(self.address)


class Mesh:
    """One control plane (in this process) and the workloads and commands run against it."""

    def __init__(self, home: Path, workdir: Path) -> None:
        self.home, self.workdir = home, workdir
        self.cp = ControlPlane(ControlPlaneOptions(home=home, xds_port=0, api_port=0, monitoring_port=0,
                                                   ca_port=0, ca_join_port=0))
        self.state = self.cp.start()
        self.workloads: list[Workload] = []

    # -- commands ------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 60.0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PYTHON, "-m", "malla", *args], cwd=self.workdir, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL,
                              env=env or clean_env(MALLA_HOME=str(self.home)))

    def cli_json(self, *args: str) -> Any:
        done = self.cli(*args, "-o", "json")
        assert done.returncode == 0, f"malla {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
        return json.loads(done.stdout)

    def apply(self, yaml_text: str, *, namespace: str) -> None:
        """``malla apply -n NAMESPACE -f FILE``, then wait until every proxy has the result."""
        path = self.workdir / f"apply-{len(list(self.workdir.glob('apply-*')))}.yaml"
        path.write_text(yaml_text)
        done = self.cli("apply", "-n", namespace, "-f", str(path))
        assert done.returncode == 0, f"malla apply failed:\n{done.stdout}{done.stderr}"
        self.settle()

    # -- workloads -----------------------------------------------------------------

    def run(self, name: str, *args: str, namespace: str, app: tuple[str, ...] = (),
            env: dict[str, str] | None = None) -> Workload:
        """``malla run --name NAME -n NAMESPACE ARGS -- upstream.py --info FILE APP`` in the background."""
        stem = self.workdir / f"{name}-{len(self.workloads)}"
        info, log = stem.with_suffix(".json"), stem.with_suffix(".log")
        command = [PYTHON, "-m", "malla", "run", "--name", name, "-n", namespace, *args, "--",
                   PYTHON, str(UPSTREAM), "--info", str(info), *app]
        with log.open("wb") as out:
            proc = subprocess.Popen(command, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL,
                                    env=clean_env(MALLA_HOME=str(self.home), **(env or {})))
        workload = Workload(name, proc, log, info)
        self.workloads.append(workload)
        return workload

    def server(self, name: str, *args: str, namespace: str) -> Workload:
        return self.joined(self.run(name, "-p", "9080/http", *args, namespace=namespace))

    def client(self, name: str, *args: str, namespace: str) -> Workload:
        return self.joined(self.run(name, *args, namespace=namespace, app=("--client",)))

    def joined(self, workload: Workload, *, timeout: float = 60.0) -> Workload:
        """Once its app runs (so its sidecar was ready), it registered if it serves, and proxies are in sync."""
        def started() -> str:
            if workload.proc.poll() is not None:
                raise AssertionError(f"malla run --name {workload.name} exited {workload.proc.returncode}:\n"
                                     f"{workload.output()}")
            return workload.info_path.read_text() if workload.info_path.exists() else ""

        workload.info = json.loads(wait_for(started, bool, timeout=timeout, what=f"{workload.name} to start"))
        if workload.info["port"]:
            wait_for(lambda: {w["address"] for w in self._get("/api/v1/workloads")["items"]},
                     lambda seen: workload.address in seen, timeout=timeout, what=f"{workload.name} to register")
        self.settle()
        return workload

    # -- what the control plane says ---------------------------------------------------

    def _get(self, path: str) -> Any:
        return httpx.get(self.state.api_url + path, timeout=10, trust_env=False).json()

    def identities(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/identities")["items"])

    def identity(self, workload: Workload) -> dict[str, Any]:
        found = [i for i in self.identities() if i["nodeId"].split("~")[1] == workload.address]
        assert len(found) == 1, f"expected one certificate report for {workload.name}: {found}"
        return found[0]

    def settle(self, *, timeout: float = 30.0) -> None:
        """The control plane pushed what its inputs say now, and every connected proxy ACKed it."""
        def versions() -> tuple[str | None, str]:
            d = self.cp.discovery
            now = MeshSnapshot.build(configs=self.cp.store.list(), kube_services=[],
                                     workloads=list(d.workloads().values()), mesh=d.mesh)
            return (d.pushes[-1].version if d.pushes else None), now.version

        wait_for(versions, lambda v: v[0] == v[1], timeout=timeout, what="the control plane to push")
        wait_for(lambda: self._get("/api/v1/proxies")["items"], _all_synced, timeout=timeout,
                 what="every proxy to be SYNCED")

    # -- teardown ----------------------------------------------------------------------

    def stop_workloads(self) -> None:
        for workload in self.workloads:
            if workload.proc.poll() is None:
                workload.proc.send_signal(signal.SIGTERM)
        for workload in self.workloads:
            try:
                workload.proc.wait(20)
            except subprocess.TimeoutExpired:
                workload.proc.kill()
                workload.proc.wait()
        self.workloads = []

    def close(self) -> None:
        try:
            self.stop_workloads()
        finally:
            self.cp.stop()


def _all_synced(rows: list[dict[str, Any]]) -> bool:
    return all(t["state"] == "SYNCED" for row in rows for t in row["types"]) and all(row["types"] for row in rows)


def plaintext_get(address: str, port: int, *, timeout: float = 5.0) -> int | str:
    """GET / straight to a workload's inbound port, bypassing every sidecar but its own: the status, or
    why no HTTP answer came (the connection was refused, reset or closed)."""
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"host": "reviews"})
        return conn.getresponse().status
    except (ConnectionError, http.client.HTTPException, OSError) as exc:
        return f"no answer: {type(exc).__name__}"
    finally:
        conn.close()
