"""Start-up on a real broker: the shop's topics, Kafka addresses that cannot work, settings.

Each test starts ``nudge worker`` as a subprocess through the harness with its own topic
names, then reads the broker itself to see what the worker created.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.harness import NUDGE, Worker, WorkerGroup, create_topics

pytestmark = pytest.mark.integration

INPUTS = ("browse", "cart", "order", "prefs")
OWNED = ("ticks", "triggers", "audit", "dlq")


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text("version: 3\ntriggers: {cart_abandonment: {stages: [1h]}}\n")
    return path


def group_for(kafka: str, redis_url: str, rules: Path, workdir: Path, **env: str) -> WorkerGroup:
    return WorkerGroup(kafka, redis_url, rules, workdir, extra_env=env)


async def layout(kafka: str, prefix: str) -> dict[str, int]:
    """Partition count of every topic whose name starts with ``prefix``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in described if t["topic"].startswith(prefix)}


def failed_start(group: WorkerGroup, timeout: float = 30.0) -> tuple[int, float, list[Any]]:
    """Start a worker expected to stop by itself: exit code, seconds taken, its log lines."""
    began = time.monotonic()
    worker = group.start(wait_ready=False)
    code = worker.proc.wait(timeout=timeout)
    return code, time.monotonic() - began, json_lines(worker)


def json_lines(worker: Worker) -> list[Any]:
    """Every line the worker wrote (stdout and stderr), each parsed as JSON."""
    text = worker.log_path.read_text()
    assert "Traceback" not in text, text
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def errors(lines: list[Any]) -> list[str]:
    return [line["msg"] for line in lines if line["level"] == "error"]


async def test_existing_four_partition_inputs_give_a_ready_worker(
    kafka_bootstrap: str, redis_url: str, rules: Path, tmp_path: Path
) -> None:
    # The shop's situation: its inputs exist with 4 partitions; NUDGE_PARTITIONS says 8:
    # the worker has 8 partitions (its own topics) and re-keys the inputs (contract 9).
    group = group_for(kafka_bootstrap, redis_url, rules, tmp_path, NUDGE_PARTITIONS="8")
    try:
        worker = group.start()  # creates the four inputs (4 partitions), waits for /readyz
        assert worker.get("/readyz")[0] == 200
        found = await layout(kafka_bootstrap, f"{group.name}.")
        # A second worker on the same NUDGE_DATA_DIR stops at once, saying what to do.
        second = group.start(0, wait_ready=False)
        assert second.proc.wait(timeout=15) == 2
        assert worker.proc.poll() is None
    finally:
        group.stop_all()
    inputs = {group.topic(key): 4 for key in INPUTS}
    assert found == inputs | {group.topic(key): 8 for key in (*OWNED, "rekeyed", "engagement")}
    lines = json_lines(worker)
    started = [line for line in lines if "rules_version" in line]
    assert started and started[0]["partitions"] == 8, lines[:20]
    assert started[0]["input_topics"] == inputs | {group.topic("engagement"): 8}
    assert started[0]["rules_version"].startswith("3")
    warned = [line["msg"] for line in lines if line["level"] == "warning"]
    assert any("holdout_percent is 0" in msg for msg in warned), warned
    assert any("replication factor 1:" in msg for msg in warned), warned
    (refused,) = [line["msg"] for line in lines if line["level"] == "error"]
    assert "is in use by another Nudge worker (pid " in refused
    assert "Give this one another NUDGE_DATA_DIR" in refused


async def test_a_missing_input_topic_fails_fast_naming_it_and_creates_nothing(
    kafka_bootstrap: str, redis_url: str, rules: Path, tmp_path: Path
) -> None:
    group = group_for(kafka_bootstrap, redis_url, rules, tmp_path)
    group.create_inputs = False
    present = [group.topic(key) for key in ("browse", "order", "prefs")]
    await create_topics(kafka_bootstrap, present, 4)

    code, took, lines = failed_start(group)

    assert code == 2
    assert took < 30
    (message,) = errors(lines)
    assert f"{group.topic('cart')} (NUDGE_TOPIC_CART)" in message
    assert not any(name in message for name in present)
    assert sorted(await layout(kafka_bootstrap, f"{group.name}.")) == sorted(present)


