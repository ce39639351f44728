"""The faust-streaming application: topics, tables, the agent, the tick timer, web views.

One agent consumes the four input topics and the internal tick topic. They have
the same partition count and one agent reads them, so partition ``p`` of each is
assigned to the same worker and processed in order, one message at a time: a
user's events, their state and their deadline ticks never race.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.types import TP
from prometheus_client import CollectorRegistry

from stream import kafka_transport
from stream.catch_up import CatchUp
from stream.contact_ledger import ContactLedger, RedisUnavailable
from stream.durable_writes import InOrderAcks, TableWriter
from stream.event_order import UNORDERED, EventTimeOrder
from stream.kafka_auth import aiokafka_kwargs, faust_credentials
from stream.metrics import NudgeMetrics
from stream.processor import UserProcessor
from stream.recent_sends import recently_sent
from stream.settings import Settings
from stream.user_rows import to_ms
from triggers.engine import Engine
from triggers.events import Event, InvalidEvent
from triggers.rules import Rules

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


@dataclass
class NudgeApp:
    app: faust.App
    processor: UserProcessor
    metrics: NudgeMetrics
    registry: CollectorRegistry
    ledger: ContactLedger

    def ready(self) -> bool:
        app = self.app
        recovery = app.tables.recovery
        return bool(
            app.started
            and not app.rebalancing
            and recovery.completed.is_set()
            and not recovery.in_recovery
        )


class _FaustSink:
    def __init__(self, triggers: faust.TopicT, audit: faust.TopicT, dlq: faust.TopicT) -> None:
        self._triggers, self._audit, self._dlq = triggers, audit, dlq

    async def audit(self, key: bytes, value: bytes) -> Any:
        return await self._audit.send(key=key, value=value)

    async def triggered(self, key: bytes, value: bytes) -> Any:
        return await self._triggers.send(key=key, value=value)

    async def dead_letter(self, key: bytes | None, value: bytes) -> Any:
        return await self._dlq.send(key=key, value=value)


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


def create_app(settings: Settings, rules: Rules, *, partitions: int | None = None) -> NudgeApp:
    partitions = partitions or settings.partitions
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
        broker_commit_every=1000,
        # Batch produce requests (changelogs, outputs) instead of one request per record.
        producer_linger=0.005,
        # A killed worker's partitions move to the others after this long.
        broker_session_timeout=settings.kafka_session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_seconds / 3),
        broker_commit_interval=1.0,
    )
    # Faust's transport with input partitions sought right after rebalances (see module).
    app.transport = kafka_transport.Transport(app.conf.broker_consumer, app)
    source = app.topic(
        *settings.input_topics, settings.topic_ticks, key_serializer="raw", value_serializer="raw"
    )
    ticks = app.topic(settings.topic_ticks, key_serializer="raw", value_serializer="raw")
    sink = _FaustSink(
        app.topic(settings.topic_triggers, key_serializer="raw", value_serializer="raw"),
        app.topic(settings.topic_audit, key_serializer="raw", value_serializer="raw"),
        app.topic(settings.topic_dlq, key_serializer="raw", value_serializer="raw"),
    )
    table_options = ROCKSDB_OPTIONS if settings.store.startswith("rocksdb") else None
    users = app.Table(
        "users",
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        options=table_options,
        help="Per-user engine state.",
    )
    # Keys and values are bytes we encode ourselves; Faust would default to JSON.
    users.key_serializer = users.value_serializer = "raw"

    registry = CollectorRegistry()
    setup_prometheus_sensors(app, registry=registry, name_prefix="faust")
    metrics = NudgeMetrics.create(registry)
    ledger = ContactLedger.from_url(
        settings.redis_url,
        password=settings.redis_password.get_secret_value() if settings.redis_password else None,
        suppression_key=settings.redis_suppression_key,
        prefix=settings.redis_key_prefix,
    )
    catch_up = CatchUp(settings.input_topics)
    order: EventTimeOrder[tuple[faust.EventT, Event | Exception]] = EventTimeOrder(
        settings.input_topics, max_hold=settings.order_max_hold_seconds
    )
    grace_ms = int(settings.fire_grace_seconds * 1000)

    def end_offset(topic: str, partition: int) -> int | None:
        return app.consumer.highwater(TP(topic, partition))

    table_writer = TableWriter(users)
    processor = UserProcessor(
        engine=Engine(rules),
        users=table_writer,
        ledger=ledger,
        sink=sink,
        metrics=metrics,
        max_message_bytes=settings.max_message_bytes,
        horizon=lambda partition, now_ms: catch_up.horizon(
            partition, now_ms - grace_ms, end_offset
        ),
    )
    nudge = NudgeApp(app, processor, metrics, registry, ledger)

    @users.on_recover
    async def after_recovery() -> None:
        # Runs after every recovery (start-up, rebalance), before streams resume.
        pending = processor.rebuild_deadlines(users.items())  # type: ignore[arg-type]
        log.info("deadline index rebuilt: %d pending", pending)
        owned = [tp for tp in app.assignor.assigned_actives() if tp.topic in input_topics]
        try:
            starts: dict[tuple[str, int], int] | None = await start_offsets(app, settings, owned)
        except Exception:
            log.exception("could not read committed offsets; deadlines follow the wall clock")
            starts = None
        catch_up.assigned(starts)
        order.assigned(starts)  # what waited is read again from the committed offsets
        try:
            processor.recently_sent = await recently_sent(
                settings, settings.recent_sends_window_seconds
            )
        except Exception:
            log.exception("could not read the recent sends; Redis marks alone guard them")

    input_topics = set(settings.input_topics)

    @app.agent(source, concurrency=1)
    async def process(stream: faust.StreamT) -> None:
        # Manual acks: a message's offset may be committed only once everything it wrote
        # (state changelog, output records) is on the broker. Faust's own flush-before-
        # commit can miss a write still on its way to the client, which a kill -9 then loses.
        acking = stream.noack()
        acks = InOrderAcks(acking)

        async def apply(event: faust.EventT, parsed: Event | Exception) -> None:
            message = event.message
            ts_ms = None
            try:
                if not isinstance(parsed, Event | InvalidEvent):
                    raise parsed  # the parser failed otherwise than on invalid input
                ts_ms = await processor.on_input(
                    message.topic,
                    message.partition,
                    message.offset,
                    message.key,
                    event.value,
                    parsed,
                )
            except Exception as exc:  # the agent must never die on a message
                log.exception(
                    "failed to process %s[%d]@%d", message.topic, message.partition, message.offset
                )
                try:
                    await processor.dead_letter_failure(message, event.value, exc)
                except Exception:
                    log.exception("could not dead-letter a message the engine failed on")
            catch_up.processed(message.topic, message.partition, message.offset, ts_ms)
            await acks.ack(event, processor.take_deliveries())

        async for event in acking.events():
            message = event.message
            if message.topic != settings.topic_ticks:
                parsed: Event | Exception
                try:
                    parsed = processor.parse(event.value)
                except Exception as exc:  # dead-lettered as a processing error in its turn
                    parsed = exc
                ts_ms = UNORDERED if isinstance(parsed, Exception) else to_ms(parsed.ts)
                order.add(
                    message.topic,
                    message.partition,
                    message.offset,
                    ts_ms,
                    (event, parsed),
                    now=time.monotonic(),
                    end_offset=end_offset,
                )
            for waiting, parsed in order.release(message.partition, time.monotonic()):
                await apply(waiting, parsed)
            metrics.waiting.set(len(order))
            if message.topic == settings.topic_ticks:
                try:
                    await processor.on_tick(message.partition)
                except Exception:  # the agent must never die; the next tick retries
                    log.exception("failed to process a tick of partition %d", message.partition)
                await acks.ack(event, processor.take_deliveries())

    # An exception escaping a Faust timer crashes the whole app: timers catch and log.
    @app.timer(interval=settings.tick_interval_seconds)
    async def send_ticks() -> None:
        if app.rebalancing:
            return
        try:
            for tp in app.assignor.assigned_actives():
                if tp.topic == settings.topic_ticks:
                    await ticks.send(value=b"", partition=tp.partition)
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
            monitor = app.monitor
            for tp, end in list(monitor.tp_end_offsets.items()):
                if tp.topic in input_topics:
                    committed = monitor.tp_committed_offsets.get(tp, 0)
                    lag = max(0, end - committed)
                    metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)
        except Exception:
            log.exception("could not report lag")

    @app.on_before_shutdown.connect
    async def finish_bookkeeping(app: faust.App, **_: Any) -> None:
        await table_writer.drain()
        await processor.drain_bookkeeping()
        await ledger.close()

    @app.page("/healthz")
    async def healthz(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return self.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        ready = nudge.ready()
        return self.json({"ready": ready}, status=200 if ready else 503)

    return nudge
