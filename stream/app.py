"""The faust-streaming application: topics, the users table, the batch agent, ticks, web views.

One agent consumes the input topics, the internal tick topic and the re-keying topic.
Topics with the worker's partition count are co-assigned by Faust: partition ``p`` of
each (ticks, re-keyed input, direct input topics) goes to the same worker as the
``users`` table's partition ``p``, so a user's events, state and deadline ticks never
race; input topics of other counts are read wherever Faust assigns them, and what is not
on its user's partition is re-keyed (``stream.rekeying``). The agent takes micro-batches
and hands each to :class:`stream.batches.Batches` (parse, watermark, core, one checkpoint: see
``docs/protocol.md``). Faust provides the consumer group, rebalancing, the table's
changelog, recovery and standbys, the web server and timers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust
from aiohttp.web import Response
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from stream import kafka_transport
from stream.admin import register_admin
from stream.batches import Batches, Topics
from stream.contact_ledger import ContactLedger, RedisUnavailable
from stream.kafka_auth import aiokafka_kwargs, faust_credentials
from stream.metrics import CommitSensor, NudgeMetrics
from stream.product_table import catalog_fanout
from stream.progress import KafkaProgress, watch_kafka
from stream.read_positions import kafka_first_offset_at
from stream.recent_sends import recently_sent
from stream.rekeying import Rekeying
from stream.settings import Settings
from stream.topics import Layout
from stream.user_rows import UsersStore, unpack_row, wake_times
from triggers.driver import Driver
from triggers.rules import Rules
from triggers.state import UserState

log = logging.getLogger("nudge.app")

#: Bounded RocksDB memory per table partition (Faust's defaults are 64 MiB x3 write
#: buffers and a 2 GiB block cache).
ROCKSDB_OPTIONS: dict[str, Any] = {
    "write_buffer_size": 8 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "target_file_size_base": 16 * 1024 * 1024,
    "block_cache_size": 16 * 1024 * 1024,
    "block_cache_compressed_size": 0,
    "max_open_files": 256,
}
#: A batch closes at this many messages or after ``BATCH_WITHIN`` seconds.
BATCH_MAX = 1000
BATCH_WITHIN = 0.05


@dataclass
class NudgeApp:
    app: faust.App
    batches: Batches
    metrics: NudgeMetrics
    registry: CollectorRegistry
    ledger: ContactLedger
    progress: KafkaProgress

    def ready(self) -> bool:
        app = self.app
        recovery = app.tables.recovery
        return bool(
            app.started
            and not app.rebalancing
            and recovery.completed.is_set()
            and not recovery.in_recovery
            and not self.progress.stalled()  # Kafka answered lately (stream.progress)
        )


class _Broker:
    """Faust's producer, used directly: one future per record, no per-record sensors."""

    def __init__(self, app: faust.App) -> None:
        self._app = app

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None,
        headers: list[tuple[str, bytes]] | None,
    ) -> Any:
        return await self._app.producer.send(topic, key, value, partition, None, headers)


async def start_offsets(
    app: faust.App, settings: Settings, owned: list[TP]
) -> dict[tuple[str, int], int]:
    """Where this worker starts reading each owned input partition: committed, else earliest."""
    if not owned:
        return {}
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings))
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(
            app.conf.id, partitions=[TopicPartition(tp.topic, tp.partition) for tp in owned]
        )
    finally:
        await admin.close()
    starts = {
        (tp.topic, tp.partition): meta.offset for tp, meta in committed.items() if meta.offset >= 0
    }
    missing = [tp for tp in owned if (tp.topic, tp.partition) not in starts]
    if missing:
        earliest = await app.consumer.earliest_offsets(*missing)
        starts.update({(tp.topic, tp.partition): offset for tp, offset in earliest.items()})
    return starts


