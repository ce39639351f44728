"""Check the shop's input topics and create Nudge's own, before the worker starts.

- The four input topics belong to the shop: Nudge never creates them. A missing one (often
  a typo in ``NUDGE_TOPIC_*``) stops the start with every missing name and its variable.
- They may have any partition counts (contract section 9): a message on a partition that is
  not its user's is re-keyed (``stream.rekeying``). The worker's partition count ``N`` is
  ``NUDGE_PARTITIONS`` if set, else the count of Nudge's internal topics if they exist, else
  the largest input partition count (so a shop whose topics share one count re-keys only
  what its producers put on the wrong partition).
- Nudge creates its internal topics (ticks, re-keyed input) with ``N`` partitions and the
  output topics (triggers, audit, dead letters) with ``N`` when they are missing. An existing
  internal topic with another count stops the start with the fix; existing output topics
  are used as they are (they are not co-partitioned with anything).
- The engagement topic (``marketing.engagement``, contract 8.3) is an input topic read like
  the four, with one difference: Nudge defines its records, so Nudge creates it (``N``
  partitions) when it is missing. A shop that never sends feedback needs do nothing.
- With a catalog trigger on (``back_in_stock``, ``price_drop``), ``shop.catalog`` is an input
  topic too (the shop's: never created; any partition count and any keys, re-keyed to its
  product's partition like user events: ``stream.catalog_fanout``; its count does not
  decide ``N``) and the two internal topics of the catalog fan-out (``nudge.interest``,
  ``nudge.catalog-fanout``) are created and checked like the tick topic.
- After creating topics, their layout is read back until the broker reports it (metadata
  can lag a creation by a moment) or the start-up deadline passes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, for_code

from stream.broker_probe import wait_for_broker
from stream.kafka_auth import aiokafka_kwargs, ssl_context
from stream.settings import Settings, bootstrap_addresses, env_name

log = logging.getLogger("nudge.topics")

TICK_RETENTION_MS = 3_600_000  # ticks are worthless after a few seconds
TOPIC_ALREADY_EXISTS = 36
LAYOUT_POLL_SECONDS = 0.25
INPUT_SETTLE_SECONDS = 1.5


class TopicSetupError(RuntimeError):
    """The topics are not usable as they are; the message says what to do."""


class MissingInputTopics(TopicSetupError):
    """Input topics that do not exist (Nudge never creates them)."""


class TopicLayoutError(TopicSetupError):
    """The existing topics cannot be co-partitioned with per-user state."""


def input_variables(settings: Settings, catalog: bool = False) -> dict[str, str]:
    """Input topic name -> the variable that names it."""
    fields: tuple[str, ...] = ("topic_browse", "topic_cart", "topic_order", "topic_prefs")
    if catalog:
        fields += ("topic_catalog",)
    return {getattr(settings, field): env_name(field) for field in fields}


#: The input topic of delivery feedback: read like the shop's, created by Nudge when missing.
FEEDBACK = "topic_engagement"


def owned_variables(settings: Settings, catalog: bool = False) -> dict[str, str]:
    """Topic Nudge creates -> the variable that names it (the tick topic first)."""
    fields: tuple[str, ...] = ("topic_ticks", "topic_rekeyed")
    fields += ("topic_triggers", "topic_audit", "topic_dlq", FEEDBACK)
    if catalog:
        fields += COPARTITIONED[2:]
    return {getattr(settings, field): env_name(field) for field in fields}


@dataclass(frozen=True)
class Layout:
    """What the worker reads: its partition count, and each input topic's count."""

    partitions: int
    inputs: dict[str, int]
    #: The replication factor of the topics Nudge creates (its changelogs too).
    replication: int = 1


def default_replication(settings: Settings, brokers: int) -> int:
    """NUDGE_REPLICATION_FACTOR, or min(3, the cluster's brokers) when it is unset."""
    return settings.replication_factor or max(1, min(3, brokers))


