"""What every benchmark shares: results files, the machine's description, process readings, percentiles.

A benchmark returns a ``Result``: figures (absolute numbers, context only)
and ratios (each against a baseline measured in the same run, the result
that counts), goals met or missed, and notes saying how it was measured.
``write_result`` stores it as ``bench/results/<name>.json``; ``bench.report``
turns all of them into ``bench/REPORT.md``. CPU and memory come from
``/proc`` (Linux only), never from the process itself.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Figure:
    label: str
    value: float | int | str | None
    unit: str = ""


@dataclass
class Ratio:
    label: str
    value: float | None
    baseline: str
    goal: float | None = None  # the ratio must be <= goal
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.goal is None or self.value is None:
            return None
        return self.value <= self.goal


@dataclass
class Result:
    name: str
    title: str
    quick: bool
    figures: list[Figure] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)  # {"title", "columns", "rows"}
    seconds: float = 0.0

    def figure(self, label: str, value: float | int | str | None, unit: str = "") -> None:
        self.figures.append(Figure(label, _round(value), unit))

    def ratio(self, label: str, value: float | None, *, baseline: str, goal: float | None = None, note: str = "") -> None:
        self.ratios.append(Ratio(label, _round(value, 3), baseline, goal, note))

    def table(self, title: str, columns: list[str], rows: list[list[Any]]) -> None:
        self.tables.append({"title": title, "columns": columns, "rows": [[_round(v) for v in r] for r in rows]})

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratios"] = [asdict(r) | {"met": r.met} for r in self.ratios]
        data["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        data["load_average"] = os.getloadavg()
        return data


def _round(value: Any, digits: int = 3) -> Any:
    if isinstance(value, float):
        if value != value:  # NaN
            return None
        return round(value, digits) if abs(value) < 1000 else round(value, 1)
    return value


def write_result(result: Result, *, results_dir: Path = RESULTS_DIR) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{result.name}.json"
    path.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return path


def safe_div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


# -- the machine and versions ------------------------------------------------------


def machine_info() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "cpu_model": model,
        "kernel": platform.release(),
        "load_average": os.getloadavg(),
    }


def versions() -> dict[str, str]:
    from importlib import metadata

    from malla import __version__
    from malla.envoy.binary import find_envoy

    out = {"malla": __version__, "python": platform.python_version()}
    for dist in ("grpcio", "protobuf", "xds-protos", "cryptography"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    try:
        text = subprocess.run([str(find_envoy()), "--version"], capture_output=True, text=True, timeout=30).stdout
        out["envoy"] = _envoy_version(text)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        out["envoy"] = f"unknown ({exc})"
    h2load = subprocess.run(["sh", "-c", "h2load --version 2>/dev/null | head -1"], capture_output=True, text=True)
    out["h2load"] = h2load.stdout.strip() or "not installed"
    return out


def _envoy_version(text: str) -> str:
    # "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
    for part in text.replace(" ", "/").split("/"):
        if part[:1].isdigit() and part.count(".") == 2:
            return part
    return text.strip()[:80]


# -- processes ---------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def children_named(parent: int, comm: str) -> list[int]:
    """Descendants of ``parent`` whose command name is ``comm`` (e.g. the Envoy of a ``malla run``)."""
    tree: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
        names[int(entry.name)] = name
    found, stack = [], list(tree.get(parent, []))
    while stack:
        pid = stack.pop()
        if names.get(pid) == comm:
            found.append(pid)
        stack.extend(tree.get(pid, []))
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Any, *, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)

