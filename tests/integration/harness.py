"""Test harness for the live service: a real ``nudge worker`` subprocess on real Kafka and Redis.

Each :class:`WorkerGroup` gets its own topic names and consumer-group id, so
tests never see each other's records even on one broker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from triggers.events import INPUT_TOPIC_OF_TYPE as CONTRACT_TOPIC_OF_TYPE

ROOT = Path(__file__).resolve().parents[2]
NUDGE = str(Path(sys.executable).parent / "nudge")

TOPIC_KEYS = (
    "browse", "cart", "order", "prefs", "triggers", "audit", "dlq", "ticks", "rekeyed",
    "catalog", "interest", "fanout", "engagement",
)  # fmt: skip
DEFAULT_NAMES = {
    "rekeyed": "nudge.rekeyed",
    "browse": "shop.browse",
    "cart": "shop.cart",
    "order": "shop.order",
    "prefs": "shop.prefs",
    "triggers": "marketing.triggers",
    "audit": "marketing.triggers.audit",
    "dlq": "shop.events.dlq",
    "ticks": "nudge.ticks",
    "catalog": "shop.catalog",
    "interest": "nudge.interest",
    "fanout": "nudge.catalog-fanout",
    "engagement": "marketing.engagement",
}
#: event type -> topic key, from the contract's type -> default topic map.
TOPIC_OF_TYPE = {
    event_type: next(key for key, name in DEFAULT_NAMES.items() if name == topic)
    for event_type, topic in CONTRACT_TOPIC_OF_TYPE.items()
} | {"product_updated": "catalog"}


def replay_records(events: Path, rules: Path, until: datetime) -> list[dict[str, Any]]:
    """``nudge replay`` on a file, as a user would run it: the oracle for the live worker."""
    replay = subprocess.run(
        [NUDGE, "replay", str(events), "--rules", str(rules),
         "--until", until.isoformat().replace("+00:00", "Z")],
        capture_output=True,
        check=True,
    )  # fmt: skip
    return [orjson.loads(line) for line in replay.stdout.splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WorkerGroup:
    """One app id + topic set, and the worker processes running it."""

    kafka: str
    redis_url: str
    rules_path: Path
    workdir: Path
    partitions: int = 4
    name: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")
    workers: list[Worker] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    #: The worker never creates input topics: the group creates them (``partitions`` each)
    #: before a start, as a shop would have them. False to start without them.
    create_inputs: bool = True
    #: Also create ``shop.catalog`` (a rules file with a catalog trigger on needs it).
    catalog: bool = False
    #: Input topic key ("browse", ...) -> its own partition count (else ``partitions``).
    input_counts: dict[str, int] = field(default_factory=dict)
    #: Input topic key -> how the shop's producer keys its messages: ``user`` (by
    #: ``user_id``, the default), ``random`` or ``null`` (``nudge simulate --keys``).
    input_keys: dict[str, str] = field(default_factory=dict)

    def topic(self, key: str) -> str:
        return f"{self.name}.{DEFAULT_NAMES[key]}"

    def input_partitions(self, key: str) -> int:
        """The partition count of an input topic (``input_counts``, else ``partitions``)."""
        return self.input_counts.get(key, self.partitions)

    @property
    def suppression_key(self) -> str:
        return f"{self.name}:suppressed"

    def env(self, index: int, web_port: int) -> dict[str, str]:
        env = {
            **os.environ,
            "NUDGE_KAFKA_BOOTSTRAP": self.kafka,
            "NUDGE_REDIS_URL": self.redis_url,
            "NUDGE_APP_ID": f"nudge-{self.name}",
            "NUDGE_RULES_PATH": str(self.rules_path),
            "NUDGE_DATA_DIR": str(self.workdir / f"data-{index}"),
            "NUDGE_WEB_PORT": str(web_port),
            "NUDGE_WEB_HOST": "127.0.0.1",
            "NUDGE_PARTITIONS": str(self.partitions),
            "NUDGE_REDIS_SUPPRESSION_KEY": self.suppression_key,
            "NUDGE_REDIS_KEY_PREFIX": f"{self.name}:",
            "NUDGE_LOG_LEVEL": "INFO",
            "NUDGE_KAFKA_SESSION_TIMEOUT_SECONDS": "6",
            **{f"NUDGE_TOPIC_{k.upper()}": self.topic(k) for k in TOPIC_KEYS},
            **self.extra_env,
        }
        return env

    def create_input_topics(self) -> None:
        keys = ("browse", "cart", "order", "prefs", *(("catalog",) if self.catalog else ()))
        with ThreadPoolExecutor(1) as pool:  # callable from a test inside a running loop
            for key in keys:
                create = create_topics(self.kafka, [self.topic(key)], self.input_partitions(key))
                pool.submit(asyncio.run, create).result()

    def start(self, index: int = 0, *, wait_ready: bool = True) -> Worker:
        if self.create_inputs:
            self.create_input_topics()
        port = free_port()
        log = (self.workdir / f"worker-{index}.log").open("ab")
        proc = subprocess.Popen(
            [NUDGE, "worker"],
            env=self.env(index, port),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        worker = Worker(proc, port, self.workdir / f"worker-{index}.log")
        self.workers.append(worker)
        if wait_ready:
            worker.wait_ready()
        return worker

    def stop_all(self) -> None:
        procs = [w.proc for w in self.workers]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def create_topics(kafka: str, names: list[str], partitions: int) -> None:
    """Create the topics that do not exist yet, ``partitions`` each."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        missing = [n for n in names if n not in set(await admin.list_topics())]
        if missing:
            await admin.create_topics([NewTopic(n, partitions, 1) for n in missing])
        for _ in range(100):  # until the metadata reports them, with their partitions
            described = {t["topic"]: t["partitions"] for t in await admin.describe_topics()}
            if all(described.get(n) for n in names):
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"worker exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not ready after {timeout} s:\n{self.log_tail()}")

    def metrics(self) -> str:
        return self.get("/metrics")[1].decode()

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


