"""Replay benchmark: the engine's replay throughput next to a parse-only baseline.

Generates a synthetic shop event file once (``simulation.synthetic``; cached in
``bench/out/``, git-ignored), then, in one run, measures on the same file:

(a) baseline - read every line and ``orjson.loads`` it (the floor any replay pays);
(a2) parse   - read every line and validate it into the engine's events (no engine);
(a3) floor   - the least a user-keyed engine in Python can do per event: a typed msgspec
              decode of four fields, one frozen per-user struct replaced in a dict, one
              heap push; no triggers, no policy (CPython's floor, not a contender);
(b) replay   - the engine's replay over the same lines (``triggers.replay``), output
              records serialised but not written, followed by the size of every
              user's final state under ``triggers.state.encode_state``;
(c) CLI      - optionally, ``nudge replay EVENTS --rules R --out F --jobs N`` end to end,
              for each N of ``--jobs`` (default 1,2): wall, events/s, CPU-s of the
              command and its job processes, the load average before and after, and
              whether every N wrote the same bytes. States the single-process floor
              (``--jobs 1`` >= 20,000 events per CPU-second, issue 24) and the speed-up
              of each N against ``--jobs 1``.

Each measured phase runs in a fresh child process so its peak RSS
(``ru_maxrss``) is its own; throughput is single-threaded, one core.

    .venv/bin/python bench/replay_bench.py                 # 100k users, 30 days
    .venv/bin/python bench/replay_bench.py --users 10000   # quick
    .venv/bin/python bench/replay_bench.py --profile       # + cProfile of the replay
    .venv/bin/python bench/replay_bench.py --jobs 1,2,4     # nudge replay --jobs N for each N
    .venv/bin/python bench/replay_bench.py --new-triggers --rules R  # + catalog, wishlists,
                                                           # birthdays (contract 7)
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import heapq
import io
import json
import os
import platform
import pstats
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import orjson
from replay_jobs_bench import jobs_report, phase_cli  # bench/, beside this file

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "bench" / "out"
TARGET_STATE_BYTES = 1024


# ---------------------------------------------------------------------------------------------
# Helpers shared by the phases
# ---------------------------------------------------------------------------------------------


def _proc_status_kib(field: str) -> int:
    """A ``/proc/self/status`` memory field in KiB (Linux), or 0 where unavailable."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _rss_now_kib() -> int:
    return _proc_status_kib("VmRSS")


def _peak_rss_kib() -> int:
    """Peak RSS of this process image. ``VmHWM`` rather than ``ru_maxrss``: on Linux the
    latter survives ``exec`` and would report the parent's size at fork time."""
    peak = _proc_status_kib("VmHWM")
    if peak:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb", buffering=1 << 20) as f:
        yield from f


def _percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


def _rules_path(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit).resolve()  # reported relative to the repository
    example = REPO / "rules.example.yaml"
    return example if example.exists() else None


def _shown(path: Path) -> Path:
    """A path relative to the repository when inside it."""
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def _measured(count: int, started: float, cpu: float, rss_before: int) -> dict[str, Any]:
    """A phase's result: events read, wall and CPU seconds since ``started``/``cpu``, RSS."""
    return {
        "events": count,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "rss_before_kib": rss_before,
        "peak_rss_kib": _peak_rss_kib(),
    }


# ---------------------------------------------------------------------------------------------
# Phases (each runs in its own child process: ``--phase NAME``)
# ---------------------------------------------------------------------------------------------


def phase_baseline(events: Path) -> dict[str, Any]:
    """Read every line and ``orjson.loads`` it; nothing else."""
    loads = orjson.loads
    rss_before = _rss_now_kib()
    started, cpu = time.perf_counter(), time.process_time()
    count = 0
    for line in _lines(events):
        loads(line)
        count += 1
    return _measured(count, started, cpu, rss_before)


def phase_parse(events: Path) -> dict[str, Any]:
    """Read every line and validate it with the engine's ``parse_event`` (no engine); a
    catalog event (``--new-triggers``) with ``parse_catalog_event``, as replay does."""
    from triggers.events import InvalidEvent, parse_catalog_event, parse_event

    rss_before = _rss_now_kib()
    started, cpu = time.perf_counter(), time.process_time()
    count = invalid = 0
    for line in _lines(events):
        count += 1
        try:
            parse_event(line)
        except InvalidEvent:
            try:
                parse_catalog_event(line)
            except InvalidEvent:
                invalid += 1
    return {**_measured(count, started, cpu, rss_before), "invalid": invalid}


