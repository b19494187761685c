"""``bench/REPORT.md`` from ``bench/results/*.json``: the machine, the versions, every figure and ratio.

Ratios come first because they are the result (each against a baseline
measured in the same run); absolute figures follow as context.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, RESULTS_DIR

ORDER = ("dataplane", "convergence", "cp_scale", "sidecar_memory", "delta_sotw", "ca_signing")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value).replace("|", "/")


def _table(columns: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return out + [""]


def _verdict(ratio: dict[str, Any]) -> str:
    if ratio.get("met") is None:
        return "-" if ratio.get("goal") is None else "not measured"
    return "met" if ratio["met"] else "MISSED"


def _load(results_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    run_path = results_dir / "_run.json"
    run = json.loads(run_path.read_text()) if run_path.exists() else {}
    results = []
    for name in ORDER:
        path = results_dir / f"{name}.json"
        if path.exists():
            results.append(json.loads(path.read_text()))
    return run, results


def render(results_dir: Path = RESULTS_DIR) -> str:
    run, results = _load(results_dir)
    machine, versions = run.get("machine", {}), run.get("versions", {})
    lines = ["# malla benchmarks", "",
             f"Run started {run.get('started', '?')} ({'quick: make bench-quick' if run.get('quick') else 'full: make bench'}), "
             f"{run.get('seconds', '?')} s in all. Ratios are the result, each against a baseline measured in the same run; "
             "absolute times are context and depend on the machine and on what else ran on it.", "",
             *[f"Re-run later: {', '.join(r['benchmarks'])} ({r['started']}, {r['seconds']} s)." for r in run.get("reruns", [])],
             "", "## Machine", "",
             f"- {machine.get('cores', '?')} cores, {machine.get('memory_gib', '?')} GiB, {machine.get('cpu_model', '?')}, "
             f"Linux {machine.get('kernel', '?')}",
             f"- load average at start {_loads(machine.get('load_average'))}, at end {_loads(run.get('load_average_end'))} "
             "(other work shared the machine)", "",
             "## Versions", ""]
    lines += [f"- {k}: {v}" for k, v in versions.items()] + [""]
    lines += ["## Goals", ""]
    goal_rows = [[r["title"], q["label"], q["value"], f"<= {q['goal']}", _verdict(q)]
                 for r in results for q in r.get("ratios", []) if q.get("goal") is not None]
    lines += _table(["benchmark", "ratio", "value", "goal", "verdict"], goal_rows)
    for r in results:
        lines += _section(r)
    return "\n".join(lines).rstrip() + "\n"


def _loads(values: Any) -> str:
    return " / ".join(f"{v:.2f}" for v in values) if values else "?"


def _section(r: dict[str, Any]) -> list[str]:
    lines = [f"## {r['title']}", "", f"`bench/{r['name']}.py`, {r.get('date', '?')}, {r.get('seconds', '?')} s"
             f"{' (quick)' if r.get('quick') else ''}, load average {_loads(r.get('load_average'))}.", ""]
    if r.get("ratios"):
        lines += ["Ratios:", ""]
        lines += _table(["ratio", "value", "baseline", "goal", "verdict", "note"],
                        [[q["label"], q["value"], q["baseline"], f"<= {q['goal']}" if q.get("goal") is not None else "-",
                          _verdict(q), q.get("note") or ""] for q in r["ratios"]])
    if r.get("figures"):
        lines += ["Figures:", ""]
        lines += _table(["figure", "value", "unit"], [[f["label"], f["value"], f["unit"]] for f in r["figures"]])
    for t in r.get("tables", []):
        lines += [f"{t['title']}:", ""] + _table(t["columns"], t["rows"])
    lines += [f"- {n}" for n in r.get("notes", [])] + [""]
    return lines


def write_report(path: Path = BENCH_DIR / "REPORT.md", *, results_dir: Path = RESULTS_DIR) -> Path:
    path.write_text(render(results_dir))
    return path
