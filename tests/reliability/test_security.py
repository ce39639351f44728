"""Security review items (issue 6, item 7) that a test can check on a live worker.

- No user id and no secret reaches the worker's log or its metrics: a worker runs
  with a canary Redis password (a real, password-protected Redis of the test's own,
  so the secret is really used) and a canary Kafka SASL password (set, ignored with
  PLAINTEXT); a canary user sends valid events that fire a trigger, malformed ones
  (the dead-letter path) and one that fails inside the engine (the processing-error
  path). The canaries must show up where they belong (the trigger record, the
  dead-letter topic) and nowhere in the log, /metrics, or the health endpoints.
- A wrong Redis password (in the URL) is reported without the password.
- The web server serves /metrics, /healthz and /readyz and nothing else of Faust's:
  its table, router, graph, stats and performance views answer 404 to every method.

Dependency audit (pip-audit) is ``scripts/pip_audit.sh``; see docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from aiokafka import AIOKafkaProducer

from tests.integration.harness import WorkerGroup, free_port, produce, wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

CANARY_USER = "canary-user-5f1e9b2c"
CANARY_PAYLOAD = "canary-payload-0d7c4e"  # free text inside messages (a search query)
REDIS_SECRET = "canary-redis-secret-8a3f61"
SASL_SECRET = "canary-sasl-secret-c94d07"
WRONG_SECRET = "canary-wrong-secret-27be90"
SECRETS = (REDIS_SECRET, SASL_SECRET)
SECRET_ENV = {
    "NUDGE_REDIS_PASSWORD": REDIS_SECRET,
    "NUDGE_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",  # SASL settings are set but not used
    "NUDGE_KAFKA_SASL_USERNAME": "canary-sasl-user",
    "NUDGE_KAFKA_SASL_PASSWORD": SASL_SECRET,
}

RULES = """
default_timezone: UTC
triggers:
  cart_abandonment:        {stages: [2s], cooldown: 1s}
  browse_abandonment:      {enabled: false}
  replenishment:           {enabled: false}
  first_purchase_followup: {stages: [3d]}
  lapsing:                 {enabled: false}
  dormancy:                {enabled: false}
contact_policy:
  frequency_cap: {max: 20, per: 1m}
  max_delay: 1h
