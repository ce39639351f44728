"""End to end: a real ``nudge worker`` scraped by Debian's real Prometheus server.

The worker runs as a subprocess on the real Kafka and Redis fixtures with its own
app id, topics and Redis keys; demo traffic comes from ``nudge simulate``; the
Prometheus server runs on loopback with the project's scrape config (target and
interval templated) and alert rules. The test asks Prometheus' HTTP API what a
user would look at: the target is up, Nudge's metrics have non-zero values, the
alert rules are loaded and evaluate, and every dashboard query runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.deploy.deploy_support import (
    ALERTS,
    DASHBOARD,
    SCRAPE_CONFIG,
    alert_rules,
    dashboard_exprs,
    grafana_to_promql,
    load_yaml,
)
from tests.integration.harness import create_topics

pytestmark = pytest.mark.integration

NUDGE = str(Path(sys.executable).parent / "nudge")
TOPICS = {
    "BROWSE": "shop.browse",
    "CART": "shop.cart",
    "ORDER": "shop.order",
    "PREFS": "shop.prefs",
    "TRIGGERS": "marketing.triggers",
    "AUDIT": "marketing.triggers.audit",
    "DLQ": "shop.events.dlq",
    "TICKS": "nudge.ticks",
}
#: Demo rules with delays of a few seconds; no quiet hours, so any time of day works.
RULES = """\
version: 1
default_timezone: UTC
triggers:
  cart_abandonment:   {enabled: true, stages: [3s], min_cart_value: 0, cooldown: 1m, priority: 100}
  browse_abandonment: {enabled: true, stages: [4s], cooldown: 1m, priority: 50}
  dormancy:           {enabled: true, stages: [6s], audience: all, priority: 40}
contact_policy:
  frequency_cap: {max: 5, per: 1h}
  max_delay: 10m
"""
#: A value set in the secret settings: it must never show up in logs or metrics.
CANARY = f"canary-{uuid.uuid4().hex}"

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float, logs: Callable[[], str]
) -> T:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (OSError, ValueError, KeyError) as exc:  # not up yet
            last_error, value = exc, None
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} ({last_error!r})\n{logs()}")


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} (exit {self.proc.poll()}) ---\n" + "\n".join(
            text.splitlines()[-lines:]
        )

    def alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"{self.name} exited early\n{self.tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(name: str, argv: list[str], env: dict[str, str], workdir: Path) -> Process:
    log = workdir / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    return Process(name, proc, log)


@pytest.fixture
def worker_env(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    run = f"deploy{uuid.uuid4().hex[:8]}"
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    # The shop's input topics exist before the worker starts (it never creates them).
    inputs = [f"{run}.{TOPICS[key]}" for key in ("BROWSE", "CART", "ORDER", "PREFS")]
    asyncio.run(create_topics(kafka_bootstrap, inputs, 2))
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")},
        "NUDGE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "NUDGE_REDIS_URL": redis_url,
        "NUDGE_APP_ID": f"nudge-{run}",
        "NUDGE_RULES_PATH": str(rules),
        "NUDGE_DATA_DIR": str(tmp_path / "data"),
        "NUDGE_WEB_PORT": str(free_port()),
        "NUDGE_WEB_HOST": "127.0.0.1",
        "NUDGE_PARTITIONS": "2",
        "NUDGE_REDIS_KEY_PREFIX": f"{run}:",
        "NUDGE_REDIS_SUPPRESSION_KEY": f"{run}:suppressed",
        # Unused with PLAINTEXT, but set: a secret must not leak into logs or metrics.
        "NUDGE_KAFKA_SASL_USERNAME": "nudge-e2e",
        "NUDGE_KAFKA_SASL_PASSWORD": CANARY,
        **{f"NUDGE_TOPIC_{key}": f"{run}.{name}" for key, name in TOPICS.items()},
    }


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in reversed(started):
        process.stop()


def scrape_config_for(worker_port: int) -> dict[str, Any]:
    """The project's scrape config, pointed at a local worker and scraping every second."""
    config = load_yaml(SCRAPE_CONFIG)
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "nudge"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert config["rule_files"] == ["alerts.yml"], "alerts are loaded from beside the config"
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    job["scrape_interval"] = "1s"
    job["scrape_timeout"] = "1s"
    job.pop("dns_sd_configs")  # the compose stack's replicas by DNS: here, one local worker
    job["static_configs"] = [{"targets": [f"127.0.0.1:{worker_port}"]}]
    return config


class PrometheusAPI:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}/api/v1"

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = http_get(f"{self.base}/{path}{query}")
        reply = json.loads(body)
        assert status == 200 and reply["status"] == "success", (path, params, reply)
        return reply["data"]

    def vector(self, promql: str) -> dict[str, float]:
        """Instant query -> {labels as 'k=v,...': value}."""
        data = self.get("query", query=promql)
        assert data["resultType"] == "vector", data
        return {
            ",".join(f"{k}={v}" for k, v in sorted(r["metric"].items())): float(r["value"][1])
            for r in data["result"]
        }