def input_counts(
    settings: Settings, counts: Mapping[str, int], catalog: bool = False
) -> dict[str, int]:
    """Each input topic's partition count (the engagement topic's once it exists); raises
    with the fix when one of the shop's is missing."""
    inputs = input_variables(settings, catalog)
    missing = [name for name in inputs if name not in counts]
    if missing:
        listed = ", ".join(f"{name} ({inputs[name]})" for name in missing)
        raise MissingInputTopics(
            f"missing input topic{'s' if len(missing) > 1 else ''}: {listed}. Nudge never "
            "creates input topics: create them, or set the variable to the existing topic's "
            "name (or let the Kafka principal describe them)"
        )
    feedback = getattr(settings, FEEDBACK)
    present = {feedback: counts[feedback]} if feedback in counts else {}
    return {name: counts[name] for name in inputs} | present


def worker_partitions(settings: Settings, counts: Mapping[str, int], catalog: bool = False) -> int:
    """``N``: ``NUDGE_PARTITIONS``, else the existing internal topics' count, else the
    largest partition count of the user input topics (the catalog topic, re-keyed to its
    products' partitions, may have any)."""
    inputs = input_counts(settings, counts, catalog)
    internal = [counts[n] for n in internal_variables(settings, catalog) if n in counts]
    if settings.partitions is not None:
        partitions = settings.partitions
    elif internal:
        partitions = internal[0]
    else:
        partitions = max(c for n, c in inputs.items() if n != settings.topic_catalog)
    return partitions


#: Internal topics co-partitioned with the users table (the catalog ones only when on).
COPARTITIONED = ("topic_ticks", "topic_rekeyed", "topic_interest", "topic_fanout")


def internal_variables(settings: Settings, catalog: bool = False) -> dict[str, str]:
    fields = COPARTITIONED if catalog else COPARTITIONED[:2]
    return {getattr(settings, field): env_name(field) for field in fields}


def check_ticks(
    settings: Settings, counts: Mapping[str, int], partitions: int, catalog: bool = False
) -> None:
    """Existing internal topics must have the worker's partition count."""
    for name, variable in internal_variables(settings, catalog).items():
        found = counts.get(name)
        if found is not None and found != partitions:
            kind = "tick" if name == settings.topic_ticks else "internal"
            raise TopicLayoutError(
                f"the {kind} topic {name} ({variable}) has {found} partitions but "
                f"the worker has {partitions} (NUDGE_PARTITIONS, or the largest input topic). "
                f"It holds only Nudge's own transient records: stop every worker, delete it "
                f"(kafka-topics.sh --delete --topic {name}) and restart, or set {variable} to "
                "a new name, or NUDGE_PARTITIONS to its count"
            )


def to_create(
    settings: Settings,
    counts: Mapping[str, int],
    partitions: int,
    catalog: bool = False,
    replication: int = 1,
) -> list[NewTopic]:
    return [
        NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replication,
            topic_configs=(
                {"retention.ms": str(TICK_RETENTION_MS)} if name == settings.topic_ticks else {}
            ),
        )
        for name in owned_variables(settings, catalog)
        if name not in counts
    ]


def creation_errors(response: Any, variables: Mapping[str, str], replication: int) -> list[str]:
    """Readable errors of a CreateTopics response, one per reason, ignoring topics created
    meanwhile (another worker starting at the same time)."""
    by_reason: dict[str, list[str]] = {}
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        if code in (0, TOPIC_ALREADY_EXISTS):
            continue
        detail = entry[2] if len(entry) > 2 and entry[2] else for_code(code).__name__
        if "replica" in detail.lower():
            detail = f"{detail} (NUDGE_REPLICATION_FACTOR={replication})"
        by_reason.setdefault(detail, []).append(f"{name} ({variables.get(name, '?')})")
    return [f"cannot create {', '.join(names)}: {why}" for why, names in by_reason.items()]


def reported_counts(described: list[dict[str, Any]]) -> dict[str, int]:
    """Topic -> partition count, for the topics the broker knows without error."""
    return {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}