async def test_an_existing_rekeying_topic_with_another_count_than_n_is_named_with_the_fix(
    kafka_bootstrap: str, redis_url: str, rules: Path, tmp_path: Path
) -> None:
    # Input topics of other counts are fine (re-keyed); Nudge's own must have N.
    group = group_for(kafka_bootstrap, redis_url, rules, tmp_path)
    group.create_inputs = False
    await create_topics(kafka_bootstrap, [group.topic(k) for k in ("browse", "cart", "order")], 4)
    await create_topics(kafka_bootstrap, [group.topic("prefs")], 2)
    await create_topics(kafka_bootstrap, [group.topic("rekeyed")], 3)

    code, _, lines = failed_start(group)

    assert code == 2
    (message,) = errors(lines)
    assert f"{group.topic('rekeyed')} (NUDGE_TOPIC_REKEYED) has 3 partitions" in message
    assert "kafka-topics.sh --delete" in message
    assert group.topic("ticks") not in await layout(kafka_bootstrap, f"{group.name}.")


async def test_an_existing_tick_topic_with_another_count_is_named_with_the_fix(
    kafka_bootstrap: str, redis_url: str, rules: Path, tmp_path: Path
) -> None:
    group = group_for(kafka_bootstrap, redis_url, rules, tmp_path)
    group.create_input_topics()
    await create_topics(kafka_bootstrap, [group.topic("ticks")], 8)

    code, _, lines = failed_start(group)

    assert code == 2
    (message,) = errors(lines)
    assert f"tick topic {group.topic('ticks')} (NUDGE_TOPIC_TICKS) has 8 partitions" in message
    assert f"kafka-topics.sh --delete --topic {group.topic('ticks')}" in message


def test_a_bootstrap_at_the_redis_port_fails_fast_and_says_so(
    kafka_bootstrap: str, redis_url: str, rules: Path, tmp_path: Path
) -> None:
    redis_address = redis_url.split("//", 1)[1].split("/", 1)[0]
    group = group_for(
        kafka_bootstrap, redis_url, rules, tmp_path, NUDGE_KAFKA_BOOTSTRAP=redis_address
    )
    group.create_inputs = False

    code, took, lines = failed_start(group)

    assert code == 2
    assert took < 30
    (message,) = errors(lines)
    assert redis_address in message
    assert "not a Kafka listener" in message


@pytest.fixture
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_bootstrap_at_an_http_server_fails_at_once(
    kafka_bootstrap: str, redis_url: str, rules: Path, tmp_path: Path, http_server: str
) -> None:
    group = group_for(
        kafka_bootstrap, redis_url, rules, tmp_path, NUDGE_KAFKA_BOOTSTRAP=http_server
    )
    group.create_inputs = False

    code, took, lines = failed_start(group)

    assert code == 2
    assert took < 10
    (message,) = errors(lines)
    assert http_server in message
    assert "which is not Kafka" in message


def test_a_host_name_typo_fails_at_once(
    kafka_bootstrap: str, redis_url: str, rules: Path, tmp_path: Path
) -> None:
    port = kafka_bootstrap.rsplit(":", 1)[1]
    typo = f"kafak-typo.invalid:{port}"
    group = group_for(kafka_bootstrap, redis_url, rules, tmp_path, NUDGE_KAFKA_BOOTSTRAP=typo)
    group.create_inputs = False

    code, took, lines = failed_start(group)

    assert code == 2
    assert took < 10
    (message,) = errors(lines)
    assert typo in message
    assert "does not resolve" in message


def test_an_unreachable_broker_fails_at_the_startup_deadline(
    kafka_bootstrap: str, redis_url: str, rules: Path, tmp_path: Path
) -> None:
    closed = "127.0.0.1:1"  # nothing listens: refused, retried until the deadline
    group = group_for(
        kafka_bootstrap,
        redis_url,
        rules,
        tmp_path,
        NUDGE_KAFKA_BOOTSTRAP=closed,
        NUDGE_KAFKA_STARTUP_TIMEOUT_SECONDS="4",
    )
    group.create_inputs = False

    code, took, lines = failed_start(group)

    assert code == 2
    assert 4 <= took < 15
    (message,) = errors(lines)
    assert f"cannot reach Kafka after 4 s: {closed}" in message


def test_bad_settings_fail_before_connecting_with_one_readable_line(
    kafka_bootstrap: str, redis_url: str, rules: Path, tmp_path: Path
) -> None:
    group = group_for(
        kafka_bootstrap,
        redis_url,
        rules,
        tmp_path,
        NUDGE_PARTITIONS="abc",
        NUDGE_LOG_LEVEL="verbose",
        NUDGE_TOPIC_CARTS="shop.carts",
    )
    group.create_inputs = False

    code, _, lines = failed_start(group)

    assert code == 2
    (message,) = errors(lines)
    assert "NUDGE_PARTITIONS='abc'" in message
    assert "NUDGE_LOG_LEVEL='verbose'" in message
    warnings = [line["msg"] for line in lines if line["level"] == "warning"]
    assert warnings == [
        "NUDGE_TOPIC_CARTS is not a Nudge setting and is ignored (did you mean NUDGE_TOPIC_CART?)"
    ]
    assert asyncio.run(layout(kafka_bootstrap, f"{group.name}.")) == {}