async def produce(
    group: WorkerGroup, events: Iterable[dict[str, Any] | bytes], *, topic: str | None = None
) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=group.kafka, acks="all")
    await producer.start()
    n = 0
    try:
        for event in events:
            if isinstance(event, bytes):
                await producer.send(topic or group.topic("browse"), value=event)
            else:
                target = topic or group.topic(TOPIC_OF_TYPE[event["type"]])
                key = event.get("user_id") or event["product_id"]  # catalog: by product
                await producer.send(target, value=orjson.dumps(event), key=key.encode())
            n += 1
        await producer.flush()
    finally:
        await producer.stop()
    return n


async def changelog_records(
    group: WorkerGroup, table: str, keep: Callable[[bytes], bool]
) -> dict[bytes, list[bytes | None]]:
    """A table's changelog (``users``, ``products``) read to its end: the records of the
    keys ``keep`` accepts, per key in offset order (None: a tombstone)."""
    topic = f"nudge-{group.name}-{table}-changelog"
    consumer = AIOKafkaConsumer(bootstrap_servers=group.kafka, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(group.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        rows: dict[bytes, list[bytes | None]] = {}
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for r in records:
                    if r.key is not None and keep(r.key):
                        rows.setdefault(r.key, []).append(r.value)
        return rows
    finally:
        await consumer.stop()


async def read_all(group: WorkerGroup, key: str, *, timeout: float = 2.0) -> list[dict[str, Any]]:
    """Every record currently in one of the group's topics (from the beginning)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=group.kafka, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        # The worker creates every topic with the group's partition count at start-up.
        tps = [TopicPartition(group.topic(key), p) for p in range(group.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout + 10

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            batch = await consumer.getmany(timeout_ms=int(timeout * 1000))
            for records in batch.values():
                out.extend(orjson.loads(r.value) for r in records)
            if time.monotonic() > deadline:
                break
        return out
    finally:
        await consumer.stop()


async def wait_for(
    group: WorkerGroup,
    key: str,
    predicate: Callable[[list[dict[str, Any]]], bool],
    *,
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        records = await read_all(group, key)
        if predicate(records):
            return records
        await asyncio.sleep(0.5)
    state = "\n".join(
        line
        for w in group.workers
        if w.proc.poll() is None
        for line in w.metrics().splitlines()
        if line.startswith(("nudge_pending", "nudge_deadlines_held", "nudge_redis", "nudge_ticks"))
    )
    raise AssertionError(
        f"timed out waiting on {key}; last {len(records)} records: {records[-10:]}\n{state}"
    )
