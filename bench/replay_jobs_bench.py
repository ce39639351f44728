"""Phase (c) of ``bench/replay_bench.py``: ``nudge replay --jobs N`` end to end, and its report.

For each N: wall time, events/s, CPU-s of the command and its job processes (waited
for, so in ``RUSAGE_CHILDREN``), each job's own CPU-s (from ``--summary-json``), the
load average before and after, and the output's sha256 (every N must write the same
bytes). The report states the single-process floor of issue 24 and each N's speed-up.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TARGET_EVENTS_PER_CPU_S = 20_000  # `nudge replay` in one process, never lower (issue 24)
TARGET_SPEEDUP_2_JOBS = 1.8  # `--jobs 2` against `--jobs 1` on a 2-core machine


def phase_cli(events: Path, rules_file: Path | None, out_file: Path, jobs: int) -> dict[str, Any]:
    """``nudge replay --jobs N`` end to end, as a user runs it (output written to a file).
    CPU is the command's and its job processes' (waited for, so in RUSAGE_CHILDREN)."""
    nudge = Path(sys.executable).with_name("nudge")
    summary_file = out_file.with_suffix(".summary.json")
    command = [str(nudge), "replay", str(events), "--out", str(out_file), "--jobs", str(jobs)]
    command += ["--summary-json", str(summary_file)]
    if rules_file:
        command[3:3] = ["--rules", str(rules_file)]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    digest = hashlib.sha256()
    with out_file.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {
        "command": " ".join(command),
        "jobs": jobs,
        "returncode": proc.returncode,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "peak_rss_kib": usage.ru_maxrss,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "output_sha256": digest.hexdigest(),
        # each job process's own CPU (one process: the command's)
        "job_cpu_seconds": json.loads(summary_file.read_text()).get("job_cpu_seconds", [cpu]),
        "stderr_tail": proc.stderr[-2000:],
    }


def jobs_report(n: int, clis: list[dict[str, Any]]) -> list[str]:
    """``nudge replay --jobs N``: each run's figures and load, the speed-ups, the floor."""
    if not clis:
        return []
    lines = [
        "",
        "| `nudge replay --jobs N` | wall (s) | events/s | CPU-s (all processes) "
        "| CPU-s per 1k events | CPU-s of each job | load avg before / after | output sha256 |",
        "|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for cli in clis:
        lines.append(
            f"| {cli['jobs']} | {cli['seconds']:.2f} | {n / cli['seconds']:,.0f} "
            f"| {cli['cpu_seconds']:.2f} | {1000 * cli['cpu_seconds'] / n:.3f} "
            f"| {' / '.join(f'{t:.1f}' for t in cli['job_cpu_seconds'])} "
            f"| {cli['load_before']:.2f} / {cli['load_after']:.2f} "
            f"| {cli['output_sha256'][:12]} |"
        )
    one = next((cli for cli in clis if cli["jobs"] == 1), None)
    same = len({cli["output_sha256"] for cli in clis}) == 1
    lines += ["", f"Same output bytes for every N: {'yes' if same else 'NO'}."]
    if one is not None:
        rate = n / one["cpu_seconds"]
        verdict = "met" if rate >= TARGET_EVENTS_PER_CPU_S else "NOT met"
        lines.append(
            f"Single-process floor: `nudge replay` (--jobs 1) >= {TARGET_EVENTS_PER_CPU_S:,} "
            f"events per CPU-second: {rate:,.0f} ({verdict})."
        )
        for cli in clis:
            if cli["jobs"] == 1:
                continue
            wall = one["seconds"] / cli["seconds"]
            cpu = cli["cpu_seconds"] / one["cpu_seconds"]
            goal = ""
            if cli["jobs"] == 2:
                verdict = "met" if wall >= TARGET_SPEEDUP_2_JOBS else "NOT met"
                goal = f"; goal >= {TARGET_SPEEDUP_2_JOBS}x ({verdict})"
            jobs_cpu = cli["job_cpu_seconds"]
            parent = cli["cpu_seconds"] - sum(jobs_cpu)  # start-up, merge: before and after
            own_core = one["cpu_seconds"] / (parent + max(jobs_cpu))
            lines.append(
                f"--jobs {cli['jobs']}: {wall:.2f}x the events/s of --jobs 1 (wall){goal}; "
                f"{cpu:.2f}x its CPU-s (the work every job repeats: reading and parsing "
                f"every line); {own_core:.2f}x with a free core per job (--jobs 1 CPU-s "
                "over the parent's CPU-s plus the busiest job's: the wall ratio when "
                "nothing else runs)."
            )
    return lines
