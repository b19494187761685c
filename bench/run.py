"""Run the benchmarks and write ``bench/results/*.json`` and ``bench/REPORT.md``.

``python -m bench.run`` runs them all; ``--quick`` the reduced set (under
five minutes on two cores); ``--only NAME`` (repeatable) picks some;
``--report`` only re-renders REPORT.md from the results on disk. A
benchmark that fails is recorded as failed, with its error, and the others
still run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from bench.common import RESULTS_DIR, Result, machine_info, versions, write_result
from bench.report import write_report

# Cheapest first: a slow one that fails late costs the others nothing.
BENCHMARKS = ("ca_signing", "dataplane", "convergence", "sidecar_memory", "delta_sotw", "cp_scale")


def run_one(name: str, *, quick: bool, keep: bool) -> Result:
    module = importlib.import_module(f"bench.{name}")
    workdir = Path(tempfile.mkdtemp(prefix=f"malla-bench-{name}-"))
    started = time.monotonic()
    try:
        result: Result = module.run(quick=quick, workdir=workdir)
    except Exception as exc:  # one broken benchmark must not hide the others' figures
        result = Result(name, name, quick)
        result.notes.append(f"FAILED: {type(exc).__name__}: {exc}"[:2000])
        traceback.print_exc()
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    result.seconds = round(time.monotonic() - started, 1)
    return result


def _record_run(run_info: dict[str, object], *, only: list[str] | None) -> None:
    """``_run.json`` describes the whole run; a run of some benchmarks is added to it as a re-run."""
    path = RESULTS_DIR / "_run.json"
    if only and path.exists():
        whole = json.loads(path.read_text())
        whole.setdefault("reruns", []).append({"benchmarks": only, **{k: run_info[k] for k in ("started", "quick", "seconds")}})
        whole["versions"] = run_info["versions"]
        run_info = whole
    path.write_text(json.dumps(run_info, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="malla's benchmarks")
    parser.add_argument("--quick", action="store_true", help="the reduced set (under 5 minutes)")
    parser.add_argument("--only", action="append", choices=BENCHMARKS, help="run only this benchmark (repeatable)")
    parser.add_argument("--report", action="store_true", help="only re-render REPORT.md from bench/results")
    parser.add_argument("--keep", action="store_true", help="keep the working directories (logs) for inspection")
    args = parser.parse_args(argv)
    if not args.report:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        run_info = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": args.quick,
                    "machine": machine_info(), "versions": versions()}
        started = time.monotonic()
        for name in args.only or BENCHMARKS:
            print(f"== {name} ({'quick' if args.quick else 'full'})", flush=True)
            result = run_one(name, quick=args.quick, keep=args.keep)
            print(f"   {write_result(result)} in {result.seconds:.0f} s", flush=True)
        run_info["seconds"] = round(time.monotonic() - started, 1)
        run_info["load_average_end"] = machine_info()["load_average"]
        _record_run(run_info, only=args.only)
    path = write_report()
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
