"""``nudge simulate --new-triggers`` on a real broker: catalog events on the catalog topic
keyed by product (no user_id), wishlists and birthdays on the user topics keyed by user;
a missing catalog topic is one line with the fix, before anything is produced."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.integration.harness import NUDGE, create_topics

pytestmark = pytest.mark.integration

KINDS = ("browse", "cart", "order", "prefs", "catalog")


def simulate(kafka: str, topics: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {f"NUDGE_TOPIC_{kind.upper()}": name for kind, name in topics.items()}
    return subprocess.run(
        [NUDGE, "simulate", "--new-triggers", *args],
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, "NUDGE_KAFKA_BOOTSTRAP": kafka, **env},
    )


async def everything(kafka: str, topic: str, partitions: int) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out = []
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                out += records
        return out
    finally:
        await consumer.stop()


async def test_catalog_events_are_keyed_by_product_and_user_events_by_user(
    kafka_bootstrap: str,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    topics = {kind: f"{prefix}.shop.{kind}" for kind in KINDS}
    await create_topics(kafka_bootstrap, list(topics.values()), 3)
    done = simulate(
        kafka_bootstrap, topics, "--users", "60", "--limit", "2500", "--rate", "5000", "--seed", "3"
    )
    assert done.returncode == 0, done.stderr
    assert b"simulate: produced 2500 events" in done.stderr
    types: defaultdict[str, set[str]] = defaultdict(set)
    total = birthdays = 0
    for kind, topic in topics.items():
        for record in await everything(kafka_bootstrap, topic, 3):
            event = orjson.loads(record.value)
            types[kind].add(event["type"])
            birthdays += "birthday" in event
            total += 1
            if kind == "catalog":
                assert "user_id" not in event
                assert record.key == event["product_id"].encode()
            else:
                assert record.key == event["user_id"].encode()
    assert total == 2500
    assert types["catalog"] == {"product_updated"}
    assert "wishlist_added" in types["browse"]
    assert birthdays > 0


def test_a_missing_catalog_topic_is_one_line_with_the_fix(kafka_bootstrap: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    topics = {kind: f"{prefix}.shop.{kind}" for kind in KINDS}
    done = simulate(kafka_bootstrap, topics, "--limit", "10")
    assert done.returncode == 1
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"nudge simulate: topic '{topics['catalog']}' does not exist")
    assert "kafka-topics.sh --create" in lines[0] and "NUDGE_TOPIC_CATALOG" in lines[0]


async def test_a_files_catalog_lines_go_to_the_catalog_topic_keyed_by_product(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    topics = {kind: f"{prefix}.shop.{kind}" for kind in KINDS}
    catalog = {"event_id": "c1", "type": "product_updated", "ts": "2026-11-01T00:00:00Z",
               "product_id": "p1", "in_stock": True}  # fmt: skip
    view = {"event_id": "e1", "type": "product_viewed", "ts": "2026-11-01T00:00:01Z",
            "user_id": "u1", "product_id": "p1"}  # fmt: skip
    file = tmp_path / "events.jsonl"
    file.write_bytes(orjson.dumps(view) + b"\n" + orjson.dumps(catalog) + b"\n")
    env = {f"NUDGE_TOPIC_{kind.upper()}": name for kind, name in topics.items()}
    argv = [NUDGE, "simulate", "--file", str(file), "--rate", "100"]
    run = {**os.environ, "NUDGE_KAFKA_BOOTSTRAP": kafka_bootstrap, **env}

    users = [name for kind, name in topics.items() if kind != "catalog"]
    await create_topics(kafka_bootstrap, users, 2)
    missing = subprocess.run(argv, capture_output=True, timeout=60, check=False, env=run)
    assert missing.returncode == 1
    assert f"topic '{topics['catalog']}' does not exist".encode() in missing.stderr

    await create_topics(kafka_bootstrap, [topics["catalog"]], 2)
    done = subprocess.run(argv, capture_output=True, timeout=60, check=False, env=run)
    assert done.returncode == 0, done.stderr
    (record,) = await everything(kafka_bootstrap, topics["catalog"], 2)
    assert (record.key, orjson.loads(record.value)) == (b"p1", catalog)
    views = await everything(kafka_bootstrap, topics["browse"], 2)
    assert [r.key for r in views] == [b"u1", b"u1"]  # one per run: the view precedes the check
