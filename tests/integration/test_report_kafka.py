"""``nudge report --from-kafka`` on a real broker: the same report as from the same records
in a file (engagement records and the funnel included), an end that comes (empty topic,
records written after the start), and one readable line for a topic that does not exist."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from simulation.synthetic import write_event_file
from tests.integration.harness import NUDGE, create_topics

pytestmark = pytest.mark.integration

RULES = """\
version: report-kafka
channels:
  push: {frequency_cap: {max: 1, per: 24h}}
  email: {cost: 0.002}
contact_policy: {holdout_percent: 20}
triggers:
  cart_abandonment:
    variants: {a: 1, b: 1}
"""


def feedback(audit: bytes) -> list[bytes]:
    """A delivery provider's answer to each sent decision of ``audit`` (nudge replay's
    output): delivered (97 %), else a soft bounce; opened (30 %), clicked (8 %); chosen by a
    hash of the trigger_id, a few minutes after the send."""
    out = []
    for line in audit.splitlines():
        record = orjson.loads(line)
        if record["kind"] != "decision" or record["status"] != "sent":
            continue
        tid = record["trigger_id"]
        draw = int.from_bytes(hashlib.blake2b(tid.encode(), digest_size=4).digest()) / 2**32
        sent = datetime.fromisoformat(record["fired_at"])
        steps: list[tuple[str, dict[str, str]]] = [
            ("message_delivered", {}) if draw < 0.97 else ("message_bounced", {"bounce": "soft"})
        ]
        if draw < 0.30:
            steps.append(("message_opened", {}))
        if draw < 0.08:
            steps.append(("message_clicked", {}))
        for minutes, (type_, extra) in enumerate(steps, start=1):
            event = {"event_id": f"{tid}-{type_}", "type": type_, "user_id": record["user_id"],
                     "ts": (sent + timedelta(minutes=minutes)).isoformat(), "trigger_id": tid,
                     "channel": record["channel"], **extra}  # fmt: skip
            out.append(orjson.dumps(event))
    return out


def report(
    *args: str, kafka: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [NUDGE, "report", *args],
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, "NUDGE_KAFKA_BOOTSTRAP": kafka, **(env or {})},
    )


@pytest.fixture(scope="module")
def audit_lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """Audit records of a replay of 1,500 synthetic shoppers over 20 days (holdout 20 %,
    two variants, two channels) with delivery feedback on what was sent, then 5 % of them
    again (the audit topic is at-least-once) and one line that is not a record."""
    work = tmp_path_factory.mktemp("report-kafka")
    events, rules = work / "events.jsonl", work / "rules.yaml"
    write_event_file(events, users=1500, seed=7, start=datetime(2026, 10, 1, tzinfo=UTC), days=20)
    rules.write_text(RULES)
    first = subprocess.run(
        [NUDGE, "replay", str(events), "--rules", str(rules)], capture_output=True, check=True
    )
    with events.open("ab") as file:  # the feedback changes no decision: no hard bounce
        file.write(b"".join(line + b"\n" for line in feedback(first.stdout)))
    replay = subprocess.run(
        [NUDGE, "replay", str(events), "--rules", str(rules)], capture_output=True, check=True
    )
    lines = [line for line in replay.stdout.splitlines() if line.strip()]
    assert len(lines) > 2000
    return [*lines, *lines[::20], b'{"kind": "decision", "trigger_id": 1}']


async def produce(kafka: str, topic: str, lines: list[bytes]) -> None:
    """Keyed by user, as the worker writes them: a user's records stay in order."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka, linger_ms=5)
    await producer.start()
    try:
        sends = []
        for line in lines:
            try:
                key = str(orjson.loads(line)["user_id"]).encode()
            except (orjson.JSONDecodeError, KeyError):
                key = b"bad"
            headers = [("content-type", b"application/json")]
            sends.append(await producer.send(topic, line, key=key, headers=headers))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


def topic_name(label: str) -> str:
    return f"t{uuid.uuid4().hex[:8]}.{label}.marketing.triggers.audit"