async def _all_counts(admin: AIOKafkaAdminClient) -> dict[str, int]:
    # Every topic: naming topics in a Metadata request may auto-create them on brokers
    # with auto.create.topics.enable, and input topics must never be created.
    return reported_counts(await admin.describe_topics())


async def _prepare(
    admin: AIOKafkaAdminClient, settings: Settings, deadline: float, catalog: bool
) -> Layout:
    # An input topic created a moment ago may not be in the metadata yet, or without its
    # partitions: look again a few times before calling it missing.
    settle_until = min(deadline, time.monotonic() + INPUT_SETTLE_SECONDS)
    while True:
        counts = await _all_counts(admin)
        if all(counts.get(n, 0) > 0 for n in input_variables(settings, catalog)):
            break
        if time.monotonic() >= settle_until:
            break
        await asyncio.sleep(LAYOUT_POLL_SECONDS)
    partitions = worker_partitions(settings, counts, catalog)
    check_ticks(settings, counts, partitions, catalog)
    cluster = await admin.describe_cluster()
    replication = default_replication(settings, len(cluster["brokers"]))
    missing = to_create(settings, counts, partitions, catalog, replication)
    owned = owned_variables(settings, catalog)
    if missing:
        response = await admin.create_topics(missing)
        errors = creation_errors(response, owned, replication)
        if errors:
            raise TopicSetupError("; ".join(errors))
        log.info(
            "created topics",
            extra={"topics": [t.name for t in missing], "partitions": partitions},
        )
    # Read the layout back until the broker reports every topic (never a single read
    # right after a creation: metadata may still show no partitions for a moment).
    while True:
        counts = await _all_counts(admin)
        unsettled = [n for n in owned if counts.get(n, 0) == 0]
        if not unsettled:
            break
        if time.monotonic() >= deadline:
            raise TopicSetupError(
                f"the broker does not report {', '.join(unsettled)} "
                f"{settings.kafka_startup_timeout_seconds:.0f} s after start-up began; check "
                "that the Kafka principal may create and describe them"
            )
        await asyncio.sleep(LAYOUT_POLL_SECONDS)
    inputs = input_counts(settings, counts, catalog)  # present while we were creating
    check_ticks(settings, counts, partitions, catalog)
    internal = internal_variables(settings, catalog)
    for name in owned:
        if name not in internal and name not in inputs and counts[name] != partitions:
            log.info(
                "output topic has its own partition count",
                extra={"topic": name, "partitions": counts[name], "worker_partitions": partitions},
            )
    return Layout(partitions, inputs, replication)


async def prepare_topics(settings: Settings, *, catalog: bool = False) -> Layout:
    """Check the input topics, create Nudge's own; return the layout.

    All within ``settings.kafka_startup_timeout_seconds``. Raises
    :class:`~stream.broker_probe.BrokerUnusable` when Kafka cannot be reached,
    :class:`TopicSetupError` (or a subclass) when the topics need an operator,
    :class:`TimeoutError` when the broker is too slow.
    """
    timeout = settings.kafka_startup_timeout_seconds
    deadline = time.monotonic() + timeout
    await wait_for_broker(
        bootstrap_addresses(settings.kafka_bootstrap),
        ssl_context(settings),
        timeout,
        auth=aiokafka_kwargs(settings),
    )
    admin = AIOKafkaAdminClient(
        **aiokafka_kwargs(settings),
        client_id=f"{settings.app_id}-admin",
        request_timeout_ms=int(max(1.0, min(timeout, 30.0)) * 1000),
    )
    try:
        async with asyncio.timeout_at(_loop_deadline(deadline)):
            await admin.start()
            return await _prepare(admin, settings, deadline, catalog)
    except KafkaError as exc:
        raise TopicSetupError(
            f"Kafka at {settings.kafka_bootstrap} answered the start-up checks with an error: "
            f"{type(exc).__name__} {exc} (credentials: NUDGE_KAFKA_SASL_*, NUDGE_KAFKA_SSL_*)"
        ) from None
    finally:
        await admin.close()


def _loop_deadline(deadline: float) -> float:
    """A ``time.monotonic()`` instant on the running loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())
