"""``nudge worker``: start-up checks, then the Faust worker until stopped."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from aiokafka.errors import KafkaConnectionError, KafkaError
from faust.worker import Worker

from stream.app import create_app
from stream.local_state import mark_clean_shutdown, open_local_tables
from stream.logs import logging_config
from stream.settings import Settings
from stream.topics import TopicLayoutError, ensure_topics
from triggers.rules import RulesError, load_rules

log = logging.getLogger("nudge.worker")


async def _ensure_topics_patiently(settings: Settings, attempts: int = 30) -> dict[str, int]:
    """Kafka may still be starting beside us (compose, Kubernetes): retry for about a minute."""
    for attempt in range(1, attempts + 1):
        try:
            return await ensure_topics(settings)
        except KafkaConnectionError:
            if attempt == attempts:
                raise
            log.warning("Kafka not reachable yet (attempt %d/%d)", attempt, attempts)
            await asyncio.sleep(2)
    raise AssertionError("unreachable")


def worker_command(rules: str | None = None) -> int:
    settings = Settings()
    rules_path = rules or settings.rules_path
    try:
        engine_rules = load_rules(rules_path)
    except RulesError as exc:
        print(f"nudge worker: invalid rules file {rules_path}:", file=sys.stderr)
        for path, reason in exc.errors:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"nudge worker: cannot read rules file: {exc}", file=sys.stderr)
        return 1

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        counts = loop.run_until_complete(_ensure_topics_patiently(settings))
    except TopicLayoutError as exc:
        print(f"nudge worker: {exc}", file=sys.stderr)
        return 1
    except KafkaError as exc:
        print(
            f"nudge worker: cannot reach Kafka at {settings.kafka_bootstrap} "
            f"({type(exc).__name__}); check NUDGE_KAFKA_BOOTSTRAP",
            file=sys.stderr,
        )
        return 1
    partitions = counts[settings.topic_browse]

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    nudge = create_app(settings, engine_rules, partitions=partitions)

    @nudge.app.on_after_configured.connect  # type: ignore[misc]
    def _announce(app: object, **_: object) -> None:
        log.info("rules %s, %d partitions", engine_rules.version_label, partitions)

    open_local_tables(settings.data_dir, Path(nudge.app.conf.tabledir))
    worker = Worker(
        nudge.app,
        loop=loop,
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level),
        redirect_stdouts=False,
    )
    try:
        worker.execute_from_commandline()  # returns only through SystemExit
    except SystemExit as stop:
        if stop.code in (0, None):
            mark_clean_shutdown(settings.data_dir)
        raise
    return 0
