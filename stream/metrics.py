"""Nudge's Prometheus metrics, counted per batch (Faust's own per-message sensor is not used).

Names follow Prometheus conventions (counters end in ``_total``, times are in
seconds, ``promtool check metrics`` passes). No label ever carries a user id. Label
sets whose values are known in advance are initialised at start, so a rate over a
counter exists before its first increment. A partition's series are removed when the
partition is revoked.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import faust
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
)

from triggers.event_engagement import ENGAGEMENT_CLASSES, EngagementEvent
from triggers.events import Event
from triggers.records import (
    ARMS,
    STATUSES,
    SUPPRESSION_REASONS,
    Conversion,
    Decision,
)
from triggers.registry import TRIGGER_NAMES
from triggers.rules import Rules
from triggers.steps import ERASED, PROCESSED

# `*_created` series add nothing for Nudge's users and double the scrape size.
disable_created_metrics()

LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
#: Quiet-hours deferrals: minutes to a night (and a weekend's channel quiet hours).
DEFERRAL_BUCKETS = (60.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0, 86400.0)
BATCH_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2000)
#: A contact's arm: sent decisions are the treatment, holdout decisions the holdout.
ENGAGEMENT_TYPES = tuple(cls.type for cls in ENGAGEMENT_CLASSES)
OTHER_CHANNEL = "other"  # an engagement event's channel the rules do not name
NO_CHANNEL = "none"  # a decision without a channel (no channels in the rules, suppressed)
ERASED_BY_EVENT = "user_erased"
ERASED_BY_RETENTION = "retention"
_ARM_OF_STATUS = {"sent": "treatment", "holdout": "holdout"}
_PARTITIONED = ("pending_deadlines", "held_back", "held_decisions")


@dataclass(frozen=True)
class NudgeMetrics:
    events: Counter
    dead_letters: Counter
    decisions: Counter
    conversions: Counter
    revenue: Counter
    recipients: Counter
    lateness: Histogram
    deferral: Histogram
    pending_deadlines: Gauge
    held_decisions: Gauge
    redis_errors: Counter
    redis_up: Gauge
    consumer_lag: Gauge
    ready: Gauge
    kafka_silence: Gauge
    ticks: Counter
    held_back: Gauge
    waiting: Gauge
    batch_size: Histogram
    batch_seconds: Histogram
    checkpoint: Histogram
    commit_seconds: Histogram
    rebalances: Counter
    catalog_swept: Counter
    rekeyed: Counter
    engagement: Counter
    erasures: Counter
    build: Info
    _partition_labels: set[str] = field(default_factory=set)
    _lag_labels: set[tuple[str, str]] = field(default_factory=set)
    #: The rules' channel names: an engagement event's other channel counts as "other"
    #: (the field is free text from the provider; labels stay bounded).
    _channels: frozenset[str] = frozenset()

    @classmethod
    def create(cls, registry: CollectorRegistry, rules: Rules | None = None) -> NudgeMetrics:
        """The metrics in ``registry``; with ``rules``, the series of every A/B variant exist
        from the start too."""

        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
            return Counter(name, doc, list(labels), registry=registry)

        def gauge(name: str, doc: str, labels: Iterable[str] = ()) -> Gauge:
            return Gauge(name, doc, list(labels), registry=registry)

        def histogram(name: str, doc: str, buckets: tuple, labels: Iterable[str] = ()) -> Histogram:
            return Histogram(name, doc, list(labels), buckets=buckets, registry=registry)

        metrics = cls(
            events=counter(
                "nudge_events_total",
                "Input messages by topic, event type and outcome "
                "(processed, duplicate, test, invalid, error).",
                ["topic", "type", "outcome"],
            ),
            dead_letters=counter(
                "nudge_dead_letters_total",
                "Input messages written to the dead-letter topic, by reason.",
                ["reason"],
            ),
            decisions=counter(
                "nudge_decisions_total",
                "Trigger decisions by trigger, status, reason ('none' unless suppressed) and "
                "channel (contract 8.2; 'none' without channels and for suppressed decisions).",
                ["trigger", "status", "reason", "channel"],
            ),
            conversions=counter(
                "nudge_conversions_total",
                "Orders attributed to a decision, by trigger, arm (treatment or holdout) and "
                "A/B variant ('none' for a holdout or a trigger without variants).",
                ["trigger", "arm", "variant"],
            ),
            revenue=counter(
                "nudge_conversion_revenue_total",
                "Revenue of the orders attributed to a decision, by trigger, arm and variant.",
                ["trigger", "arm", "variant"],
            ),
            recipients=counter(
                "nudge_recipients_total",
                "Episodes whose first stage reached the user (arm treatment: sent) or held "
                "the user out (arm holdout), by variant: the denominator of conversions per "
                "recipient.",
                ["trigger", "arm", "variant"],
            ),
            lateness=histogram(
                "nudge_fire_lateness_seconds",
                "How late the service decided: fired_at minus the time the stage was to be "
                "sent (its due_at, or the end of the quiet hours it was deferred to).",
                LATENESS_BUCKETS,
                ["trigger"],
            ),
            deferral=histogram(
                "nudge_deferral_seconds",
                "Decisions deferred by quiet hours (the contact policy's or a channel's): "
                "how long, from due_at to the end of the quiet hours.",
                DEFERRAL_BUCKETS,
                ["trigger"],
            ),
            pending_deadlines=gauge(
                "nudge_pending_deadlines",
                "Users with a pending deadline, on the partitions this worker owns.",
                ["partition"],
            ),
            held_decisions=gauge(
                "nudge_held_decisions",
                "Decisions held because Redis could not be asked, per owned partition.",
                ["partition"],
            ),
            redis_errors=counter(
                "nudge_redis_errors_total", "Failed Redis operations, by operation.", ["operation"]
            ),
            redis_up=gauge("nudge_redis_up", "1 if the last Redis operation succeeded, else 0."),
            consumer_lag=gauge(
                "nudge_consumer_lag_messages",
                "End offset minus committed offset of each owned input partition.",
                ["topic", "partition"],
            ),
            ready=gauge(
                "nudge_ready",
                "1 when the worker is assigned, recovered, not rebalancing and Kafka answered "
                "it within NUDGE_KAFKA_PROGRESS_TIMEOUT_SECONDS.",
            ),
            kafka_silence=gauge(
                "nudge_kafka_silence_seconds",
                "Seconds since the consumer group's coordinator last answered the worker "
                "(asked every few seconds).",
            ),
            held_back=gauge(
                "nudge_deadlines_held_back_seconds",
                "How far behind the wall clock deadlines may fire on a partition while its "
                "input is read (0 when caught up).",
                ["partition"],
            ),
            waiting=gauge(
                "nudge_input_waiting_messages",
                "Input messages read but waiting to be applied in event-time order.",
            ),
            ticks=counter("nudge_ticks_total", "Deadline ticks sent."),
            batch_size=histogram(
                "nudge_batch_messages", "Messages per processed batch.", BATCH_SIZE_BUCKETS
            ),
            batch_seconds=histogram(
                "nudge_batch_duration_seconds",
                "Time to process one batch, checkpoint included.",
                BATCH_SECONDS_BUCKETS,
            ),
            checkpoint=histogram(
                "nudge_checkpoint_duration_seconds",
                "Time of one checkpoint: outputs, ledger, changelog, local store, acks.",
                BATCH_SECONDS_BUCKETS,
            ),
            commit_seconds=histogram(
                "nudge_offset_commit_duration_seconds",
                "Time of one offset commit to Kafka.",
                BATCH_SECONDS_BUCKETS,
            ),
            rebalances=counter("nudge_rebalances_total", "Consumer group rebalances seen."),
            catalog_swept=counter(
                "nudge_catalog_rows_swept_total",
                "Catalog fan-out: expired interest and armed rows deleted from the products "
                "table by its sweep.",
            ),
            rekeyed=counter(
                "nudge_input_rekeyed_messages_total",
                "Input messages read on another partition than their user's (or from a topic "
                "with another partition count), forwarded to the re-keying topic.",
                ("topic",),
            ),
            engagement=counter(
                "nudge_engagement_events_total",
                "Delivery provider feedback applied (marketing.engagement), by event type and "
                "channel.",
                ("type", "channel"),
            ),
            erasures=counter(
                "nudge_erasures_total",
                "Users erased: user_erased events applied and idle users deleted by retention, "
                "by cause.",
                ("cause",),
            ),
            build=Info(
                "nudge_build", "Nudge's version and the rules version it runs.", registry=registry
            ),
            _channels=frozenset(() if rules is None else rules.channels),
        )
        for trigger in TRIGGER_NAMES:
            for status in STATUSES:
                reasons = SUPPRESSION_REASONS if status == "suppressed" else ("none",)
                channels = (rules.channels if rules else ()) if status in _ARM_OF_STATUS else ()
                for reason in reasons:
                    for channel in channels or (NO_CHANNEL,):
                        metrics.decisions.labels(trigger, status, reason, channel)
            variants = tuple(rules.trigger(trigger).variants) if rules is not None else ()
            for arm in ARMS:
                for variant in variants if arm == "treatment" and variants else ("none",):
                    metrics.conversions.labels(trigger, arm, variant)
                    metrics.revenue.labels(trigger, arm, variant)
                    metrics.recipients.labels(trigger, arm, variant)
            metrics.lateness.labels(trigger)
            metrics.deferral.labels(trigger)
        metrics.redis_up.set(0)
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, memory, open fds
        if rules is not None:
            for event_type in ENGAGEMENT_TYPES:
                for channel in (*rules.channels, OTHER_CHANNEL):
                    metrics.engagement.labels(event_type, channel)
        metrics.erasures.labels(ERASED_BY_EVENT)
        metrics.erasures.labels(ERASED_BY_RETENTION)
        return metrics

    # -- per batch ----------------------------------------------------------------------

    def event(self, topic: str, event: Event, outcome: str) -> None:
        """One applied input event: by outcome; feedback by channel; an erasure."""
        self.events.labels(topic, event.type, outcome).inc()
        if outcome == PROCESSED and isinstance(event, EngagementEvent):
            channel = event.channel if event.channel in self._channels else OTHER_CHANNEL
            self.engagement.labels(event.type, channel).inc()
        elif outcome == ERASED:
            self.erasures.labels(ERASED_BY_EVENT).inc()

    def expired(self, users: int) -> None:
        """Users deleted by retention (or whose erasure memory ended: no cause label)."""
        if users:
            self.erasures.labels(ERASED_BY_RETENTION).inc(users)

    def dead_letter(self, topic: str, reason: str) -> None:
        self.dead_letters.labels(reason).inc()
        outcome = "error" if reason == "processing_error" else "invalid"
        self.events.labels(topic, "unknown" if outcome == "error" else "invalid", outcome).inc()

    def decided(
        self, decisions: list[Decision], conversions: list[Conversion], skipped: set[str]
    ) -> None:
        for d in decisions:
            if d.trigger_id not in skipped:
                channel = d.channel or NO_CHANNEL
                self.decisions.labels(d.trigger, d.status, d.reason or "none", channel).inc()
                send_at = d.send_at or d.due_at
                late = (d.fired_at - send_at).total_seconds()
                self.lateness.labels(d.trigger).observe(max(0.0, late))
                if send_at > d.due_at:
                    self.deferral.labels(d.trigger).observe((send_at - d.due_at).total_seconds())
                if d.stage == 1 and d.status in _ARM_OF_STATUS:
                    arm = _ARM_OF_STATUS[d.status]
                    self.recipients.labels(d.trigger, arm, d.variant or "none").inc()
        for c in conversions:
            variant = c.variant or "none"
            self.conversions.labels(c.trigger, c.arm, variant).inc()
            self.revenue.labels(c.trigger, c.arm, variant).inc(c.revenue)

    def batch_done(self, size: int, seconds: float, waiting: int) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        self.waiting.set(waiting)

    def partitions(self, pending: dict[int, tuple[int, int]]) -> None:
        """Per owned partition: (pending deadlines, held decisions)."""
        for partition, (deadlines, held) in pending.items():
            self.pending_deadlines.labels(str(partition)).set(deadlines)
            self.held_decisions.labels(str(partition)).set(held)

    def lag(self, topic: str, partition: int, messages: int) -> None:
        self._lag_labels.add((topic, str(partition)))
        self.consumer_lag.labels(topic, str(partition)).set(messages)

    def reset_partitions(self, owned: Iterable[int]) -> None:
        """Drop the series of partitions this worker no longer owns (and start the new)."""
        keep = {str(p) for p in owned}
        for label in self._partition_labels - keep:
            for name in _PARTITIONED:
                getattr(self, name).remove(label)
        for labels in [labels for labels in self._lag_labels if labels[1] not in keep]:
            self.consumer_lag.remove(*labels)
            self._lag_labels.discard(labels)
        for label in keep - self._partition_labels:
            for name in _PARTITIONED:
                getattr(self, name).labels(label).set(0)
        self._partition_labels.clear()
        self._partition_labels.update(keep)


class CommitSensor(faust.Sensor):
    """Faust's hooks for what only Faust sees: offset commits and rebalances."""

    def __init__(self, metrics: NudgeMetrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._metrics = metrics

    def on_commit_initiated(self, consumer: Any) -> Any:
        return time.monotonic()

    def on_commit_completed(self, consumer: Any, state: Any) -> None:
        self._metrics.commit_seconds.observe(time.monotonic() - state)

    def on_rebalance_start(self, app: Any) -> dict:
        self._metrics.rebalances.inc()
        return {}