async def test_the_report_from_the_topic_equals_the_report_from_the_file(
    kafka_bootstrap: str, audit_lines: list[bytes], tmp_path: Path
) -> None:
    topic = topic_name("report")
    await create_topics(kafka_bootstrap, [topic], 3)
    await produce(kafka_bootstrap, topic, audit_lines)
    file = tmp_path / "audit.jsonl"
    file.write_bytes(b"\n".join(audit_lines) + b"\n")

    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    from_file = report(str(file), "--json", "--rules", str(rules), kafka=kafka_bootstrap)
    assert from_file.returncode == 0, from_file.stderr
    from_kafka = report(
        "--from-kafka", "--json", "--rules", str(rules), "--html", str(tmp_path / "r.html"),
        kafka=kafka_bootstrap, env={"NUDGE_TOPIC_AUDIT": topic},
    )  # fmt: skip
    assert from_kafka.returncode == 0, from_kafka.stderr
    expected: dict[str, Any] = orjson.loads(from_file.stdout)
    assert orjson.loads(from_kafka.stdout) == expected
    summary = expected["input"]
    assert summary["lines"] == len(audit_lines)
    replayed = summary["decisions"] + summary["conversions"] + summary["engagement"]
    assert summary["duplicates"] == len(range(0, replayed, 20)) and summary["invalid"] == 1
    assert summary["conversions"] > 50
    assert summary["engagement"] > 2000 and summary["unmatched_engagement"] == 0
    assert any(row["variant"] == "a" and row["holdout"] for row in expected["rows"])
    # The engagement records are in: the funnel of every channel, and email's cost.
    cart = {
        (r["stage"], r["variant"], r["channel"]): r
        for r in expected["rows"]
        if r["trigger"] == "cart_abandonment"
    }
    funnel = cart["all", "(all)", "(all)"]["funnel"]
    assert funnel["delivered"]["count"] > 0.9 * funnel["sent"] > 0
    assert 0 < funnel["clicked"]["count"] < funnel["opened"]["count"] < funnel["sent"]
    email = cart["all", "(all)", "email"]
    assert email["cost"]["cost"] == pytest.approx(email["funnel"]["sent"] * 0.002)
    assert email["holdout"]["recipients"] > 0
    # The bad record is named by where it is on the topic, not by a line number.
    assert b"nudge report: invalid record, skipped: partition " in from_kafka.stderr
    assert b'id="funnel-cart_abandonment"' in (tmp_path / "r.html").read_bytes()

    # --topic names the topic instead of NUDGE_TOPIC_AUDIT; same records, same report.
    by_option = report(
        "--from-kafka", "--topic", topic, "--json", "--rules", str(rules), kafka=kafka_bootstrap
    )
    assert by_option.returncode == 0 and orjson.loads(by_option.stdout) == expected


async def test_an_empty_topic_ends_at_once_with_an_empty_report(kafka_bootstrap: str) -> None:
    topic = topic_name("empty")
    await create_topics(kafka_bootstrap, [topic], 4)
    began = time.monotonic()
    done = report("--from-kafka", "--topic", topic, "--json", kafka=kafka_bootstrap)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - began < 20
    found = orjson.loads(done.stdout)
    assert found["input"]["lines"] == 0 and found["rows"] == []


async def test_records_written_after_the_start_are_left_for_the_next_run(
    kafka_bootstrap: str, audit_lines: list[bytes]
) -> None:
    """The read ends at the end offsets taken at start, even while a producer keeps writing."""
    topic = topic_name("moving")
    await create_topics(kafka_bootstrap, [topic], 2)
    first = audit_lines[:500]
    await produce(kafka_bootstrap, topic, first)
    process = await asyncio.create_subprocess_exec(
        NUDGE, "report", "--from-kafka", "--topic", topic, "--json",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "NUDGE_KAFKA_BOOTSTRAP": kafka_bootstrap},
    )  # fmt: skip
    writer = asyncio.ensure_future(_keep_writing(kafka_bootstrap, topic, audit_lines[500:]))
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert not writer.done()  # the report ended while records kept coming
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer
    assert process.returncode == 0, err
    assert orjson.loads(out)["input"]["lines"] >= len(first)


async def _keep_writing(kafka: str, topic: str, lines: list[bytes]) -> None:
    """Until cancelled: 50 records every 50 ms or so."""
    while True:
        for start in range(0, len(lines), 50):
            await produce(kafka, topic, lines[start : start + 50])
            await asyncio.sleep(0.05)


async def test_a_missing_topic_is_one_line_with_the_fix(kafka_bootstrap: str) -> None:
    topic = topic_name("missing")
    done = report("--from-kafka", kafka=kafka_bootstrap, env={"NUDGE_TOPIC_AUDIT": topic})
    assert done.returncode == 1
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"nudge report: topic '{topic}' does not exist on {kafka_bootstrap}")
    assert "Set NUDGE_TOPIC_AUDIT to the audit topic the worker writes" in lines[0]
    assert b"Traceback" not in done.stderr and done.stdout == b""
    with_option = report("--from-kafka", "--topic", topic, kafka=kafka_bootstrap)
    assert with_option.returncode == 1 and b"Set --topic to" in with_option.stderr
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert topic not in await admin.list_topics()  # asking did not create it
    finally:
        await admin.close()
