"""The Bookinfo demo mesh: control plane, six workloads with sidecars, an ingress gateway.

It is what a newcomer runs first, so it does everything a user would do by
hand, with the same commands: the control plane runs in this process, each
Bookinfo service is a ``malla run`` child, the gateway a ``malla gateway``
child, and Istio's own ``bookinfo-gateway.yaml`` and
``destination-rule-all.yaml`` are applied as ``malla apply`` would.
Stopping (Ctrl-C) ends the children first (each withdraws itself and stops
its sidecar), then the control plane: nothing is left running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import httpx

from malla.controlplane.applied import apply_text
from malla.controlplane.server import ControlPlane, ControlPlaneOptions, StartupError

# (service, version) in start order: leaves first, so productpage finds its peers.
SERVICES: tuple[tuple[str, str], ...] = (
    ("details", "v1"),
    ("ratings", "v1"),
    ("reviews", "v1"),
    ("reviews", "v2"),
    ("reviews", "v3"),
    ("productpage", "v1"),
)
BASE_CONFIG = ("bookinfo-gateway.yaml", "destination-rule-all.yaml")


def networking_dir() -> Path:
    return Path(str(resources.files("malla.data").joinpath("samples/bookinfo/networking")))


class DemoError(RuntimeError):
    pass


@dataclass
class Demo:
    home: Path
    gateway_port: int = 8080
    # Istio's port numbers when free; tests set False so that parallel demos never race for them.
    usual_ports: bool = True
    progress: Callable[[str], None] = lambda _m: None
    cp: ControlPlane | None = None
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    traffic_sent: int = 0
    traffic_ok: int = 0
    _stop_traffic: threading.Event = field(default_factory=threading.Event)

    @property
    def product_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/productpage"

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.cp = self._start_control_plane()
        self.progress(f"control plane up: xDS {self.cp.state.xds_address}, API {self.cp.state.api_url}")  # type: ignore[union-attr]
        # Istio's bookinfo Gateway listens on 8080; when that port is taken, the demo
        # applies it with a free port instead (and prints the real URL).
        self.gateway_port = self._free_or(self.gateway_port)
        for name in BASE_CONFIG:
            text = (networking_dir() / name).read_text()
            if name == "bookinfo-gateway.yaml" and self.gateway_port != 8080:
                text = text.replace("number: 8080", f"number: {self.gateway_port}")
            outcome = apply_text(text, source=self.cp.source, root=self.cp.applied_root, path_label=name)
            if not outcome.ok:
                raise DemoError(f"{name} was refused: {[d.format() for d in outcome.diagnostics]}")
            self.progress(f"applied {name}")
        for service, version in SERVICES:
            self._spawn(f"{service}-{version}", self._run_args(service, version))
        self._wait_for_workloads()
        self._spawn("ingressgateway", [
            "gateway", "--name", "ingressgateway", "--namespace", "istio-system",
            "--labels", "istio=ingressgateway", "--port", str(self.gateway_port), "--quiet",
        ])
        self._wait_for_product_page()

    def _start_control_plane(self) -> ControlPlane:
        def port(usual: int) -> int:
            return self._free_or(usual) if self.usual_ports else 0

        options = ControlPlaneOptions(
            home=self.home, xds_port=port(15010), api_port=port(20001), monitoring_port=port(15014),
            ca_port=port(15012), ca_join_port=port(15013),
        )
        # Every request traced (Istio's Bookinfo setup): the traces are the demo's to show.
        options = replace(options, mesh=options.mesh.with_(trace_sampling=100.0))
        cp = ControlPlane(options)
        try:
            cp.start()
        except StartupError as exc:
            raise DemoError(str(exc)) from exc
        return cp

    @staticmethod
    def _free_or(port: int) -> int:
        """The usual port when it is free, else any free one (the real address is printed)."""
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def _run_args(self, service: str, version: str) -> list[str]:
        module = f"malla.samples.bookinfo.{service}"
        return ["run", "--name", service, "--version", version, "--port", "9080/http", "--quiet", "--",
                sys.executable, "-m", module]

    def _spawn(self, label: str, args: list[str]) -> None:
        env = dict(os.environ, MALLA_HOME=str(self.home))
        log = (self.home / "logs").joinpath(f"{label}.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "malla", *args], env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
        self.children.append((label, proc))

    def _wait_for_workloads(self, timeout: float = 90.0) -> None:
        assert self.cp is not None
        expected = {f"{s}-{v}" for s, v in SERVICES}
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        while seen != expected:
            self._check_children()
            joined = {f"{w.name}-{w.labels.get('version')}" for w in self.cp.discovery.workloads().values()}
            for label in sorted((joined & expected) - seen):
                self.progress(f"{label} joined the mesh ({len(seen) + 1}/{len(expected)})")
                seen.add(label)
            if time.monotonic() > deadline:
                raise DemoError(f"workloads did not join within {timeout:.0f} s: {sorted(expected - seen)} (logs in {self.home / 'logs'})")
            time.sleep(0.1)

    def _wait_for_product_page(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            self._check_children()
            try:
                r = httpx.get(self.product_url, timeout=5)
                if r.status_code == 200 and "Book Details" in r.text:
                    self.progress(f"product page answers through the ingress gateway: {self.product_url}")
                    return
                last = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                last = str(exc) or type(exc).__name__
            time.sleep(0.2)
        raise DemoError(f"the product page did not answer through the gateway within {timeout:.0f} s (last: {last})")

    def _check_children(self) -> None:
        for label, proc in self.children:
            if proc.poll() is not None:
                log = self.home / "logs" / f"{label}.log"
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.exists() else ""
                raise DemoError(f"{label} exited with status {proc.returncode}:\n{tail}")

    def start_traffic(self, *, rate: float = 2.0) -> None:
        def loop() -> None:
            with httpx.Client(timeout=5) as client:
                while not self._stop_traffic.wait(1 / rate):
                    self.traffic_sent += 1
                    try:
                        if client.get(self.product_url).status_code == 200:
                            self.traffic_ok += 1
                    except httpx.HTTPError:
                        pass

        threading.Thread(target=loop, name="demo-traffic", daemon=True).start()

    def stop(self) -> None:
        self._stop_traffic.set()
        for _label, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _label, proc in self.children:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.cp is not None:
            self.cp.stop()