class _FloorEvent(msgspec.Struct, frozen=True, gc=False):
    type: str
    event_id: str
    ts: int | str
    user_id: str = ""  # a catalog line (--new-triggers) has none


class _FloorState(msgspec.Struct, frozen=True, gc=False):
    user_id: str
    last_ts: int | str
    events: int
    last_event_id: str


def phase_floor(events: Path) -> dict[str, Any]:
    """CPython's floor for a per-user engine: decode, replace the user's state, push a due
    time. What every event costs before any trigger, policy or output is added."""
    decode = msgspec.json.Decoder(_FloorEvent).decode
    replace = msgspec.structs.replace
    push = heapq.heappush
    states: dict[str, _FloorState] = {}
    heap: list[tuple[int, str]] = []
    rss_before = _rss_now_kib()
    gc.disable()  # as replay does
    started, cpu = time.perf_counter(), time.process_time()
    count = 0
    for line in _lines(events):
        count += 1
        event = decode(line)
        state = states.get(event.user_id)
        if state is None:
            state = _FloorState(event.user_id, event.ts, 0, event.event_id)
        states[event.user_id] = replace(
            state, last_ts=event.ts, events=state.events + 1, last_event_id=event.event_id
        )
        push(heap, (count, event.user_id))
    return _measured(count, started, cpu, rss_before)


def phase_replay(events: Path, rules_file: Path | None, profile: Path | None) -> dict[str, Any]:
    """``replay_lines`` over the file, its records serialised as ``nudge replay`` writes them
    (not written anywhere), then the encoded size of every user's final state."""
    import triggers.state as state_module
    from triggers.records import record_to_json
    from triggers.replay import replay_lines
    from triggers.rules import load_rules
    from triggers.state import encode_state

    rules = load_rules(rules_file)
    rss_before = _rss_now_kib()
    profiler = cProfile.Profile() if profile else None
    started, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    result = replay_lines(_lines(events), rules)
    replayed = time.perf_counter()
    serialised = sum(len(record_to_json(record)) + 1 for record in result.records)
    if profiler:
        profiler.disable()
    finished, cpu = time.perf_counter(), time.process_time() - cpu
    peak = _peak_rss_kib()

    sizes = sorted(len(encode_state(state)) for state in result.states.values())
    # the event-id memory (dedupe) is the one part that grows with activity until its cap
    seen_bytes = sum(len(getattr(state, "seen", b"")) for state in result.states.values())
    seen_cap = getattr(state_module, "MAX_SEEN", 0) * getattr(state_module, "DIGEST_SIZE", 0)
    summary = result.summary
    decisions: dict[str, int] = {}
    for (_, status), n in summary.decisions.items():
        decisions[status] = decisions.get(status, 0) + n
    out: dict[str, Any] = {
        "events": summary.events_read,
        "invalid": summary.invalid,
        "processed": summary.processed,
        "ignored": summary.ignored,
        "records": len(result.records),
        "decisions": decisions,
        "conversions": summary.conversions,
        "output_bytes": serialised,
        "replay_seconds": replayed - started,
        "seconds": finished - started,
        "cpu_seconds": cpu,
        "rss_before_kib": rss_before,
        "peak_rss_kib": peak,
        "users_with_state": len(sizes),
        "state_mean": sum(sizes) / len(sizes) if sizes else 0.0,
        "state_p50": _percentile(sizes, 0.50),
        "state_p99": _percentile(sizes, 0.99),
        "state_max": sizes[-1] if sizes else 0,
        "seen_mean_raw": seen_bytes / len(sizes) if sizes else 0.0,
        "seen_cap_raw": seen_cap,
    }
    if profiler and profile:
        profiler.dump_stats(profile)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
        out["profile_top"] = text.getvalue()
    return out