def create_app(settings: Settings, rules: Rules, *, layout: Layout) -> NudgeApp:
    partitions = layout.partitions
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=faust_credentials(settings),
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=partitions,
        topic_replication_factor=settings.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        table_standby_replicas=1,
        stream_wait_empty=False,
        broker_commit_every=10_000,
        # Batch produce requests (changelogs, outputs) instead of one request per record.
        producer_linger=0.005,
        # A killed worker's partitions move to the others after this long.
        broker_session_timeout=settings.kafka_session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_seconds / 3),
        broker_commit_interval=1.0,
    )
    # Faust's transport with input partitions sought right after rebalances (see module).
    app.transport = kafka_transport.Transport(app.conf.broker_consumer, app)
    kafka_transport.pace_metadata_updates()  # no busy loop while the broker is away
    table_options = ROCKSDB_OPTIONS if settings.store.startswith("rocksdb") else None
    registry = CollectorRegistry()
    metrics = NudgeMetrics.create(registry, rules)
    # The catalog fan-out (stream.catalog_fanout): its topics and table, when it is on.
    swept = metrics.catalog_swept.inc
    catalog = catalog_fanout(app, settings, rules, partitions, table_options, swept)
    fanout_topics = () if catalog is None else (catalog.topics.catalog, *catalog.internal())
    source = app.topic(
        *settings.input_topics,
        settings.topic_ticks,
        settings.topic_rekeyed,
        *fanout_topics,
        key_serializer="raw",
        value_serializer="raw",
    )
    ticks = app.topic(settings.topic_ticks, key_serializer="raw", value_serializer="raw")
    users = app.Table(
        "users",
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        options=table_options,
        help="Per-user engine state.",
        # Erasure (contract 8.5): a user's superseded rows are compacted away within this.
        extra_topic_configs={
            "max.compaction.lag.ms": str(int(settings.changelog_max_compaction_lag_seconds * 1000))
        },
    )
    # Keys and values are bytes we encode ourselves; Faust would default to JSON.
    users.key_serializer = users.value_serializer = "raw"

    app.sensors.add(CommitSensor(metrics))
    progress = watch_kafka(app, settings, metrics)
    ledger = ContactLedger.from_url(
        settings.redis_url,
        password=settings.redis_password.get_secret_value() if settings.redis_password else None,
        suppression_key=settings.redis_suppression_key,
        prefix=settings.redis_key_prefix,
    )
    # The catalog topic is re-keyed like the user topics (contract 9: stream.catalog_fanout).
    catalog_topics = () if catalog is None else (catalog.topics.catalog,)
    input_topics = {*settings.input_topics, *catalog_topics}
    # Read from their committed offsets at each assignment (stream.read_positions).
    read_topics = {*input_topics, settings.topic_rekeyed}
    rekeying = Rekeying(
        topic=settings.topic_rekeyed,
        inputs={t: layout.inputs[t] for t in (*settings.input_topics, *catalog_topics)},
        partitions=partitions,
        everything=settings.rekey == "all",
        max_hold=settings.rekey_max_hold_seconds,
        unknown_grace_ms=10_000,
        mark_interval=settings.rekey_mark_interval_seconds,
        monotonic=time.monotonic,
        on_forwarded=lambda topic: metrics.rekeyed.labels(topic).inc(),
    )

    # End offsets come from a client of the worker's own event loop: one ListOffsets request
    # (~1 ms). Faust's consumer answers such calls from its thread between fetches: ~1 s.
    offsets_clients: list[AIOKafkaConsumer] = []  # created in the loop, on first use

    async def list_end_offsets(tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        if not offsets_clients:
            client = AIOKafkaConsumer(
                **aiokafka_kwargs(settings), group_id=None, enable_auto_commit=False
            )
            await client.start()
            offsets_clients.append(client)
        offsets_client = offsets_clients[0]
        ends = await offsets_client.end_offsets([TopicPartition(t, p) for t, p in tps])
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    # The agent's stream, through which messages are acknowledged: Stream.ack also ends
    # the per-event bookkeeping Faust's monitor started (Event.ack alone leaks it).
    acking: list[faust.StreamT] = []

    async def ack(events: list[Any]) -> None:
        stream = acking[0]
        for event in events:
            await stream.ack(event)  # the consumer commits acknowledged offsets in order

    async def seek(topic: str, partition: int, offset: int) -> None:
        await app.consumer.seek_wait({TP(topic, partition): offset})  # Faust reads it again

    driver = Driver(rules)
    batches = Batches(
        driver=driver,
        topics=Topics(
            inputs=settings.input_topics,
            ticks=settings.topic_ticks,
            triggers=settings.topic_triggers,
            audit=settings.topic_audit,
            dlq=settings.topic_dlq,
            changelog=users.changelog_topic.get_topic_name(),
        ),
        store=UsersStore(users),
        broker=_Broker(app),
        ledger=ledger,
        metrics=metrics,
        list_end_offsets=list_end_offsets,
        first_offset_at=kafka_first_offset_at(aiokafka_kwargs(settings)),
        seek=seek,
        ack=ack,
        max_message_bytes=settings.max_message_bytes,
        fire_grace_ms=int(settings.fire_grace_seconds * 1000),
        max_hold=settings.order_max_hold_seconds,
        catalog=catalog,
        rekeying=rekeying,
    )
    metrics.build.info({"version": _version(), "rules_version": rules.version_label})
    nudge = NudgeApp(app, batches, metrics, registry, ledger, progress)
    # Held while a batch runs: a revocation waits for its checkpoint, so a partition's
    # changelog is never written by two workers at once.
    batch_lock = asyncio.Lock()

    @users.on_recover
    async def after_recovery() -> None:
        # Faust runs this in a task whose failure nobody reads: without the crash, the
        # partitions would stay set up for the previous assignment, silently unprocessed.
        try:
            await set_up_assignment()
        except Exception as exc:
            log.critical("the new assignment could not be set up; the worker stops: %r", exc)
            await app.crash(exc)
            raise

    async def set_up_assignment() -> None:
        # Runs after every recovery (start-up, rebalance), before streams resume.
        actives = app.assignor.assigned_actives()
        owned = [tp for tp in actives if tp.topic in read_topics]
        try:
            starts: dict[tuple[str, int], int] | None = await start_offsets(app, settings, owned)
        except Exception:
            log.exception("could not read committed offsets; deadlines wait for the input")
            starts = None
        partitions_owned = {tp.partition for tp in actives if tp.topic == settings.topic_ticks}
        sources = [(tp.topic, tp.partition) for tp in actives if tp.topic in input_topics]
        pending = batches.assigned(
            partitions_owned, wake_times(users.items()), starts, sources=sources
        )
        log.info("assigned %d partitions, %d pending deadlines", len(partitions_owned), pending)
        try:
            batches.checkpoint.recently_sent = await recently_sent(
                settings, settings.recent_sends_window_seconds
            )
        except Exception:
            log.exception("could not read the recent sends; Redis marks alone guard them")

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set[TP], **_: Any) -> None:
        async with batch_lock:  # the batch in progress finishes its checkpoint first
            batches.revoked(
                {tp.partition for tp in revoked if tp.topic == settings.topic_ticks},
                [(tp.topic, tp.partition) for tp in revoked if tp.topic in input_topics],
            )

    @app.agent(source, concurrency=1)
    async def process(stream: faust.StreamT) -> None:
        # Manual acks: a message is acknowledged (its offset may be committed) only by the
        # checkpoint of its batch, after everything it caused is durable.
        # noack_take turns the stream's own acks off (no .noack() clone: a clone's channel
        # would keep a second queue of every message that nobody drains).
        acking[:] = [stream]
        async for batch in stream.noack_take(BATCH_MAX, within=BATCH_WITHIN):
            # Messages fetched before a rebalance are not dropped here: Faust does not
            # always deliver them again; the shell takes each message once, in offset
            # order (stream.read_positions).
            async with batch_lock:
                try:
                    await batches.process(batch)
                except Exception as exc:
                    # The partitions restart from their committed offsets and changelog.
                    log.critical("a batch could not be checkpointed; the worker stops: %r", exc)
                    await app.crash(exc)
                    raise

    # An exception escaping a Faust timer crashes the whole app: timers catch and log.
    @app.timer(interval=settings.tick_interval_seconds)
    async def send_ticks() -> None:
        if app.rebalancing:
            return
        try:
            for tp in app.assignor.assigned_actives():
                if tp.topic == settings.topic_ticks:
                    await ticks.send(value=b"", partition=tp.partition)
                    metrics.ticks.inc()
        except Exception:
            log.exception("could not send deadline ticks")

    async def check_redis() -> None:
        try:
            await ledger.ping()
            metrics.redis_up.set(1)
        except RedisUnavailable as exc:
            metrics.redis_up.set(0)
            metrics.redis_errors.labels(exc.operation).inc()
            log.warning("redis unavailable (%s); decisions due meanwhile are held", exc)

    @app.task
    async def check_redis_at_start() -> None:
        await check_redis()

    @app.timer(interval=5.0)
    async def report_health() -> None:
        await check_redis()
        try:
            metrics.ready.set(1 if nudge.ready() else 0)
            metrics.partitions(batches.partition_gauges())
            monitor = app.monitor
            for tp, end in list(monitor.tp_end_offsets.items()):
                if tp.topic in input_topics:
                    committed = monitor.tp_committed_offsets.get(tp, 0)
                    metrics.lag(tp.topic, tp.partition, max(0, end - committed))
        except Exception:
            log.exception("could not report lag")

    @app.on_before_shutdown.connect
    async def finish(app: faust.App, **_: Any) -> None:
        async with batch_lock:
            await ledger.close()
            for client in offsets_clients:
                await client.stop()

    @app.page("/metrics")
    async def scrape(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        body = generate_latest(registry)
        return Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})  # type: ignore[return-value]

    def lookup(user_id: str) -> UserState | None:
        row = users.data.get(user_id.encode())
        return None if row is None else unpack_row(row)[0]

    register_admin(app, settings, lookup, rules)  # off unless NUDGE_ADMIN_TOKEN is set

    @app.page("/healthz")
    async def healthz(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return self.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        ready = nudge.ready()
        return self.json({"ready": ready}, status=200 if ready else 503)

    return nudge


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nudge")
    except PackageNotFoundError:
        return "unknown"
