"""Fault suites' common ground: a fixed event set, live traffic, and the replay oracle.

The oracle is ``nudge replay`` on the very file the live worker was fed: whatever the
faults, the ``sent`` records on ``marketing.triggers`` must be exactly the oracle's —
none missing, none duplicated (by ``trigger_id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from simulation.synthetic import generate_events
from stream.catalog_wire import partition_of
from stream.rekeying import Forwarded, Horizons
from tests.integration.harness import (
    NUDGE,
    TOPIC_OF_TYPE,
    Worker,
    WorkerGroup,
    replay_records,
)

#: Delays of seconds; windows (cooldown, frequency cap, attribution) far from any
#: boundary, so late firing after a fault changes no decision, only its fired_at.
RULES = """
version: 1
default_timezone: UTC
triggers:
  cart_abandonment:        {stages: [3s, 8s], cooldown: 1h}
  browse_abandonment:      {stages: [4s], cooldown: 1h}
  replenishment:           {fire_at_fraction: 0.5,
                            categories: {coffee: 10s, tea: 12s, pet_food: 14s}}
  first_purchase_followup: {stages: [5s]}
  lapsing:                 {enabled: false}
  dormancy:                {stages: [10s], audience: all}
contact_policy:
  frequency_cap: {max: 50, per: 1h}
  max_delay: 1h
  holdout_percent: 10
  attribution_window: 1h
"""
#: RULES with two channels (contract 8): a decision goes on push, or on email once the
#: shopper's feedback withdrew push (``fixed_events(feedback_every=...)``).
CHANNEL_RULES = (
    RULES
    + """channels:
  push: {}
  email: {}
"""
)
LONGEST_DELAY = timedelta(seconds=14)
GENERATOR_START = datetime(2026, 11, 24, 1, 45, tzinfo=UTC)

#: CI runs the short version; NUDGE_SOAK=1 (or a number of events) runs the long one.
SOAK = os.environ.get("NUDGE_SOAK", "")


def scale(short: int, long: int) -> int:
    if not SOAK:
        return short
    return int(SOAK) if SOAK.isdigit() and int(SOAK) > 1 else long


@dataclass
class EventSet:
    path: Path
    events: list[dict[str, Any]]
    rate: float

    @property
    def last_ts(self) -> datetime:
        return datetime.fromisoformat(self.events[-1]["ts"])

    def at(self, index: int) -> datetime:
        return datetime.fromisoformat(self.events[index]["ts"])

    def shift(self, delta: timedelta, start: int = 0) -> None:
        """Every event (from the ``start``-th on) ``delta`` later (whole milliseconds), in
        memory and in the file."""
        for event in self.events[start:]:
            event["ts"] = wire_time(datetime.fromisoformat(event["ts"]) + delta)
        self.path.write_bytes(self.lines())

    def lines(self) -> bytes:
        return b"".join(orjson.dumps(e) + b"\n" for e in self.events)


def wire_time(moment: datetime) -> str:
    """An event's ``ts`` as the suites write it: UTC, whole milliseconds, ``Z``."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fixed_events(
    path: Path,
    *,
    count: int,
    users: int,
    rate: float,
    lead: float = 3.0,
    quiet: tuple[int, float] | None = None,
    feedback_every: int = 0,
    erase: int | None = None,
) -> EventSet:
    """Synthetic shop events, re-stamped ``1/rate`` apart from ``lead`` seconds from now.

    ``quiet=(n, seconds)``: the shop goes quiet for ``seconds`` after its n-th event.
    ``feedback_every=k``: every k-th event is delivery feedback of that event's shopper
    instead (contract 8.3: on push; every third one an unsubscribe, the others delivered
    or opened). ``erase=n``: the n-th event erases its shopper instead (contract 8.5).
    """
    start = datetime.now(UTC) + timedelta(seconds=lead)
    events = []
    # The same event set every run (the generator's sessions depend on the hour of its
    # start), re-stamped to now.
    source = generate_events(users=users, seed=2026, start=GENERATOR_START, days=30)
    for i, event in enumerate(source):
        if i >= count:
            break
        pause = quiet[1] if quiet is not None and i >= quiet[0] else 0.0
        if feedback_every and i % feedback_every == feedback_every - 1:
            kind = ("message_unsubscribed", "message_delivered", "message_opened")[i % 3]
            common = {"event_id": f"fb-{i}", "user_id": event["user_id"]}
            event = {**common, "type": kind, "trigger_id": f"t-{i}", "channel": "push"}
        elif i == erase:
            event = {"event_id": f"erase-{i}", "type": "user_erased", "user_id": event["user_id"]}
        event["ts"] = wire_time(start + timedelta(seconds=i / rate + pause))
        events.append(event)
    event_set = EventSet(path, events, rate)
    path.write_bytes(event_set.lines())
    return event_set


