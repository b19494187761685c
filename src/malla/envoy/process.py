"""Start, watch and stop one Envoy process; read its admin endpoints.

In: a bootstrap (dict, YAML text or file path) and a working directory.
Out: a running Envoy whose admin address is learnt from
`--admin-address-path` (admin may listen on port 0, so many Envoys share a
host), a readiness wait, admin readers, and a clean stop (SIGTERM, then
SIGKILL). Flags follow the field notes: `--use-dynamic-base-id` so several
Envoys coexist, a log file instead of stdout, `--concurrency` chosen by the
caller. Sync API for tests and tools; `*_async` waits for asyncio callers.
"""

from __future__ import annotations

import asyncio
import ctypes
import http.client
import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from malla.envoy.binary import find_envoy

_POLL_S = 0.02



# Istio's drain settings. When a listener or filter chain changes (a new AuthorizationPolicy, say), Envoy keeps
# open connections on the old chain until they drain: "immediate" closes each at its next answer (HTTP/1
# "connection: close", HTTP/2 GOAWAY), where Envoy's default "gradual" spreads it over the drain time, measured
# here as minutes of a deleted DENY still denying on pooled connections. 45 s bounds a connection that stays idle.
DRAIN_ARGS = ("--drain-time-s", "45", "--drain-strategy", "immediate")

class EnvoyError(RuntimeError):
    """Envoy could not be started, exited early, or did not become ready in time."""