def _run_phase(name: str, args: argparse.Namespace, events: Path, jobs: int = 1) -> dict[str, Any]:
    """Run a phase ``--repeat`` times, each in a fresh child process; keep the fastest."""
    runs = [_run_phase_once(name, args, events, jobs) for _ in range(max(1, args.repeat))]
    return min(runs, key=lambda run: run["seconds"])


def _run_phase_once(
    name: str, args: argparse.Namespace, events: Path, jobs: int = 1
) -> dict[str, Any]:
    command = [sys.executable, __file__, "--phase", name, "--events", str(events)]
    command += ["--jobs", str(jobs)]
    if args.rules:
        command += ["--rules", args.rules]
    if args.profile and name == "replay":
        command += ["--profile"]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"phase {name} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def ensure_events(
    users: int, seed: int, days: float, start: datetime, new_triggers: bool = False
) -> tuple[Path, float | None]:
    """The cached event file for these parameters, generated if missing."""
    from simulation.synthetic import write_event_file

    stamp = start.strftime("%Y%m%dT%H%M%SZ")
    extra = "-new" if new_triggers else ""
    path = OUT_DIR / f"events-u{users}-s{seed}-d{days:g}-{stamp}{extra}.jsonl"
    if path.exists():
        return path, None
    print(f"generating {path.relative_to(REPO)} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    count = write_event_file(
        path, users=users, seed=seed, start=start, days=days, new_triggers=new_triggers
    )
    elapsed = time.perf_counter() - started
    print(f"  {count:,} events in {elapsed:.1f} s", file=sys.stderr, flush=True)
    return path, elapsed