@dataclass
class Traffic:
    """The shop's producers: ``nudge simulate`` processes, one per way of keying."""

    group: WorkerGroup
    events: EventSet
    procs: list[subprocess.Popen[bytes]]
    #: The events from this index on are held back until :meth:`release`.
    held: int

    def release(self, lead: float = 3.0) -> None:
        """Send the events held back, from new traffic processes (a blocked read of their
        input would hold a producer's last records back), shifted so that the first is
        ``lead`` seconds away if it is not already: the shop was quiet until now."""
        if self.held < len(self.events.events):
            self.procs += _launch(self.group, self.events, self.held, lead)
            self.held = len(self.events.events)

    def wait(self, timeout: float) -> int:
        """Wait for every process; the first non-zero exit code, else 0."""
        deadline = time.monotonic() + timeout
        codes = [p.wait(timeout=max(0.0, deadline - time.monotonic())) for p in self.procs]
        return next((code for code in codes if code), 0)


def start_traffic(
    group: WorkerGroup, events: EventSet, lead: float = 2.0, *, hold_from: int | None = None
) -> Traffic:
    """``nudge simulate --file --realtime``: each event sent when the clock reaches its ts.

    The events reach the traffic process through a FIFO. Once it has opened it (its start,
    imports included, can take seconds on a busy machine), the events are shifted so that
    the first is ``lead`` seconds away if it is not already; otherwise the shop's producer
    would start late and send its first events in a burst, after deadlines they precede,
    which neither the worker nor replay can know (late input). Call this before computing
    anything from the events' times.

    Topics keyed differently (``group.input_keys``) get one process each, with its
    ``--keys``, fed the events of those topics; all are shifted alike. ``hold_from``: the
    events from that index on wait for :meth:`Traffic.release` (a quiet spell of the
    shop as long as the test needs, e.g. a broker's restart).
    """
    end = len(events.events) if hold_from is None else hold_from
    return Traffic(group, events, _launch(group, events, 0, lead, end), end)


def _launch(
    group: WorkerGroup, events: EventSet, start: int, lead: float, end: int | None = None
) -> list[subprocess.Popen[bytes]]:
    """Traffic processes for the events ``start:end``, one per way of keying; the events
    from ``start`` on shifted once they have opened their FIFOs (see start_traffic)."""
    part = range(start, len(events.events) if end is None else end)

    def way(index: int) -> str:
        topic = TOPIC_OF_TYPE.get(events.events[index].get("type", ""), "")
        return group.input_keys.get(topic, "user")

    ways = sorted({way(i) for i in part})
    spawned = [_spawn_simulate(group, keys) for keys in ways]  # their starts overlap
    fds = [_opened(proc, fifo) for proc, fifo in spawned]
    late = datetime.now(UTC) + timedelta(seconds=lead) - events.at(start)
    if late > timedelta(0):
        events.shift(late, start)
    for keys, fd in zip(ways, fds, strict=True):
        _feed(fd, b"".join(orjson.dumps(events.events[i]) + b"\n" for i in part if way(i) == keys))
    return [proc for proc, _ in spawned]


