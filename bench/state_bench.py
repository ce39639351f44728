"""State benchmark: encoded size of every user's final state, and the state codec's time.

Replays the benchmark month (the event file ``bench/replay_bench.py`` generates and
caches in ``bench/out/``), then measures on every user's final state:

- size: ``len(encode_state(state))`` - mean, p50, p90, p99, max (bytes);
- cold codec time: ``encode_state`` of every state once, ``decode_state`` of every
  encoding once (process time per state, best of ``--repeat`` rounds);
- worker pattern: ``decode_state``, then a new state with another ``last_activity`` (as
  an event makes), then ``encode_state`` of it - what the live worker does per message.

``--tree DIR`` measures the ``triggers`` package of another checkout (for example
``git archive COMMIT | tar -x -C DIR``) on the same event file, for a before/after.

    .venv/bin/python bench/state_bench.py                  # 100k users, 30 days
    .venv/bin/python bench/state_bench.py --users 10000    # quick
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _percentile(values: list[int], q: float) -> int:
    """Same definition as bench/replay_bench.py (values sorted)."""
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))]


def _best(rounds: int, run: Callable[[Iterable[Any]], None], items: list[Any]) -> float:
    """Best process time of ``run(items)`` over some rounds, in microseconds per item."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        run(items)
        best = min(best, time.process_time() - started)
    return best / len(items) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5, help="timing rounds, best kept")
    parser.add_argument("--tree", help="measure the triggers package of this checkout")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO / "bench"))
    sys.path.insert(0, str(Path(args.tree).resolve() if args.tree else REPO))
    from replay_bench import ensure_events

    # (with --tree, the event file must be cached already: run once without it first)
    events, _ = ensure_events(args.users, args.seed, args.days, datetime(2026, 11, 1, tzinfo=UTC))
    from triggers.replay import replay_lines
    from triggers.rules import load_rules
    from triggers.state import decode_state, encode_state

    rules_file = REPO / "rules.example.yaml"
    started = time.perf_counter()
    with events.open("rb", buffering=1 << 20) as lines:
        result = replay_lines(lines, load_rules(rules_file if rules_file.exists() else None))
    states = [result.states[user] for user in sorted(result.states)]
    print(f"replayed {events.name}: {len(states):,} users in {time.perf_counter() - started:.0f} s")

    encoded = [encode_state(state) for state in states]
    sizes = sorted(len(data) for data in encoded)
    print(
        f"state size (bytes): mean {statistics.fmean(sizes):.0f}, p50 {_percentile(sizes, 0.5)},"
        f" p90 {_percentile(sizes, 0.9)}, p99 {_percentile(sizes, 0.99)}, max {sizes[-1]}"
    )
    if dataclasses.is_dataclass(states[0]):
        replace: Callable[..., Any] = dataclasses.replace
    else:
        import msgspec

        replace = msgspec.structs.replace

    def encode_all(items: Iterable[Any]) -> None:
        for state in items:
            encode_state(state)

    def decode_all(items: Iterable[bytes]) -> None:
        for data in items:
            decode_state(data)

    def worker(items: Iterable[bytes]) -> None:
        for data in items:
            state = decode_state(data)
            encode_state(replace(state, last_activity=state.last_activity))

    encode_us = _best(args.repeat, encode_all, states)
    decode_us = _best(args.repeat, decode_all, encoded)
    worker_us = _best(args.repeat, worker, encoded)
    print(
        f"codec (us per state, process time, best of {args.repeat}): encode {encode_us:.2f},"
        f" decode {decode_us:.2f}, encode+decode {encode_us + decode_us:.2f};"
        f" worker pattern (decode, new state, encode) {worker_us:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