def _code_version() -> str:
    """The commit measured, and whether the engine had uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "triggers"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"commit {commit}" + (" + uncommitted changes in triggers/" if dirty else "")


def _engine_fingerprint() -> str:
    """A hash of the engine's source files, to notice edits made during a run."""
    digest = hashlib.sha256()
    for source in sorted((REPO / "triggers").glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def report(
    args: argparse.Namespace,
    events: Path,
    base: dict[str, Any],
    parse: dict[str, Any],
    floor: dict[str, Any],
    rep: dict[str, Any],
    clis: list[dict[str, Any]],
    version: str,
) -> str:
    n = base["events"]
    size = events.stat().st_size
    base_rate = n / base["seconds"]
    rules = _rules_path(args.rules)
    command = " ".join(["python", "bench/replay_bench.py", *sys.argv[1:]])
    lines = [
        f"Command: `{command}`; code: {version}",
        f"Events file: `{events.relative_to(REPO)}` - {n:,} events, {size / 2**20:,.0f} MiB, "
        f"{args.users:,} users, {args.days:g} days, seed {args.seed}"
        + (", with catalog, wishlists and birthdays" if args.new_triggers else ""),
        f"Rules: `{_shown(rules) if rules else 'built-in defaults'}`; "
        f"output records: {rep['records']:,}",
        f"Machine: {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs (phases a-b single-threaded); "
        f"load average at the end {os.getloadavg()[0]:.2f}",
        "",
        "| phase | wall (s) | events/s | vs baseline | CPU (s) | events/CPU-s | peak RSS (start) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    phases = [
        ("(a) baseline: read + `orjson.loads`", base),
        ("(a2) read + `parse_event` (validation only)", parse),
        ("(a3) Python floor: typed decode + per-user struct + heap push", floor),
        ("(b) engine replay: `replay_lines` + `record_to_json`", rep),
    ]
    for cli in clis:
        phases.append((f"(c) `nudge replay EVENTS --rules R --out FILE --jobs {cli['jobs']}`", cli))
    for label, run in phases:
        rate = n / run["seconds"]
        start_rss = f" ({_mib(run['rss_before_kib'])})" if "rss_before_kib" in run else ""
        lines.append(
            f"| {label} | {run['seconds']:.2f} | {rate:,.0f} | {rate / base_rate:.3f}x "
            f"| {run['cpu_seconds']:.2f} | {n / run['cpu_seconds']:,.0f} "
            f"| {_mib(run['peak_rss_kib'])}{start_rss} |"
        )
    lines += [
        "",
        "| final state per user (`encode_state`) | bytes |",
        "|---|---:|",
        f"| users with state | {rep['users_with_state']:,} |",
        f"| mean | {rep['state_mean']:,.0f} |",
        f"| p50 | {rep['state_p50']:,} |",
        f"| p99 | {rep['state_p99']:,} |",
        f"| max | {rep['state_max']:,} |",
        f"| of which event-id memory (`seen`, raw digests; base64 in the encoding), mean "
        f"| {rep['seen_mean_raw']:,.0f} raw, ~{rep['seen_mean_raw'] * 4 / 3:,.0f} encoded |",
        f"| `seen` once full (cap, any long-lived active user) "
        f"| {rep['seen_cap_raw']:,} raw, ~{rep['seen_cap_raw'] * 4 / 3:,.0f} encoded |",
        "",
        f"Target: state <= {TARGET_STATE_BYTES} B per user "
        f"(mean {'met' if rep['state_mean'] <= TARGET_STATE_BYTES else 'NOT met'}, "
        f"p99 {'met' if rep['state_p99'] <= TARGET_STATE_BYTES else 'NOT met'}).",
    ]
    lines += jobs_report(n, clis)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000, help="shoppers (default 100000)")
    parser.add_argument("--days", type=float, default=30.0, help="days of traffic (default 30)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument(
        "--start", default="2026-11-01T00:00:00Z", help="window start, RFC 3339 (aware)"
    )
    parser.add_argument("--rules", help="rules file (default: rules.example.yaml if present)")
    parser.add_argument(
        "--new-triggers",
        action="store_true",
        help="traffic with catalog changes, wishlists and birthdays (enable the triggers "
        "in --rules)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per phase, fastest kept (default 1)"
    )
    parser.add_argument("--no-cli", action="store_true", help="skip the `nudge replay` phase")
    parser.add_argument(
        "--jobs",
        default="1,2",
        help="`nudge replay --jobs N` runs, comma-separated (default 1,2)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the replay phase (slower; separate file)"
    )
    parser.add_argument(
        "--phase", choices=("baseline", "parse", "floor", "replay", "cli"), help=argparse.SUPPRESS
    )
    parser.add_argument("--events", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rules = _rules_path(args.rules)

    if args.phase:  # child process: run one phase, print its result as one JSON line
        events = Path(args.events)
        if args.phase == "baseline":
            result = phase_baseline(events)
        elif args.phase == "parse":
            result = phase_parse(events)
        elif args.phase == "floor":
            result = phase_floor(events)
        elif args.phase == "replay":
            profile = OUT_DIR / "replay.prof" if args.profile else None
            result = phase_replay(events, rules, profile)
        else:
            jobs = int(args.jobs)
            result = phase_cli(events, rules, OUT_DIR / f"replay-output-j{jobs}.jsonl", jobs)
        print(json.dumps(result))
        return 0

    start = datetime.fromisoformat(args.start)
    if start.tzinfo is None:
        parser.error("--start needs an offset (e.g. Z)")
    start = start.astimezone(UTC)
    events, _ = ensure_events(args.users, args.seed, args.days, start, args.new_triggers)
    code_before = _engine_fingerprint()
    version = _code_version()

    print("(a) baseline ...", file=sys.stderr, flush=True)
    base = _run_phase("baseline", args, events)
    print("(a2) parse_event ...", file=sys.stderr, flush=True)
    parse = _run_phase("parse", args, events)
    print("(a3) Python floor ...", file=sys.stderr, flush=True)
    floor = _run_phase("floor", args, events)
    print("(b) replay ...", file=sys.stderr, flush=True)
    rep = _run_phase("replay", args, events)
    clis = []
    for jobs in [] if args.no_cli else [int(n) for n in args.jobs.split(",")]:
        print(f"(c) nudge replay --jobs {jobs} ...", file=sys.stderr, flush=True)
        cli = _run_phase("cli", args, events, jobs)
        if cli["returncode"] != 0:
            sys.stderr.write(cli["stderr_tail"])
            raise SystemExit("nudge replay failed")
        clis.append(cli)
    print(report(args, events, base, parse, floor, rep, clis, version))
    if _engine_fingerprint() != code_before:
        print("\nWARNING: the engine's code changed during this run; the figures mix versions.")
    if "profile_top" in rep:
        print("\ncProfile of the replay phase (by own time; full stats in bench/out/replay.prof):")
        print("```\n" + rep["profile_top"] + "\n```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
