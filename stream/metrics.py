"""Nudge's own Prometheus metrics (Faust's sensor adds its framework metrics beside them).

Names follow Prometheus conventions: counters end in ``_total``, times are in
seconds. No label ever carries a user id.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# `*_created` series add nothing for Nudge's users and double the scrape size.
disable_created_metrics()

LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


@dataclass(frozen=True)
class NudgeMetrics:
    events: Counter
    dead_letters: Counter
    decisions: Counter
    conversions: Counter
    lateness: Histogram
    pending_deadlines: Gauge
    redis_errors: Counter
    redis_up: Gauge
    consumer_lag: Gauge
    ready: Gauge
    ticks: Counter
    held_back: Gauge
    waiting: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> NudgeMetrics:
        return cls(
            events=Counter(
                "nudge_events_total",
                "Input messages by topic, event type and outcome "
                "(processed, duplicate, test, invalid).",
                ["topic", "type", "outcome"],
                registry=registry,
            ),
            dead_letters=Counter(
                "nudge_dead_letters_total",
                "Invalid input messages written to the dead-letter topic, by reason.",
                ["reason"],
                registry=registry,
            ),
            decisions=Counter(
                "nudge_decisions_total",
                "Trigger decisions by trigger, status and reason ('none' unless suppressed).",
                ["trigger", "status", "reason"],
                registry=registry,
            ),
            conversions=Counter(
                "nudge_conversions_total",
                "Orders attributed to a decision, by trigger and arm (treatment or holdout).",
                ["trigger", "arm"],
                registry=registry,
            ),
            lateness=Histogram(
                "nudge_fire_lateness_seconds",
                "fired_at minus the time the decision was due (after any quiet-hours deferral).",
                ["trigger"],
                buckets=LATENESS_BUCKETS,
                registry=registry,
            ),
            pending_deadlines=Gauge(
                "nudge_pending_deadlines",
                "Users with a pending deadline, on the partitions this worker owns.",
                ["partition"],
                registry=registry,
            ),
            redis_errors=Counter(
                "nudge_redis_errors_total",
                "Failed Redis operations, by operation.",
                ["operation"],
                registry=registry,
            ),
            redis_up=Gauge(
                "nudge_redis_up",
                "1 if the last Redis operation succeeded, else 0.",
                registry=registry,
            ),
            consumer_lag=Gauge(
                "nudge_consumer_lag_messages",
                "End offset minus committed offset of each owned input partition.",
                ["topic", "partition"],
                registry=registry,
            ),
            ready=Gauge(
                "nudge_ready",
                "1 when the worker is assigned, recovered and not rebalancing.",
                registry=registry,
            ),
            held_back=Gauge(
                "nudge_deadlines_held_back_seconds",
                "How far behind the wall clock deadlines may fire on a partition while its "
                "input backlog is read (0 when caught up).",
                ["partition"],
                registry=registry,
            ),
            waiting=Gauge(
                "nudge_input_waiting_messages",
                "Input messages read but waiting to be applied in event-time order "
                "(stream.event_order).",
                registry=registry,
            ),
            ticks=Counter(
                "nudge_ticks_total",
                "Deadline ticks processed.",
                registry=registry,
            ),
        )