class EnvoyProcess:
    """One supervised Envoy. Use as a context manager, or call start()/stop()."""

    def __init__(
        self,
        config: Mapping[str, Any] | str | Path,
        *,
        workdir: Path | None = None,
        concurrency: int = 1,
        log_level: str = "warning",
        binary: Path | None = None,
        extra_args: Sequence[str] = (),
        die_with_parent: bool = False,
    ) -> None:
        self._config = config
        self.die_with_parent = die_with_parent
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="malla-envoy-"))
        self.concurrency = concurrency
        self.log_level = log_level
        self.binary = binary
        self.extra_args = tuple(extra_args)
        self.log_path = self.workdir / "envoy.log"
        self.output_path = self.workdir / "envoy.out"
        self._admin_path_file = self.workdir / "admin-address"
        self._admin: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------

    def command(self) -> list[str]:
        """The full command line this process runs."""
        binary = self.binary or find_envoy()
        args = [str(binary), *self._config_args(),
                "--concurrency", str(self.concurrency),
                "--use-dynamic-base-id",
                "--admin-address-path", str(self._admin_path_file),
                "--log-path", str(self.log_path),
                "--log-level", self.log_level,
                *DRAIN_ARGS]
        args += list(self.extra_args)
        if self.die_with_parent and (setpriv := shutil.which("setpriv")):
            # The kernel kills Envoy when its agent dies, set by setpriv rather than
            # a preexec_fn: Python code between fork and exec can deadlock (SIGABRT
            # seen) in a process that already runs gRPC threads.
            return [setpriv, "--pdeathsig", "KILL", "--", *args]
        return args

    def start(self) -> EnvoyProcess:
        if self._proc is not None:
            raise EnvoyError("this Envoy was already started; create a new EnvoyProcess")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._admin_path_file.unlink(missing_ok=True)
        command = self.command()
        with open(self.output_path, "wb") as out:
            self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, cwd=self.workdir,
                                          preexec_fn=_die_with_parent if self._needs_preexec() else None,
                                          # A sidecar outlives a terminal's Ctrl-C: its agent stops it
                                          # after withdrawing the endpoint, not the keyboard.
                                          start_new_session=self.die_with_parent)
        return self

    def stop(self, *, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return proc.returncode

    def fresh(self) -> EnvoyProcess:
        """A new, not yet started Envoy with the same config, work directory and options (a restart)."""
        return EnvoyProcess(self._config, workdir=self.workdir, concurrency=self.concurrency, log_level=self.log_level,
                            binary=self.binary, extra_args=self.extra_args, die_with_parent=self.die_with_parent)

    def _needs_preexec(self) -> bool:
        return self.die_with_parent and shutil.which("setpriv") is None

    async def stop_async(self, *, timeout: float = 5.0) -> int | None:
        return await asyncio.to_thread(self.stop, timeout=timeout)

    def __enter__(self) -> EnvoyProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- readiness -------------------------------------------------------

    def admin_address(self, *, timeout: float = 10.0) -> str:
        """`host:port` (or a socket path) of admin, waiting until Envoy wrote it."""
        deadline = time.monotonic() + timeout
        while self._admin is None:
            self._admin = self._poll_admin_address()
            if self._admin is None:
                self._check_deadline(deadline, "to write its admin address")
                time.sleep(_POLL_S)
        return self._admin

    def wait_ready(self, *, timeout: float = 10.0) -> None:
        """Block until admin `/ready` says LIVE (Envoy finished initialising)."""
        deadline = time.monotonic() + timeout
        self.admin_address(timeout=timeout)
        while not self._is_live():
            self._check_deadline(deadline, "to become ready (admin /ready is not LIVE)")
            time.sleep(_POLL_S)

    async def wait_ready_async(self, *, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self._admin is None:
            self._admin = self._poll_admin_address()
            if self._admin is None:
                self._check_deadline(deadline, "to write its admin address")
                await asyncio.sleep(_POLL_S)
        while not await asyncio.to_thread(self._is_live):
            self._check_deadline(deadline, "to become ready (admin /ready is not LIVE)")
            await asyncio.sleep(_POLL_S)

    def _poll_admin_address(self) -> str | None:
        try:
            text = self._admin_path_file.read_text().strip()
        except FileNotFoundError:
            return None
        return text or None

    def _is_live(self) -> bool:
        try:
            status, body = self.admin_get("/ready", timeout=1.0)
        except OSError:
            return False
        return status == 200 and body.strip() == "LIVE"

    def _check_deadline(self, deadline: float, waiting_for: str) -> None:
        if self._proc is None:
            raise EnvoyError("Envoy was not started: call start() first")
        code = self._proc.poll()
        if code is not None:
            raise EnvoyError(f"Envoy exited with code {code} while waiting {waiting_for}\n"
                             f"{self.log_tail()}")
        if time.monotonic() > deadline:
            raise EnvoyError(f"timed out waiting for Envoy {waiting_for}\n{self.log_tail()}")

    def log_tail(self, *, lines: int = 30) -> str:
        """Last lines of Envoy's output and log, for error messages."""
        parts = []
        for path in (self.output_path, self.log_path):
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except FileNotFoundError:
                continue
            if text:
                parts.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(parts)

    # -- admin -----------------------------------------------------------

    def admin_get(self, path: str, *, timeout: float = 5.0) -> tuple[int, str]:
        """GET an admin path; returns (status, body text)."""
        return self._admin_request("GET", path, timeout=timeout)

    def admin_post(self, path: str, *, timeout: float = 5.0) -> tuple[int, str]:
        return self._admin_request("POST", path, timeout=timeout)

    def _admin_request(self, method: str, path: str, *, timeout: float) -> tuple[int, str]:
        address = self.admin_address(timeout=timeout)
        conn = _connection(address, timeout=timeout)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", errors="replace")
        finally:
            conn.close()

    def admin_json(self, path: str, *, timeout: float = 5.0) -> Any:
        status, body = self.admin_get(path, timeout=timeout)
        if status != 200:
            raise EnvoyError(f"admin {path} answered {status}: {body[:500]}")
        return json.loads(body)

    def config_dump(self, *, resource: str | None = None) -> dict[str, Any]:
        path = "/config_dump" + (f"?resource={quote(resource)}" if resource else "")
        return self.admin_json(path)

    def clusters(self) -> dict[str, Any]:
        return self.admin_json("/clusters?format=json")

    def listeners(self) -> dict[str, Any]:
        return self.admin_json("/listeners?format=json")

    def server_state(self) -> str:
        return str(self.admin_json("/server_info").get("state", ""))

    def stats(self, *, filter_regex: str | None = None) -> dict[str, int | str]:
        """Counters and gauges (int) and text readouts (str) by name; no histograms."""
        path = "/stats?format=json" + (f"&filter={quote(filter_regex)}" if filter_regex else "")
        values: dict[str, int | str] = {}
        for entry in self.admin_json(path).get("stats", []):
            if "name" in entry and "value" in entry:
                value = entry["value"]
                values[entry["name"]] = value if isinstance(value, str) else int(value)
        return values

    def stat(self, name: str) -> int | str | None:
        """One stat, or None when Envoy has no such stat."""
        return self.stats(filter_regex=f"^{_regex_escape(name)}$").get(name)

    def listener_port(self, name: str) -> int:
        """The port a listener actually bound (listeners may ask for port 0)."""
        for listener in self.listeners().get("listener_statuses", []):
            if listener.get("name") == name:
                return int(listener["local_address"]["socket_address"]["port_value"])
        raise EnvoyError(f"Envoy has no active listener named {name!r}")

    # -- internals -------------------------------------------------------

    def _config_args(self) -> list[str]:
        config = self._config
        if isinstance(config, Path):
            return ["-c", str(config)]
        if isinstance(config, str):
            return ["--config-yaml", config]
        path = self.workdir / "envoy.json"
        path.write_text(json.dumps(config, indent=1, sort_keys=True))
        return ["-c", str(path)]


def validate_config(config: Mapping[str, Any] | str, *, binary: Path | None = None,
                    timeout: float = 60.0) -> tuple[bool, str]:
    """Run `envoy --mode validate` on a whole config; returns (ok, Envoy's output).

    The Python protos do not enforce Envoy's field rules: Envoy is the validator.
    """
    text = config if isinstance(config, str) else json.dumps(config)
    command = [str(binary or find_envoy()), "--mode", "validate", "--config-yaml", text,
               "--use-dynamic-base-id", "--log-level", "warning"]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise EnvoyError(f"envoy --mode validate did not finish within {timeout} s") from exc
    output = (done.stdout + done.stderr).decode("utf-8", errors="replace")
    return done.returncode == 0, output


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends SIGKILL when the parent dies (Linux).

    An agent killed with SIGKILL must not leave its Envoy running.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


_PR_SET_PDEATHSIG = 1


def _regex_escape(name: str) -> str:
    return "".join("\\" + ch if ch in ".^$*+?{}[]\\|()" else ch for ch in name)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, *, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _connection(address: str, *, timeout: float) -> http.client.HTTPConnection:
    if address.startswith("/") or address.startswith("@"):
        return _UnixHTTPConnection(address, timeout=timeout)
    host, _, port = address.rpartition(":")
    return http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