def test_prometheus_scrapes_nudge_metrics_from_a_real_worker(
    worker_env: dict[str, str],
    processes: list[Process],
    prometheus_server: str,
    tmp_path: Path,
) -> None:
    def logs() -> str:
        return "\n".join(process.tail() for process in processes)

    # 1. The worker, as `nudge worker` runs in the container.
    worker = start("worker", [NUDGE, "worker"], worker_env, tmp_path)
    processes.append(worker)
    web = f"http://127.0.0.1:{worker_env['NUDGE_WEB_PORT']}"

    def ready() -> bool:
        worker.alive()
        return http_get(f"{web}/readyz")[0] == 200

    wait_for("the worker's /readyz", ready, 120, logs)
    assert http_get(f"{web}/healthz")[0] == 200

    # 2. Prometheus (Debian's server) with the project's config and alert rules.
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    shutil.copy(ALERTS, prom_dir / "alerts.yml")
    config_path = prom_dir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(scrape_config_for(int(worker_env["NUDGE_WEB_PORT"]))))
    prom_port = free_port()
    prometheus = start(
        "prometheus",
        [
            prometheus_server,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={prom_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ],
        {k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")},
        prom_dir,
    )
    processes.append(prometheus)
    api = PrometheusAPI(prom_port)

    def target_up() -> bool:
        prometheus.alive()
        targets = api.get("targets")["activeTargets"]
        return any(t["labels"]["job"] == "nudge" and t["health"] == "up" for t in targets)

    wait_for("Prometheus to scrape the worker", target_up, 60, logs)

    # 3. Demo traffic: synthetic shoppers, plus a file with abandoned carts and one bad line.
    now_ms = int(time.time() * 1000)
    lines = [
        json.dumps(
            {
                "event_id": f"e2e-{i}",
                "type": "cart_item_added",
                "user_id": f"e2e-user-{i}",
                "ts": now_ms,
                "product_id": f"sku-{i}",
                "quantity": 1,
                "unit_price": 25.0,
            }
        )
        for i in range(10)
    ]
    lines.append("this is not json")
    events_file = tmp_path / "events.jsonl"
    events_file.write_text("\n".join(lines) + "\n")
    for name, argv in (
        ("simulate-file", [NUDGE, "simulate", "--file", str(events_file), "--rate", "1000"]),
        ("simulate", [NUDGE, "simulate", "--limit", "300", "--rate", "300", "--users", "40"]),
    ):
        producer = subprocess.run(
            argv,
            env=worker_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert producer.returncode == 0, f"{name}: {producer.stderr}"

    # 4. What a user checks in Prometheus: Nudge's own metrics, non-zero.
    def metric_positive(promql: str) -> Callable[[], dict[str, float] | None]:
        def probe() -> dict[str, float] | None:
            worker.alive()
            values = api.vector(promql)
            return values if values and all(v > 0 for v in values.values()) else None

        return probe

    events = wait_for(
        "nudge_events_total > 0",
        metric_positive('sum by (topic) (nudge_events_total{job="nudge"})'),
        90,
        logs,
    )
    assert any(worker_env["NUDGE_TOPIC_CART"] in key for key in events), events
    decisions = wait_for(
        "cart abandonment decisions in nudge_decisions_total",
        metric_positive(
            # label sets exist at 0 from the start: only the statuses that happened
            'sum by (trigger, status) (nudge_decisions_total{trigger="cart_abandonment"}) > 0'
        ),
        90,
        logs,
    )
    assert sum(decisions.values()) >= 10, decisions  # one per abandoned cart in the file, at least
    wait_for(
        "nudge_dead_letters_total > 0", metric_positive("sum(nudge_dead_letters_total)"), 60, logs
    )
    wait_for(
        "lateness observations",
        metric_positive('sum(nudge_fire_lateness_seconds_count{trigger="cart_abandonment"})'),
        60,
        logs,
    )
    assert api.vector("nudge_ready") == {
        f"__name__=nudge_ready,instance=127.0.0.1:{worker_env['NUDGE_WEB_PORT']},job=nudge": 1.0
    }
    assert min(api.vector("nudge_redis_up").values()) == 1.0
    # The worker's own loop (Faust's per-message sensor is not served).
    for promql in (
        "sum(nudge_batch_duration_seconds_count)",
        "sum(nudge_checkpoint_duration_seconds_count)",
        "sum(nudge_offset_commit_duration_seconds_count)",
        "sum(nudge_rebalances_total)",
    ):
        wait_for(promql, metric_positive(promql), 30, logs)
    assert not api.vector('count({__name__=~"faust_.+"})'), "Faust's sensor is not served"

    # 5. The alert rules are loaded by the real server and evaluate without error.
    expected_alerts = {rule["alert"] for rule in alert_rules(load_yaml(ALERTS))}

    def rules_evaluated() -> dict[str, str] | None:
        groups = api.get("rules")["groups"]
        health = {r["name"]: r["health"] for g in groups for r in g["rules"]}
        return health if health and all(h == "ok" for h in health.values()) else None

    health = wait_for("every alert rule evaluated", rules_evaluated, 30, logs)
    assert set(health) == expected_alerts
    firing = {
        a["labels"]["alertname"] for a in api.get("alerts")["alerts"] if a["state"] == "firing"
    }
    assert not firing & {"NudgeWorkerDown", "NudgeRedisDown"}, firing

    # 6. Every dashboard query runs on this Prometheus; the main panels show data.
    dashboard = json.loads(DASHBOARD.read_text())
    results = {}
    for title, expr in dashboard_exprs(dashboard):
        results[title] = api.vector(grafana_to_promql(expr))  # fails on any query error
    for title in (
        "Throughput by topic",
        "Decisions by trigger and status",
        "Events / s",
        "Batch duration",
        "Checkpoint and offset commit latency",
    ):
        assert results[title], f"dashboard panel {title!r} shows no data"

    # 7. Nothing secret in the worker's logs or metrics.
    _, metrics = http_get(f"{web}/metrics")
    assert CANARY.encode() not in metrics
    assert CANARY not in worker.log.read_text(errors="replace")