"""


class PasswordRedis:
    """A redis-server of the test's own that requires a password (a child process)."""

    def __init__(self, workdir: Path, password: str) -> None:
        self.port = free_port()
        self.password = password
        server = shutil.which("redis-server")
        assert server, "redis-server is not installed (scripts/redis.sh install)"
        self.proc = subprocess.Popen(
            [
                server,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--requirepass", password,
                "--dir", str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, password=password)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "password-protected redis did not start"
                time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def protected_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PasswordRedis]:
    server = PasswordRedis(tmp_path_factory.mktemp("redis"), REDIS_SECRET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def group(
    kafka_bootstrap: str, protected_redis: PasswordRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerGroup]:
    workdir = tmp_path_factory.mktemp("security")
    rules = workdir / "rules.yaml"
    rules.write_text(RULES)
    grp = WorkerGroup(
        kafka_bootstrap,
        protected_redis.url,
        rules,
        workdir,
        extra_env={**SECRET_ENV, "NUDGE_LOG_LEVEL": "INFO"},  # as deployed (deploy/k8s)
    )
    grp.start()
    yield grp
    grp.stop_all()


def ts(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def canary_traffic(now: datetime) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Valid events that fire a cart reminder, and malformed ones, all from the canary user."""
    base = {"user_id": CANARY_USER, "ts": ts(now)}
    valid = [
        {**base, "event_id": "c-1", "type": "search", "query": CANARY_PAYLOAD},
        {**base, "event_id": "c-2", "type": "cart_item_added", "product_id": CANARY_PAYLOAD,
         "unit_price": 5.0},
    ]  # fmt: skip
    bad = [
        orjson.dumps({**base, "event_id": "c-3", "type": CANARY_PAYLOAD}),  # unknown type
        orjson.dumps({**base, "event_id": "c-4", "type": "search", "query": 7}),  # wrong type
        orjson.dumps({**base, "event_id": "c-5", "type": "search", "ts": "2026-11-23T10:00:00",
                      "query": CANARY_PAYLOAD}),  # naive ts
        f'{{"user_id": "{CANARY_USER}", "query": "{CANARY_PAYLOAD}"'.encode(),  # truncated
        orjson.dumps({**base, "event_id": "c-6", "type": "search",
                      "query": CANARY_PAYLOAD * 4000}),  # oversize
        # Valid by the parser, but past the engine's date range: the processing-error path.
        orjson.dumps({**base, "event_id": "c-7", "type": "order_placed", "order_id": "o-1",
                      "ts": "9999-12-30T23:00:00Z",
                      "items": [{"product_id": CANARY_PAYLOAD, "quantity": 1, "unit_price": 1}]}),
    ]  # fmt: skip
    return valid, bad


def assert_no_canary(where: str, text: str, *, payload: bool = True) -> None:
    canaries = [CANARY_USER, *SECRETS, *([CANARY_PAYLOAD] if payload else [])]
    leaked = [c for c in canaries if c in text]
    lines = [line for line in text.splitlines() if any(c in line for c in leaked)]
    assert not leaked, f"{where} contains {leaked}: {lines[:5]}"


async def send_canary_traffic(group: WorkerGroup) -> None:
    """The canary user's traffic, through every path, and wait until it is all handled."""
    worker = group.workers[0]
    valid, bad = canary_traffic(datetime.now(UTC))
    await produce(group, valid)
    # The canaries flow through: the reminder is sent, every bad message dead-lettered.
    sent = await wait_for(
        group, "triggers", lambda rs: any(r["user_id"] == CANARY_USER for r in rs), timeout=45
    )
    assert sent[0]["context"]  # the trigger record carries the user and the cart: that is its job
    for message in bad:  # keyed by the canary user, as a producer would
        await produce_keyed(group, message)
    dlq = await wait_for(group, "dlq", lambda rs: len(rs) >= len(bad), timeout=30)
    assert len(dlq) == len(bad)
    assert "nudge_redis_up 1.0" in worker.metrics()  # the worker authenticated with the secret
    await asyncio.sleep(6)  # a health-report cycle (every 5 s) after the traffic


async def test_no_user_id_or_secret_in_logs_or_metrics(group: WorkerGroup) -> None:
    worker = group.workers[0]
    await send_canary_traffic(group)
    assert_no_canary("the worker's log", worker.log_path.read_text(errors="replace"))
    assert_no_canary("/metrics", worker.metrics())
    for path in ("/", "/healthz", "/readyz"):
        assert_no_canary(path, worker.get(path)[1].decode(errors="replace"))
    # The process's command line carries no secret either (settings come from the environment).
    assert_no_canary("the command line", Path(f"/proc/{worker.proc.pid}/cmdline").read_text())


async def test_debug_logging_does_not_leak_payloads(
    kafka_bootstrap: str, protected_redis: PasswordRedis, tmp_path: Path
) -> None:
    """NUDGE_LOG_LEVEL=DEBUG is a documented setting an operator turns on while debugging."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    grp = WorkerGroup(
        kafka_bootstrap,
        protected_redis.url,
        rules,
        tmp_path,
        extra_env={**SECRET_ENV, "NUDGE_LOG_LEVEL": "DEBUG"},
    )
    worker = grp.start()
    try:
        await send_canary_traffic(grp)
        assert_no_canary("the DEBUG log", worker.log_path.read_text(errors="replace"))
    finally:
        grp.stop_all()


async def produce_keyed(group: WorkerGroup, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=group.kafka, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(group.topic("browse"), value=value, key=CANARY_USER.encode())
    finally:
        await producer.stop()


async def test_a_wrong_redis_password_is_reported_without_the_password(
    kafka_bootstrap: str, protected_redis: PasswordRedis, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    url = f"redis://:{WRONG_SECRET}@127.0.0.1:{protected_redis.port}/0"
    grp = WorkerGroup(kafka_bootstrap, url, rules, tmp_path, extra_env={"NUDGE_LOG_LEVEL": "INFO"})
    worker = grp.start()
    try:
        await produce(
            grp,
            [{"event_id": "w-1", "type": "cart_item_added", "user_id": CANARY_USER,
              "ts": ts(datetime.now(UTC) - timedelta(seconds=5)), "product_id": "p"}],
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while "nudge_redis_up 0.0" not in worker.metrics():
            assert time.monotonic() < deadline, "the worker never noticed Redis refusing it"
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)  # a due stage has been attempted and held back
        log = worker.log_path.read_text(errors="replace")
        assert "redis unavailable" in log  # the failure is reported ...
        assert WRONG_SECRET not in log, [line for line in log.splitlines() if WRONG_SECRET in line]
        assert CANARY_USER not in log
        assert WRONG_SECRET not in worker.metrics()  # ... and the secret is not
    finally:
        grp.stop_all()


# --- web endpoints -------------------------------------------------------------------------

FAUST_VIEWS = (
    "/table",
    "/table/",
    "/table/users/",
    f"/table/users/{CANARY_USER}/",
    "/router",
    "/router/",
    "/router/topics",
    "/router/users/",
    f"/router/users/{CANARY_USER}/",
    "/graph",
    "/graph/",
    "/stats",
    "/stats/",
    "/assignment/",
    "/performance",
    "/performance/",
    "/metrics/../table/users/",
    "/%2e%2e/table/users/",
    "/static/",
    "/debug",
    "/admin",
)
ALLOWED = ("/metrics", "/healthz", "/readyz")


def request(port: int, path: str, method: str) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, data=b"{}" if method != "GET" else None
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH"])
def test_faust_views_are_not_served(group: WorkerGroup, method: str) -> None:
    port = group.workers[0].port
    served = {
        path: status for path in FAUST_VIEWS if (status := request(port, path, method)[0]) != 404
    }
    assert served == {}


def test_only_metrics_and_health_are_served(group: WorkerGroup) -> None:
    port = group.workers[0].port
    for path in ALLOWED:
        assert request(port, path, "GET")[0] == 200, path
        # Read-only: no method but GET (and HEAD) is accepted.
        for method in ("POST", "PUT", "DELETE"):
            assert request(port, path, method)[0] in (404, 405), (path, method)
    # "/" is Faust's production index: a bare status, no app internals.
    status, body, _ = request(port, "/", "GET")
    assert status == 200 and orjson.loads(body) == {"status": "OK"}
