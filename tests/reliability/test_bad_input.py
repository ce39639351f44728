"""Bad input at scale (issue 6, item 5): a live worker under a flood of malformed messages.

A real ``nudge worker`` (real Kafka, real Redis) reads a stream that mixes, in a
random order, at least 100k malformed messages with valid events (some of them
re-delivered, some with hostile but legal strings). The test checks what an
operator would check:

- the worker process stays up and ``/healthz`` answers 200 throughout;
- every malformed message is in ``shop.events.dlq`` exactly once, at its source
  topic/partition/offset, with its key, its exact raw bytes, its size and the
  reason the contract predicts (equality per message, hence per reason), and
  ``nudge_dead_letters_total{reason}`` says the same;
- every valid event is counted once in ``nudge_events_total`` as ``processed``
  (or ``duplicate`` for the re-deliveries): none lost because of a bad neighbour;
- the worker's resident memory (``VmRSS`` from ``/proc/<pid>/status``) grows by
  less than :data:`RSS_GROWTH_BOUND_MIB` from the end of a warm-up phase to the end.

Size: ``NUDGE_RELIABILITY_SCALE`` (default 1) multiplies the counts, or set
``NUDGE_RELIABILITY_BAD_MESSAGES`` / ``NUDGE_RELIABILITY_VALID_EVENTS`` directly.
``NUDGE_RELIABILITY_SEED`` picks the random stream (default fixed).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import TOPIC_OF_TYPE, Worker, WorkerGroup

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

SCALE = float(os.environ.get("NUDGE_RELIABILITY_SCALE", "1"))
BAD_MESSAGES = int(os.environ.get("NUDGE_RELIABILITY_BAD_MESSAGES", round(100_000 * SCALE)))
VALID_EVENTS = int(os.environ.get("NUDGE_RELIABILITY_VALID_EVENTS", round(5_000 * SCALE)))
SEED = int(os.environ.get("NUDGE_RELIABILITY_SEED", "20261123"))
USERS = 2_000  # the user pool: warm-up touches every user, so state stops growing after it
WARMUP_BAD = 5_000
MAX_MESSAGE_BYTES = 65_536  # the worker's default NUDGE_MAX_MESSAGE_BYTES
#: Allowed VmRSS growth from the end of the warm-up to the end of the run.
RSS_GROWTH_BOUND_MIB = 96
INPUT_KEYS = ("browse", "cart", "order", "prefs")
#: The user events' topics (catalog events have their own topic and no user). Erasures are
#: left out: they forget event ids, and the counts below are about malformed input.
TOPIC_KEY_OF_TYPE = {
    kind: key for kind, key in TOPIC_OF_TYPE.items() if key != "catalog" and kind != "user_erased"
}

#: Legal but hostile strings: bidi overrides, control characters, NUL, zero-width, emoji,
#: injection payloads, format strings. Valid events carry them in ids and free text.
HOSTILE = (
    "\u202eevil\u202c",
    "\u2066rtl\u2069\u200f",
    "nul\u0000byte",
    "bell\u0007\u001b[31mred",
    "\ufeffbom",
    "zero\u200bwidth\u200d",
    "😀🏳️‍🌈",
    "'; DROP TABLE users;--",
    "${jndi:ldap://127.0.0.1/a}",
    "<script>alert(1)</script>",
    "%s%n%x%d",
    "../../etc/passwd",
    "line\nbreak\r\n\ttab",
    '"quoted"\\',
    "a" * 120,
)


def _wire_ts(moment: datetime, rng: random.Random) -> str | int:
    form = rng.randrange(4)
    if form == 0:
        return int(moment.timestamp() * 1000)
    if form == 1:
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    zone = timedelta(hours=rng.choice((8, -5, 5.5)))
    return moment.astimezone(timezone(zone)).isoformat(timespec="milliseconds")


def _user(rng: random.Random, n: int) -> str:
    if n % 10 == 0:
        return f"u{n}-{HOSTILE[n % len(HOSTILE)]}"[:128]
    return f"u{n}"


def _valid_event(rng: random.Random, user: str, serial: int, now: datetime) -> dict[str, Any]:
    kind = rng.choice(tuple(TOPIC_KEY_OF_TYPE))
    event: dict[str, Any] = {
        "event_id": f"ev-{serial}-{rng.choice(HOSTILE)}"[:128],
        "type": kind,
        "user_id": user,
        "ts": _wire_ts(now - timedelta(seconds=rng.uniform(0, 600)), rng),
    }
    product = f"sku-{rng.randrange(200)}"
    if kind in ("product_viewed", "wishlist_added"):
        event.update(product_id=product, category=rng.choice(HOSTILE), price=rng.uniform(0, 99))
    elif kind == "category_viewed":
        event["category"] = rng.choice(HOSTILE)
    elif kind == "search":
        event["query"] = rng.choice(HOSTILE) * rng.randint(1, 5)
    elif kind == "cart_item_added":
        event.update(product_id=product, quantity=rng.randint(1, 3), unit_price=9.5)
    elif kind == "cart_item_removed":
        event.update(product_id=rng.randrange(10**6), quantity=rng.choice((None, 1)))
    elif kind == "order_placed":
        lines = [
            {"product_id": f"sku-{rng.randrange(200)}", "quantity": 1, "unit_price": 5.0}
            for _ in range(rng.randint(1, 3))
        ]
        event.update(order_id=f"o-{serial}", items=lines)
    elif kind == "order_cancelled":
        event["order_id"] = f"o-{rng.randrange(serial + 1)}"
    elif kind == "preferences_updated":
        event.update(marketing_opt_in=rng.choice((True, False, None)), timezone="Asia/Shanghai")
    elif kind.startswith("message_"):  # delivery feedback (contract 8.3)
        event.update(trigger_id=rng.choice(HOSTILE), channel=rng.choice(("push", "email")))
        if kind == "message_bounced":
            event["bounce"] = rng.choice(("hard", "soft"))
        if kind == "message_clicked" and rng.random() < 0.5:
            event["url"] = f"https://shop.example/{rng.choice(HOSTILE)}"
        return event  # their "channel" is the message's (above), not the shop's free text
    if rng.random() < 0.2:
        event["channel"] = rng.choice(("web", "app", *HOSTILE))
    return event


def _valid_bytes(rng: random.Random, event: dict[str, Any]) -> bytes:
    """A valid event's wire bytes, sometimes in a legal but unusual shape."""
    raw = orjson.dumps(event)
    shape = rng.random()
    if shape < 0.02:  # duplicate key: the last one wins (orjson, and the contract's parser)
        return b'{"user_id":"decoy",' + raw[1:]
    if shape < 0.04:  # deep (but legal) nesting in an unknown field
        return raw[:-1] + b',"nest":' + b"[" * 500 + b"]" * 500 + b"}"
    if shape < 0.045:  # close to the size limit, but under it
        return raw[:-1] + b',"pad":"' + b"x" * (MAX_MESSAGE_BYTES - len(raw) - 64) + b'"}'
    if shape < 0.06:  # explicit nulls for optional fields, test=false
        if str(event["type"]).startswith("message_"):  # feedback: its channel is required
            return raw[:-1] + b',"test":false}'
        return raw[:-1] + b',"channel":null,"test":false}'
    return raw


