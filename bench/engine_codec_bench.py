"""Engine + state codec per event, in the live worker's access pattern.

The live worker (``stream/batches.py``) advances a user through the same
:class:`~triggers.driver.Driver` as replay; when the user's state is not in its cache it
decodes the stored state first, and it stores the new state encoded. This benchmark
replays the benchmark month (the event file ``bench/replay_bench.py`` generates and
caches in ``bench/out/``) through the driver with replay's clock and deadline index, in
two passes over the same parsed events:

- **engine**: states kept as objects (what ``nudge replay`` does);
- **engine + codec**: every state kept only encoded; each event (and each user whose
  stages come due) costs ``decode_state`` (if stored), ``Driver.event`` (or
  ``Driver.time``), and ``encode_state`` of the new state when it changed - the worst
  case of the worker, a cache miss on every message.

Parsing is done before and not counted; process time per event (events read, duplicates
and test events included; the firing of due stages in between is counted with them).
Both passes must produce the same records (checked: the codec round-trips the state).

    .venv/bin/python bench/engine_codec_bench.py                 # 100k users, 30 days
    .venv/bin/python bench/engine_codec_bench.py --users 10000   # quick
    .venv/bin/python bench/engine_codec_bench.py --tree DIR      # DIR/triggers (before/after)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TARGET_US = 10.0


def run(events: list[Any], rules: Any, codec: bool) -> tuple[float, int]:
    """One pass; (process seconds, records emitted)."""
    from triggers.deadlines import Deadlines, due_millis
    from triggers.driver import Advance, Driver
    from triggers.engine import NO_FACTS
    from triggers.state import decode_state, encode_state
    from triggers.timestamps import to_millis

    driver = Driver(rules)
    deadlines = Deadlines()
    store: dict[str, Any] = {}
    load: Callable[[str], Any]
    if codec:

        def load(user_id: str) -> Any:
            data = store.get(user_id)
            return None if data is None else decode_state(data)

        def keep(user_id: str, advance: Advance) -> None:
            if advance.changed:
                store[user_id] = encode_state(advance.state)
            deadlines.set(user_id, due_millis(advance.wake))
    else:
        load = store.get

        def keep(user_id: str, advance: Advance) -> None:
            if advance.changed:
                store[user_id] = advance.state
            deadlines.set(user_id, due_millis(advance.wake))

    records = 0
    clock: datetime | None = None
    started = time.process_time()
    for event in events:
        until_ms = to_millis(event.ts)
        while (earliest := deadlines.earliest()) is not None and earliest <= until_ms:
            for user_id, _ in deadlines.pop_due(earliest):
                state = load(user_id)
                due = driver.wake(state)
                if due is None:
                    continue
                if clock is None or due > clock:
                    clock = due
                advance = driver.time(state, due, due, NO_FACTS)
                records += len(advance.records)
                keep(user_id, advance)
        if clock is None or event.ts > clock:
            clock = event.ts
        advance = driver.event(load(event.user_id), event, clock, NO_FACTS, clock)
        records += len(advance.records)
        keep(event.user_id, advance)
    return time.process_time() - started, records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="passes of each kind, best kept")
    parser.add_argument("--tree", help="measure the triggers package of this checkout")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO / "bench"))
    sys.path.insert(0, str(Path(args.tree).resolve() if args.tree else REPO))
    from replay_bench import ensure_events

    from triggers.events import InvalidEvent, parse_event
    from triggers.rules import load_rules

    path, _ = ensure_events(args.users, args.seed, args.days, datetime(2026, 11, 1, tzinfo=UTC))
    rules_file = REPO / "rules.example.yaml"
    rules = load_rules(rules_file if rules_file.exists() else None)
    events = []
    with path.open("rb", buffering=1 << 20) as lines:
        for line in lines:
            with contextlib.suppress(InvalidEvent):
                events.append(parse_event(line))
    gc.disable()  # as replay does: the engine builds no reference cycles
    n = len(events)
    best: dict[bool, float] = {}
    counts: dict[bool, int] = {}
    for _ in range(max(1, args.repeat)):
        for codec in (False, True):
            seconds, records = run(events, rules, codec)
            best[codec] = min(best.get(codec, seconds), seconds)
            counts[codec] = records
    if counts[False] != counts[True]:
        raise SystemExit(f"the passes differ: {counts[False]} vs {counts[True]} records")
    engine_us, both_us = best[False] / n * 1e6, best[True] / n * 1e6
    print(
        f"{path.name}: {n:,} events, {counts[True]:,} records; "
        f"process time per event, best of {max(1, args.repeat)}"
    )
    print(f"engine (Driver, states as objects): {engine_us:.2f} us")
    print(
        f"engine + codec (decode, Driver, encode): {both_us:.2f} us "
        f"(codec {both_us - engine_us:.2f} us); target <= {TARGET_US:g} us: "
        f"{'met' if both_us <= TARGET_US else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
