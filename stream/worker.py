"""``nudge worker``: start-up checks, then the Faust worker until stopped.

Every line is JSON from the first one. Before anything connects, the settings and the
rules are validated; then Kafka is reached within one deadline and the topics are checked
(:func:`stream.topics.prepare_topics`). A start that cannot succeed stops with one readable
log line and no traceback (Faust is imported only
after them): exit code 1 for an invalid rules file, 2 for settings, Kafka
and topics that need an operator.
"""

from __future__ import annotations

import asyncio
import logging
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from stream.broker_probe import BrokerUnusable
from stream.logs import configure_logging, logging_config
from stream.preflight import PreflightError, check_web_port, lock_data_dir
from stream.settings import Settings, SettingsError, load_settings
from stream.topics import Layout, TopicSetupError, prepare_topics
from triggers.rules import Rules, RulesError, load_rules

log = logging.getLogger("nudge.worker")

EXIT_RULES = 1
EXIT_SETUP = 2


def nudge_version() -> str:
    try:
        return version("nudge")
    except PackageNotFoundError:
        return "unknown"


def _load_rules(path: Path | None) -> Rules | None:
    try:
        return load_rules(path)
    except RulesError as exc:
        log.error("invalid rules file %s: %s", path, "; ".join(str(exc).splitlines()))
    except OSError as exc:
        log.error("cannot read the rules file: %s (NUDGE_RULES_PATH or --rules)", exc)
    return None


def startup_partitions(
    settings: Settings, loop: asyncio.AbstractEventLoop, *, catalog: bool = False
) -> Layout | None:
    """The topics' layout once Kafka is reached and the topics are in order."""
    try:
        layout = loop.run_until_complete(prepare_topics(settings, catalog=catalog))
    except (BrokerUnusable, TopicSetupError) as exc:
        log.error(str(exc).replace("%", "%%"))  # the message is the template: never merged
        return None
    except TimeoutError:
        log.error(
            "Kafka at %s did not complete the start-up checks within %.0f s "
            "(NUDGE_KAFKA_STARTUP_TIMEOUT_SECONDS)",
            settings.kafka_bootstrap,
            settings.kafka_startup_timeout_seconds,
        )
        return None
    return layout


def worker_command(rules: str | None = None) -> int:
    configure_logging("INFO")
    try:
        settings, warnings = load_settings()
    except SettingsError as exc:
        for warning in exc.warnings:
            log.warning(warning.replace("%", "%%"))
        log.error("invalid settings: %s", exc)
        return EXIT_SETUP
    configure_logging(settings.log_level)
    for warning in warnings:
        log.warning(warning.replace("%", "%%"))
    rules_path = Path(rules) if rules else settings.rules_path
    engine_rules = _load_rules(rules_path)
    if engine_rules is None:
        return EXIT_RULES

    try:  # this machine first: a second worker on the same data directory, a busy port
        lock_data_dir(settings.data_dir)
        check_web_port(settings.web_host, settings.web_port)
    except PreflightError as exc:
        log.error(str(exc).replace("%", "%%"))
        return EXIT_SETUP
    if engine_rules.contact_policy.holdout_percent == 0:
        log.warning(
            "holdout_percent is 0 in the rules: no user is held out, so the uplift of the "
            "messages can never be measured (nudge report); 5 to 10 is usual"
        )

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from stream.catalog_fanout import enabled as catalog_enabled

    layout = startup_partitions(settings, loop, catalog=catalog_enabled(engine_rules))
    if layout is None:
        return EXIT_SETUP
    partitions = layout.partitions
    # The changelogs Faust creates get the same replication factor as Nudge's own topics.
    settings = settings.model_copy(update={"replication_factor": layout.replication})
    if layout.replication < 3:
        log.warning(
            "topics are created with replication factor %d: a broker lost loses the user "
            "state and the outputs not yet read; use 3 on a cluster of 3 or more brokers "
            "(NUDGE_REPLICATION_FACTOR; unset: min(3, brokers))",
            layout.replication,
        )

    # Faust and the app only now: a start that fails its checks fails fast.
    from faust.worker import Worker

    from stream.app import create_app

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    nudge = create_app(settings, engine_rules, layout=layout)
    log.info(
        "nudge %s starting: rules %s, %d partitions",
        nudge_version(),
        engine_rules.version_label,
        partitions,
        extra={
            "version": nudge_version(),
            "rules_version": engine_rules.version_label,
            "partitions": partitions,
            "app_id": settings.app_id,
            "input_topics": layout.inputs,
        },
    )
    worker = Worker(
        nudge.app,
        loop=loop,
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level),
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()  # returns only through SystemExit
    return 0