# --- malformed messages: each generator returns (bytes, the reason the contract predicts) ---

Gen = Callable[[random.Random], tuple[bytes, str]]


def _ascii_event(rng: random.Random, kind: str = "product_viewed") -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": f"bad-{rng.getrandbits(40)}",
        "type": kind,
        "user_id": f"u{rng.randrange(USERS)}",
        "ts": "2026-11-23T10:00:00Z",
    }
    if kind in ("product_viewed", "cart_item_added"):
        event["product_id"] = "sku-1"
    if kind == "search":
        event["query"] = "boots"
    if kind == "order_placed":
        event.update(order_id="o-1", items=[{"product_id": "p", "quantity": 1, "unit_price": 1}])
    return event


def _splice(event: dict[str, Any], name: str, raw_value: bytes) -> bytes:
    """The event's JSON with field ``name`` set to literal bytes (not necessarily JSON)."""
    body = orjson.dumps({k: v for k, v in event.items() if k != name})
    return body[:-1] + b',"' + name.encode() + b'":' + raw_value + b"}"


def garbage_bytes(rng: random.Random) -> tuple[bytes, str]:
    return b"\xff" + rng.randbytes(rng.randint(0, 300)), "bad_encoding"


def invalid_utf8_in_string(rng: random.Random) -> tuple[bytes, str]:
    bad = rng.choice((b"\xc3\x28", b"\xa0\xa1", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"))
    return _splice(_ascii_event(rng, "search"), "query", b'"x' + bad + b'y"'), "bad_encoding"


def text_garbage(rng: random.Random) -> tuple[bytes, str]:
    text = "".join(rng.choice("<>abc{}[]:,\"' \\/?") for _ in range(rng.randint(1, 200)))
    return ("<" + text).encode(), "not_json"


def truncated_json(rng: random.Random) -> tuple[bytes, str]:
    raw = orjson.dumps(_ascii_event(rng, rng.choice(("product_viewed", "order_placed"))))
    return raw[: rng.randint(1, len(raw) - 1)], "not_json"


def empty_or_blank(rng: random.Random) -> tuple[bytes, str]:
    return rng.choice((b"", b" ", b"\n\t\r ", b"\x00")), "not_json"


def deep_nesting(rng: random.Random) -> tuple[bytes, str]:
    depth = 10_000
    if rng.random() < 0.5:
        return b"[" * depth + b"]" * depth, "not_json"
    return _splice(_ascii_event(rng), "extra", b'{"a":' * depth + b"1" + b"}" * depth), "not_json"


def number_overflow(rng: random.Random) -> tuple[bytes, str]:
    literal = rng.choice((b"1e999", b"-1e400", b"123456789e99999"))
    return _splice(_ascii_event(rng), "price", literal), "not_json"


def nan_infinity(rng: random.Random) -> tuple[bytes, str]:
    literal = rng.choice((b"NaN", b"Infinity", b"-Infinity", b"nan"))
    return _splice(_ascii_event(rng), "price", literal), "not_json"


def lone_surrogate(rng: random.Random) -> tuple[bytes, str]:
    return _splice(_ascii_event(rng), "user_id", b'"\\ud800x"'), "not_json"


def raw_control_character(rng: random.Random) -> tuple[bytes, str]:
    char = bytes([rng.choice((0, 1, 7, 8, 10, 13, 27, 31))])
    return _splice(_ascii_event(rng, "search"), "query", b'"a' + char + b'b"'), "not_json"


def byte_order_mark(rng: random.Random) -> tuple[bytes, str]:
    return b"\xef\xbb\xbf" + orjson.dumps(_ascii_event(rng)), "not_json"


def not_an_object(rng: random.Random) -> tuple[bytes, str]:
    return rng.choice((b"[]", b'[{"type":"search"}]', b'"search"', b"42", b"null", b"true")), (
        "not_object"
    )


def unknown_type(rng: random.Random) -> tuple[bytes, str]:
    kind = rng.choice(("teleported", "", "PRODUCT_VIEWED", "order_placed ", "search\u202e", "\x00"))
    return orjson.dumps({**_ascii_event(rng), "type": kind}), "unknown_type"


def missing_field(rng: random.Random) -> tuple[bytes, str]:
    kind = rng.choice(("product_viewed", "search", "order_placed", "category_viewed"))
    event = _ascii_event(rng, kind)
    required = {
        "product_viewed": "product_id",
        "search": "query",
        "order_placed": "items",
        "category_viewed": "category",
    }[kind]
    name = rng.choice(("type", "event_id", "user_id", "ts", required))
    if name in event and rng.random() < 0.5:
        event[name] = None  # null means absent
    else:
        event.pop(name, None)
    return orjson.dumps(event), "missing_field"


def wrong_type(rng: random.Random) -> tuple[bytes, str]:
    event = _ascii_event(rng, "cart_item_added")
    name, value = rng.choice(
        (
            ("type", 5),
            ("user_id", 12345),
            ("user_id", ["u1"]),
            ("event_id", {"id": 1}),
            ("ts", True),
            ("ts", 1.7e12),
            ("ts", ["2026-11-23T10:00:00Z"]),
            ("quantity", "2"),
            ("quantity", 1.5),
            ("unit_price", "9.99"),
            ("test", "yes"),
            ("channel", 7),
            ("product_id", 1.0),
        )
    )
    return orjson.dumps({**event, name: value}), "wrong_type"


def invalid_value(rng: random.Random) -> tuple[bytes, str]:
    event = _ascii_event(rng, "cart_item_added")
    name, value = rng.choice(
        (
            ("event_id", ""),
            ("user_id", "u" * 129),
            ("quantity", 0),
            ("quantity", -3),
            ("unit_price", -0.01),
            ("ts", "2026-02-30T10:00:00Z"),
            ("ts", "yesterday"),
            ("ts", "2026-11-23T10:00:00+25:00"),
            ("ts", 10**16),
            ("ts", "٢026-11-23T10:00:00Z"),
            ("product_id", ""),
        )
    )
    if rng.random() < 0.15:
        prefs = _ascii_event(rng, "preferences_updated")
        return orjson.dumps({**prefs, "timezone": "Mars/Olympus"}), "invalid_value"
    return orjson.dumps({**event, name: value}), "invalid_value"


def naive_timestamp(rng: random.Random) -> tuple[bytes, str]:
    ts = rng.choice(("2026-11-23T10:00:00", "2026-11-23 10:00:00.123", "2026-11-23t10:00:00.5"))
    return orjson.dumps({**_ascii_event(rng), "ts": ts}), "naive_timestamp"


def oversize(rng: random.Random) -> tuple[bytes, str]:
    size = rng.randint(MAX_MESSAGE_BYTES + 1, 3 * MAX_MESSAGE_BYTES)
    if rng.random() < 0.3:
        return b"\xfe" * size, "oversize"  # oversize wins over every other reason
    raw = orjson.dumps(_ascii_event(rng, "search"))
    return raw[:-1] + b',"pad":"' + b"y" * (size - len(raw) - 9) + b'"}', "oversize"


#: (generator, weight). Heavy messages (oversize, deep nesting) are rarer.
GENERATORS: tuple[tuple[Gen, float], ...] = (
    (garbage_bytes, 10),
    (invalid_utf8_in_string, 5),
    (text_garbage, 8),
    (truncated_json, 12),
    (empty_or_blank, 3),
    (deep_nesting, 0.5),
    (number_overflow, 4),
    (nan_infinity, 4),
    (lone_surrogate, 3),
    (raw_control_character, 4),
    (byte_order_mark, 2),
    (not_an_object, 4),
    (unknown_type, 8),
    (missing_field, 10),
    (wrong_type, 10),
    (invalid_value, 8),
    (naive_timestamp, 8),
    (oversize, 0.25),
)


@dataclass(frozen=True)
class Message:
    topic_key: str
    key: bytes | None
    value: bytes
    reason: str | None  # None: a valid event
    generator: str = ""
    duplicate: bool = False


def malformed(rng: random.Random, count: int) -> Iterator[Message]:
    gens = [g for g, _ in GENERATORS]
    weights = [w for _, w in GENERATORS]
    for _ in range(count):
        gen = rng.choices(gens, weights)[0]
        value, reason = gen(rng)
        key = rng.choice((None, b"", rng.randbytes(8), f"u{rng.randrange(USERS)}".encode()))
        yield Message(rng.choice(INPUT_KEYS), key, value, reason, gen.__name__)


def valid(rng: random.Random, count: int, users: list[str], start: int) -> list[Message]:
    now = datetime.now(UTC)
    out: list[Message] = []
    for n in range(count):
        user = users[n % len(users)] if start == 0 else rng.choice(users)
        event = _valid_event(rng, user, start + n, now)
        message = Message(
            TOPIC_KEY_OF_TYPE[event["type"]], user.encode(), _valid_bytes(rng, event), None
        )
        out.append(message)
        if start and rng.random() < 0.03:  # a re-delivery: same user, same event id
            out.append(Message(message.topic_key, message.key, message.value, None, "", True))
    return out


def interleave(rng: random.Random, a: list[Message], b: list[Message]) -> list[Message]:
    """Random merge keeping each list's own order (re-deliveries stay after originals)."""
    out: list[Message] = []
    i = j = 0
    while i < len(a) or j < len(b):
        left = len(a) - i
        if j >= len(b) or (left and rng.random() < left / (left + len(b) - j)):
            out.append(a[i])
            i += 1
        else:
            out.append(b[j])
            j += 1
    return out


# --- observing the worker ------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


@dataclass
class Monitor:
    """Samples the worker's RSS, liveness and /healthz every ``interval`` seconds."""

    worker: Worker
    interval: float = 0.5
    samples: list[tuple[float, int]] = field(default_factory=list)
    health_failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            at = time.monotonic() - started
            if self.worker.proc.poll() is not None:
                self.health_failures.append(f"{at:.1f}s: exited {self.worker.proc.returncode}")
                return
            self.samples.append((at, rss_kib(self.worker.proc.pid)))
            try:
                status = self.worker.get("/healthz")[0]
                if status != 200:
                    self.health_failures.append(f"{at:.1f}s: /healthz {status}")
            except OSError as exc:
                self.health_failures.append(f"{at:.1f}s: /healthz {exc!r}")
            self._stop.wait(self.interval)


@dataclass
class Counts:
    dead_letters: Counter[str]
    outcomes: Counter[str]  # of valid events (type != "invalid")
    invalid_events: int

    @classmethod
    def scrape(cls, worker: Worker) -> Counts:
        dead: Counter[str] = Counter()
        outcomes: Counter[str] = Counter()
        invalid = 0
        for family in text_string_to_metric_families(worker.metrics()):
            for sample in family.samples:
                if sample.name == "nudge_dead_letters_total":
                    dead[sample.labels["reason"]] += int(sample.value)
                elif sample.name == "nudge_events_total":
                    if sample.labels["type"] == "invalid":
                        invalid += int(sample.value)
                    else:
                        outcomes[sample.labels["outcome"]] += int(sample.value)
        return cls(dead, outcomes, invalid)

    @property
    def valid_seen(self) -> int:
        """Valid events applied: processed, duplicates, erasures and events older than their
        user's erasure (contract 8.5: ignored, but valid)."""
        outcomes = self.outcomes
        return (
            outcomes["processed"]
            + outcomes["duplicate"]
            + outcomes["erased"]
            + outcomes["before_erasure"]
        )


async def produce_all(group: WorkerGroup, messages: list[Message]) -> list[tuple[str, int, int]]:
    """Send fast (batched, not one by one); return each message's (topic, partition, offset)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=group.kafka,
        acks="all",
        linger_ms=10,
        max_batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    try:
        futures = [
            await producer.send(group.topic(m.topic_key), value=m.value, key=m.key)
            for m in messages
        ]
        await producer.flush()
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(meta.topic, meta.partition, meta.offset) for meta in metas]


async def read_topic(group: WorkerGroup, key: str, timeout: float) -> list[Any]:
    """Every record of one of the group's topics, from the beginning to its current end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=group.kafka,
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(group.topic(key), p) for p in range(group.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            assert time.monotonic() < deadline, f"reading {key} took over {timeout} s"
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for part in batch.values():
                records.extend(part)
        return records
    finally:
        await consumer.stop()


def digest(raw: bytes) -> bytes:
    return hashlib.blake2b(raw, digest_size=16).digest()


async def wait_counted(
    worker: Worker, bad: int, valid: int, *, stall: float = 60.0
) -> tuple[Counts, float]:
    """Poll /metrics until the worker has counted every message; fail on a stall."""
    started = time.monotonic()
    last_progress, last_total = started, -1
    while True:
        assert worker.proc.poll() is None, f"worker exited:\n{worker.log_tail()}"
        counts = Counts.scrape(worker)
        total = sum(counts.dead_letters.values()) + counts.valid_seen
        if sum(counts.dead_letters.values()) >= bad and counts.valid_seen >= valid:
            return counts, time.monotonic() - started
        if total != last_total:
            last_progress, last_total = time.monotonic(), total
        assert time.monotonic() - last_progress < stall, (
            f"no progress for {stall} s: {sum(counts.dead_letters.values())}/{bad} dead letters, "
            f"{counts.valid_seen}/{valid} valid; outcomes {dict(counts.outcomes)}\n"
            f"{worker.log_tail(20)}"
        )
        await asyncio.sleep(0.5)


# --- the test ------------------------------------------------------------------------------


@pytest.fixture
def group(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Iterator[WorkerGroup]:
    rules = tmp_path / "rules.yaml"
    rules.write_text("# the built-in defaults\n")
    grp = WorkerGroup(kafka_bootstrap, redis_url, rules, tmp_path, partitions=4)
    yield grp
    grp.stop_all()


async def test_malformed_flood_is_dead_lettered_and_valid_events_survive(
    group: WorkerGroup,
) -> None:
    rng = random.Random(SEED)
    users = [_user(rng, n) for n in range(USERS)]
    worker = group.start()

    # Warm-up: every user once (their state exists afterwards) plus some malformed input.
    warm_valid = valid(rng, USERS, users, 0)
    warm_bad = list(malformed(rng, WARMUP_BAD))
    warm = interleave(rng, warm_valid, warm_bad)
    await produce_all(group, warm)
    await wait_counted(worker, len(warm_bad), len(warm_valid))
    await asyncio.sleep(2)  # let the changelog / RocksDB writes of the warm-up settle
    baseline_kib = rss_kib(worker.proc.pid)
    before = Counts.scrape(worker)

    # The flood: BAD_MESSAGES malformed messages among VALID_EVENTS valid ones.
    main_valid = valid(rng, VALID_EVENTS, users, USERS)
    main_bad = list(malformed(rng, BAD_MESSAGES))
    stream = interleave(rng, main_valid, main_bad)
    monitor = Monitor(worker)
    monitor.start()
    produce_started = time.monotonic()
    positions = await produce_all(group, stream)
    produce_seconds = time.monotonic() - produce_started
    try:
        counts, drain_seconds = await wait_counted(
            worker, len(warm_bad) + len(main_bad), len(warm_valid) + len(main_valid)
        )
        await asyncio.sleep(1)  # one more sample at rest
    finally:
        monitor.stop()
    worker_seconds = produce_seconds + drain_seconds
    final_kib = rss_kib(worker.proc.pid)

    # 1. The worker stayed up and healthy the whole time, and its agent never crashed.
    assert worker.proc.poll() is None
    assert monitor.health_failures == []
    assert worker.get("/healthz")[0] == 200
    assert worker.get("/readyz")[0] == 200
    log = worker.log_path.read_text(errors="replace")
    assert "Crashed reason" not in log and "Restarting dead" not in log, worker.log_tail(20)

    # 2. Every malformed message is in the DLQ exactly once, as sent, with the predicted reason.
    expected: dict[tuple[str, int, int], Message] = {
        pos: m for pos, m in zip(positions, stream, strict=True) if m.reason is not None
    }
    dlq = await read_topic(group, "dlq", timeout=180)
    seen: set[tuple[str, int, int]] = set()
    reasons: Counter[str] = Counter()
    wrong: list[str] = []
    for record in dlq:
        letter = orjson.loads(record.value)
        pos = (letter["topic"], letter["partition"], letter["offset"])
        reasons[letter["reason"]] += 1
        if pos in seen:
            wrong.append(f"{pos} dead-lettered twice")
        seen.add(pos)
        sent = expected.get(pos)
        if sent is None:
            continue  # a warm-up message (checked by count below)
        raw = (
            letter["raw"].encode("utf-8")
            if "raw" in letter
            else base64.b64decode(letter["raw_base64"])
        )
        problems = []
        if letter["kind"] != "dead_letter":
            problems.append(f"kind {letter['kind']}")
        if letter["reason"] != sent.reason:
            problems.append(f"reason {letter['reason']!r}, expected {sent.reason!r}")
        if not letter["detail"]:
            problems.append("empty detail")
        if letter["size"] != len(sent.value) or digest(raw) != digest(sent.value):
            problems.append("raw payload differs")
        if record.key != sent.key:
            problems.append(f"key {record.key!r}, sent {sent.key!r}")
        if problems:
            wrong.append(f"{sent.generator} at {pos}: {', '.join(problems)}")
    missing = [f"{m.generator} at {pos}" for pos, m in expected.items() if pos not in seen]
    assert not wrong, f"{len(wrong)} bad dead letters, e.g. {wrong[:10]}"
    assert not missing, f"{len(missing)} malformed messages not dead-lettered: {missing[:10]}"
    sent_reasons = Counter(m.reason for m in warm_bad + main_bad)
    assert reasons == sent_reasons
    assert len(dlq) == len(warm_bad) + len(main_bad)
    assert counts.dead_letters == sent_reasons
    assert counts.invalid_events == len(warm_bad) + len(main_bad)

    # 3. Every valid event was processed once; re-deliveries were recognised as such.
    redelivered = sum(m.duplicate for m in main_valid)
    assert counts.outcomes["processed"] == len(warm_valid) + len(main_valid) - redelivered
    assert counts.outcomes["duplicate"] == redelivered
    assert counts.outcomes["error"] == 0 and counts.outcomes["test"] == 0

    # 4. Memory stayed bounded.
    peak_kib = max(kib for _, kib in monitor.samples)
    growth_mib = (max(peak_kib, final_kib) - baseline_kib) / 1024
    figures = {
        "malformed": len(warm_bad) + len(main_bad),
        "valid": len(warm_valid) + len(main_valid),
        "redelivered": redelivered,
        "per_reason": dict(sorted(sent_reasons.items())),
        "produce_seconds": round(produce_seconds, 1),
        "worker_seconds": round(worker_seconds, 1),
        "messages_per_second": round(len(stream) / worker_seconds),
        "rss_mib": {
            "baseline": round(baseline_kib / 1024, 1),
            "peak": round(peak_kib / 1024, 1),
            "final": round(final_kib / 1024, 1),
            "growth": round(growth_mib, 1),
            "bound": RSS_GROWTH_BOUND_MIB,
        },
        "rss_samples": len(monitor.samples),
        "rss_curve_mib": [  # (seconds into the flood, VmRSS) at each tenth of the run
            (round(at), round(kib / 1024, 1))
            for at, kib in monitor.samples[:: max(1, len(monitor.samples) // 10)]
        ],
        "before_main": sum(before.dead_letters.values()),
    }
    print("bad-input figures:", orjson.dumps(figures).decode())
    # Bounded: a refusal kept until the checkpoint once chained the parser's error, whose
    # traceback held the parser's frames and the message; they outlived the young
    # generation and this flood grew the worker by ~0.9 GiB (docs/reliability.md).
    assert growth_mib < RSS_GROWTH_BOUND_MIB, f"worker RSS grew {growth_mib:.0f} MiB: {figures}"


EDGE_RULES = """
default_timezone: UTC
triggers:
  browse_abandonment: {stages: [2s], cooldown: 1s}
contact_policy: {max_delay: 1h}
"""


async def test_messages_whose_dead_letter_is_hard_to_write(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    """Kafka accepts them, the parser refuses them, and writing their dead letter is the hard
    part: a tombstone (no value at all), and payloads well under Kafka's 1 MB limit whose
    dead-letter record (JSON-escaped or base64 raw) is larger than that. Each must still be
    dead-lettered and counted, the agent must not crash, and the partition's deadlines must
    not stall behind them."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(EDGE_RULES)
    group = WorkerGroup(kafka_bootstrap, redis_url, rules, tmp_path, partitions=2)
    worker = group.start()
    try:
        control = b'"' + b"\x01" * 300_000 + b'"'  # 300 kB; escaped as \\u0001: 1.8 MB
        invalid_utf8 = b"\xff" * 800_000  # 800 kB; base64: 1.07 MB
        cases = [(None, "not_json"), (control, "oversize"), (invalid_utf8, "oversize")]
        producer = AIOKafkaProducer(bootstrap_servers=group.kafka, acks="all")
        await producer.start()
        try:
            positions = []
            for value, _ in cases:  # the last messages of shop.cart partition 0
                meta = await producer.send_and_wait(
                    group.topic("cart"), value=value, key=b"edge-user", partition=0
                )
                positions.append((meta.topic, meta.partition, meta.offset))
            # A valid neighbour on the same partition of another topic: its reminder is due 2 s
            # after it, and must fire although shop.cart partition 0 ends with the cases above.
            view = {
                "event_id": "edge-1",
                "type": "product_viewed",
                "user_id": "edge-viewer",
                "ts": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "product_id": "p-1",
            }
            await producer.send_and_wait(
                group.topic("browse"), value=orjson.dumps(view), key=b"edge-viewer", partition=0
            )
        finally:
            await producer.stop()

        deadline = time.monotonic() + 30
        while True:
            counts = Counts.scrape(worker)
            if sum(counts.dead_letters.values()) >= len(cases) and counts.valid_seen >= 1:
                break
            assert time.monotonic() < deadline, (
                f"dead letters {dict(counts.dead_letters)}, valid {counts.valid_seen}; "
                f"expected {len(cases)} and 1\n{worker.log_tail(5)[-3000:]}"
            )
            await asyncio.sleep(0.5)
        assert counts.dead_letters == Counter(reason for _, reason in cases)

        letters = {
            (d["topic"], d["partition"], d["offset"]): d
            for d in (orjson.loads(r.value) for r in await read_topic(group, "dlq", timeout=30))
        }
        for (value, reason), pos in zip(cases, positions, strict=True):
            letter = letters.get(pos)
            assert letter is not None, f"{reason} at {pos} is not in the DLQ"
            assert letter["reason"] == reason and letter["size"] == len(value or b"")
            # The raw payload may be cut to keep the record under Kafka's limit; never altered.
            if "raw" in letter:
                assert (value or b"").startswith(letter["raw"].encode("utf-8"))
            elif "raw_base64" in letter:
                assert (value or b"").startswith(base64.b64decode(letter["raw_base64"]))

        # The reminder of the valid neighbour fires: the partition is not held back.
        deadline = time.monotonic() + 30
        while not any(
            r.key == b"edge-viewer" for r in await read_topic(group, "triggers", timeout=10)
        ):
            held = [
                line for line in worker.metrics().splitlines()
                if line.startswith("nudge_deadlines_held_back_seconds")
            ]  # fmt: skip
            assert time.monotonic() < deadline, f"the browse reminder never fired: {held}"
            await asyncio.sleep(1)
        log = worker.log_path.read_text(errors="replace")
        assert "Crashed reason" not in log and "Restarting dead" not in log, worker.log_tail(5)
        assert worker.proc.poll() is None and worker.get("/healthz")[0] == 200
    finally:
        group.stop_all()