def test_a_replication_factor_the_cluster_cannot_meet_is_named(
    kafka_bootstrap: str, redis_url: str, rules: Path, tmp_path: Path
) -> None:
    group = group_for(kafka_bootstrap, redis_url, rules, tmp_path, NUDGE_REPLICATION_FACTOR="3")

    code, _, lines = failed_start(group)

    assert code == 2
    (message,) = errors(lines)
    assert f"cannot create {group.topic('ticks')} (NUDGE_TOPIC_TICKS)" in message
    assert "(NUDGE_REPLICATION_FACTOR=3)" in message
    created = asyncio.run(layout(kafka_bootstrap, f"{group.name}."))
    assert sorted(created) == sorted(group.topic(key) for key in INPUTS)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"NUDGE_REDIS_URL": "http://x"}, "NUDGE_REDIS_URL='http://x': is not a Redis URL"),
        ({"NUDGE_STORE": "postgres://"}, "use rocksdb:// or memory://"),
        (
            {"NUDGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "NUDGE_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs NUDGE_KAFKA_SASL_USERNAME and "
            "NUDGE_KAFKA_SASL_PASSWORD",
        ),
    ],
)
def test_settings_nudge_cannot_use_are_one_line_before_connecting(
    kafka_bootstrap: str,
    redis_url: str,
    rules: Path,
    tmp_path: Path,
    env: dict[str, str],
    expected: str,
) -> None:
    group = group_for(kafka_bootstrap, redis_url, rules, tmp_path, **env)
    group.create_inputs = False

    code, took, lines = failed_start(group)

    assert code == 2
    assert took < 10
    (message,) = errors(lines)
    assert expected in message


def test_a_web_port_in_use_is_named_with_the_fix(
    kafka_bootstrap: str, redis_url: str, rules: Path, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        group = group_for(kafka_bootstrap, redis_url, rules, tmp_path, NUDGE_WEB_PORT=str(port))
        group.create_inputs = False
        code, took, lines = failed_start(group)

    assert code == 2
    assert took < 10
    (message,) = errors(lines)
    assert f"the web port 127.0.0.1:{port} is already in use" in message
    assert "set NUDGE_WEB_PORT to a free port" in message


def test_tls_against_a_plaintext_listener_fails_at_once_with_the_reason(
    kafka_bootstrap: str, redis_url: str, rules: Path, tmp_path: Path
) -> None:
    group = group_for(
        kafka_bootstrap, redis_url, rules, tmp_path, NUDGE_KAFKA_SECURITY_PROTOCOL="SSL"
    )
    group.create_inputs = False

    code, took, lines = failed_start(group)

    assert code == 2
    assert took < 10
    (message,) = errors(lines)
    assert f"{kafka_bootstrap} TLS handshake failed" in message
    assert "a plaintext listener. Set NUDGE_KAFKA_SECURITY_PROTOCOL to PLAINTEXT" in message
    assert "Check NUDGE_KAFKA_BOOTSTRAP" not in message


@pytest.mark.parametrize("argv", [["tail", "marketing.triggers"], ["simulate", "--limit", "3"]])
def test_commands_name_tls_against_a_plaintext_listener_at_once(
    kafka_bootstrap: str, argv: list[str]
) -> None:
    env = {
        **os.environ,
        "NUDGE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "NUDGE_KAFKA_SECURITY_PROTOCOL": "SSL",
    }
    began = time.monotonic()
    done = subprocess.run([NUDGE, *argv], env=env, capture_output=True, text=True, timeout=60)

    assert time.monotonic() - began < 10
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"nudge {argv[0]}: cannot reach Kafka: {kafka_bootstrap} TLS handshake failed: the server "
        "closed the connection during the handshake, and it answers Kafka requests without TLS: "
        "a plaintext listener. Set NUDGE_KAFKA_SECURITY_PROTOCOL to PLAINTEXT (or "
        "SASL_PLAINTEXT), or point NUDGE_KAFKA_BOOTSTRAP at the broker's TLS listener"
    ]