def _spawn_simulate(group: WorkerGroup, keys: str) -> tuple[subprocess.Popen[bytes], Path]:
    """A traffic process that reads its events from a new FIFO."""
    fifo = group.workdir / f"traffic-{time.monotonic_ns()}.fifo"
    os.mkfifo(fifo)
    log = (group.workdir / "simulate.log").open("ab")
    proc = subprocess.Popen(
        [NUDGE, "simulate", "--file", str(fifo), "--realtime", "--keys", keys],
        env=group.env(99, 0),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc, fifo


def _opened(proc: subprocess.Popen[bytes], fifo: Path) -> int:
    """The FIFO's write end, once the traffic process has opened it for reading."""
    deadline = time.monotonic() + 120
    while True:  # O_NONBLOCK: fails with ENXIO until the reader has opened the FIFO
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            assert proc.poll() is None, f"traffic exited with {proc.returncode}"
            assert time.monotonic() < deadline, "traffic did not open its input in 2 minutes"
            time.sleep(0.05)
    os.set_blocking(fd, True)
    return fd


def _feed(fd: int, data: bytes) -> None:
    def feed() -> None:  # the FIFO holds 64 KiB: the rest is written as it is read
        with os.fdopen(fd, "wb") as pipe, contextlib.suppress(BrokenPipeError):
            pipe.write(data)

    threading.Thread(target=feed, daemon=True, name="traffic-feed").start()


async def wait_produced(group: WorkerGroup, count: int, timeout: float = 60.0) -> float:
    """Wait until the shop's topics hold at least ``count`` events (the traffic process is
    up and producing: on a busy machine its start can take seconds). Returns the wait."""
    started = time.monotonic()
    consumer = AIOKafkaConsumer(bootstrap_servers=group.kafka, group_id=None)
    await consumer.start()
    try:
        keys = ("browse", "cart", "order", "prefs")
        tps = [
            TopicPartition(group.topic(k), p)
            for k in keys
            for p in range(group.input_partitions(k))
        ]
        while True:
            produced = sum((await consumer.end_offsets(tps)).values())
            if produced >= count:
                return time.monotonic() - started
            assert time.monotonic() - started < timeout, f"traffic: {produced} of {count} events"
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


class CpuHog:
    """Busy-loop processes beside the workers: with ``count=2`` both cores of this 2-core
    machine are busy, the condition the suites must survive as well as an idle one
    (``TEST_CPU_HOG`` runs a whole test so; this one is started and stopped mid-test)."""

    def __init__(self, count: int = 2) -> None:
        self.count = count
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.procs += [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.count)
        ]

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
        self.procs = []


@dataclass
class Crossing:
    """What crossed ``nudge.rekeyed`` in a run (``NUDGE_REKEY=misplaced``)."""

    #: Input messages on the shop's topics.
    messages: int
    #: Those not on their user's partition of N, or on a topic of another count.
    misplaced: int
    #: Distinct input messages forwarded (by source and offset: a crash may forward twice).
    forwarded: int
    #: Forwarded records on another partition of ``nudge.rekeyed`` than their user's.
    astray: int

    def __str__(self) -> str:
        return (
            f"{self.misplaced} of {self.messages} input messages misplaced, "
            f"{self.forwarded} forwarded, {self.astray} astray"
        )


async def crossing(group: WorkerGroup) -> Crossing:
    """Read the shop's topics and ``nudge.rekeyed`` to their ends: which messages had to
    cross, and which did (each to its user's partition)."""
    n = group.partitions
    inputs = {
        TopicPartition(group.topic(k), p): group.input_partitions(k)
        for k in ("browse", "cart", "order", "prefs")
        for p in range(group.input_partitions(k))
    }
    rekeyed = [TopicPartition(group.topic("rekeyed"), p) for p in range(n)]
    messages = misplaced = astray = 0
    forwarded: set[tuple[int, int]] = set()
    for tp, record in await _read_to_end(group, [*inputs, *rekeyed]):
        if tp in inputs:
            messages += 1
            owner = partition_of(orjson.loads(record.value)["user_id"].encode(), n)
            misplaced += inputs[tp] != n or tp.partition != owner
            continue
        item = _REKEYED.decode(record.value)
        if isinstance(item, Forwarded):
            forwarded.add((item.source, item.offset))
            user = orjson.loads(item.payload)["user_id"].encode()
            astray += tp.partition != partition_of(user, n)
    return Crossing(messages, misplaced, len(forwarded), astray)


_REKEYED = msgspec.msgpack.Decoder(Forwarded | Horizons)


def assert_most_crossed(crossed: Crossing) -> None:
    """Most input messages had to cross ``nudge.rekeyed`` (the layout really re-keys),
    some did not (a direct topic too), and each misplaced one crossed, to its user."""
    assert crossed.misplaced > crossed.messages / 2, str(crossed)
    assert crossed.misplaced < crossed.messages, str(crossed)
    assert crossed.forwarded == crossed.misplaced, str(crossed)
    assert crossed.astray == 0, str(crossed)


