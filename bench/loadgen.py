"""Open-loop HTTP load at a fixed rate with h2load (Debian's nghttp2-client), latencies from its log.

h2load ``--rps`` fires requests on a timer per connection whatever the
answers do (open loop); ``--log-file`` records every request's latency,
from which the percentiles are computed here (h2load itself prints only
mean and spread). HTTP/1.1 (``--h1``), one request in flight per
connection: a request that finds its connection busy waits, and that wait
is not in the recorded latency (h2load times from the send), so the
achieved rate is reported next to the asked one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.common import percentile


class LoadgenMissing(RuntimeError):
    """h2load is not installed."""


@dataclass(frozen=True)
class LoadResult:
    rate: int
    seconds: float
    requests: int
    ok: int
    failed: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None

    @property
    def achieved_rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def h2load_path() -> str:
    found = shutil.which("h2load")
    if found is None:
        raise LoadgenMissing("h2load is not installed: run bench/install-deps (Debian package nghttp2-client)")
    return found


def run_load(url: str, *, rate: int, seconds: float, connections: int = 4, authority: str | None = None) -> LoadResult:
    """``rate`` requests per second in total over ``connections`` connections for ``seconds``."""
    per_connection = max(1, round(rate / connections))
    with tempfile.TemporaryDirectory(prefix="bench-h2load-") as tmp:
        log = Path(tmp) / "requests.tsv"
        cmd = [h2load_path(), "--h1", "-c", str(connections), "-t", "1", "--rps", str(per_connection),
               "-D", f"{seconds:g}", "--log-file", str(log)]
        if authority:
            cmd += ["-H", f":authority: {authority}"]
        done = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 60)
        if done.returncode != 0:
            raise RuntimeError(f"h2load failed ({done.returncode}): {done.stderr.strip() or done.stdout[-500:]}")
        latencies, ok, failed = _read_log(log)
    return LoadResult(
        rate=rate, seconds=seconds, requests=ok + failed, ok=ok, failed=failed + _errored(done.stdout),
        p50_ms=_ms(percentile(latencies, 50)), p90_ms=_ms(percentile(latencies, 90)), p99_ms=_ms(percentile(latencies, 99)),
    )


def _read_log(path: Path) -> tuple[list[float], int, int]:
    latencies: list[float] = []
    ok = failed = 0
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        status, micros = int(parts[1]), float(parts[2])
        if 200 <= status < 300:
            ok += 1
            latencies.append(micros)
        else:
            failed += 1
    return latencies, ok, failed


def _errored(output: str) -> int:
    found = re.search(r"requests: .*?(\d+) errored", output)
    return int(found.group(1)) if found else 0


def _ms(micros: float | None) -> float | None:
    return None if micros is None else micros / 1000