async def _read_to_end(
    group: WorkerGroup, tps: list[TopicPartition]
) -> list[tuple[TopicPartition, Any]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=group.kafka, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[tuple[TopicPartition, Any]] = []
        deadline = time.monotonic() + 60
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            assert time.monotonic() < deadline, "could not read the topics to their ends"
            batch = await consumer.getmany(timeout_ms=1000)
            out += [(tp, record) for tp, records in batch.items() for record in records]
        return out
    finally:
        await consumer.stop()


def cutoff(events: EventSet) -> datetime:
    """The oracle's horizon: every deadline the events arm directly is due by then.

    Later deadlines (a replenishment learned from a user's order intervals) are outside
    the comparison, on both sides.
    """
    return events.last_ts + LONGEST_DELAY + timedelta(seconds=1)


def oracle_sent(events: EventSet, rules: Path) -> Counter[str]:
    records = replay_records(events.path, rules, cutoff(events))
    return Counter(
        r["trigger_id"] for r in records if r["kind"] == "decision" and r["status"] == "sent"
    )


def settle_until(events: EventSet) -> float:
    """Seconds to wait from now until every deadline the events can arm has come due."""
    end = events.last_ts + LONGEST_DELAY + timedelta(seconds=4)
    return max(0.0, (end - datetime.now(UTC)).total_seconds())


async def settle(
    events: EventSet, workers: Iterable[Worker], *, extra: float = 0.0, timeout: float = 60.0
) -> None:
    """Wait until every deadline the events can arm has come due and has been fired.

    A worker restarted late (a kill just before the end of traffic) may still be
    recovering or reading its backlog then: wait on until the running workers have no
    deadline held back (each partition's horizon is the wall clock: every deadline due
    by now has fired) and no input waiting to be applied.
    """
    await asyncio.sleep(settle_until(events) + extra)
    running = [w for w in workers if w.proc.poll() is None]
    deadline = time.monotonic() + timeout
    while busy := [w for w in running if _still_working(w)]:
        if time.monotonic() > deadline:
            raise AssertionError(f"workers still busy after {timeout} s:\n{busy[0].log_tail()}")
        await asyncio.sleep(0.5)


def _still_working(worker: Worker) -> bool:
    try:
        metrics = worker.metrics()
    except OSError:
        return True
    for line in metrics.splitlines():
        if line.startswith("nudge_input_waiting_messages ") and float(line.split()[-1]) > 0:
            return True
        if line.startswith("nudge_deadlines_held_back_seconds{") and float(line.split()[-1]) > 1:
            return True
    return "nudge_ready 1.0" not in metrics


@dataclass
class Verdict:
    oracle: int
    live: int
    missing: list[str]
    duplicated: list[str]
    extra: list[str]
    max_lateness: float
    #: What the first differing live records were (user, trigger, stage, due, fired).
    extra_detail: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"oracle sent {self.oracle}, live sent {self.live}: missing {len(self.missing)}, "
            f"duplicated {len(self.duplicated)}, extra {len(self.extra)}; "
            f"max lateness {self.max_lateness:.1f} s"
            + "".join(f"\n  extra: {line}" for line in self.extra_detail[:5])
        )


#: The crash suite allows this share of the oracle's sends to differ (duplicates never):
#: the worker is at-least-once made idempotent, not transactional, and a ``kill -9`` is
#: the fault that could in principle find what is left of its windows (none was seen in
#: the last runs, soak included; docs/reliability.md). The other suites assert equality.
KILL9_TOLERANCE = 0.01


def assert_matches_oracle(verdict: Verdict, tolerance: float = 0.0) -> None:
    """No duplicates at all; other differences within ``tolerance`` of the oracle's sends."""
    assert verdict.oracle > 50, "the event set must really exercise the engine"
    assert verdict.duplicated == [], f"sent twice: {verdict.duplicated}"
    differing = len(verdict.missing) + len(verdict.extra)
    assert differing <= tolerance * verdict.oracle, str(verdict)


def compare(live_records: list[dict[str, Any]], events: EventSet, rules: Path) -> Verdict:
    """The live ``sent`` records against the oracle's, both up to the oracle's cutoff."""
    oracle = oracle_sent(events, rules)
    end = cutoff(events)
    live_records = [r for r in live_records if datetime.fromisoformat(r["due_at"]) <= end]
    live = Counter(r["trigger_id"] for r in live_records)
    extra = sorted(set(live) - set(oracle))
    detail = [
        f"{r['user_id']} {r['trigger']} {r['stage']} due {r['due_at']} fired {r['fired_at']}"
        f" ({r['trigger_id']})"
        for r in live_records
        if r["trigger_id"] in set(extra)
    ]
    return Verdict(
        oracle=sum(oracle.values()),
        live=sum(live.values()),
        missing=sorted(set(oracle) - set(live)),
        duplicated=sorted(t for t, n in live.items() if n > 1),
        extra=extra,
        max_lateness=max(
            (
                (
                    datetime.fromisoformat(r["fired_at"]) - datetime.fromisoformat(r["due_at"])
                ).total_seconds()
                for r in live_records
            ),
            default=0.0,
        ),
        extra_detail=detail,
    )
