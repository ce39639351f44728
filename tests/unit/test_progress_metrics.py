"""Readiness while Kafka is silent (stream.progress), lateness without quiet-hours deferrals,
and the process metrics (stream.metrics)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from prometheus_client import CollectorRegistry

from stream.metrics import NudgeMetrics
from stream.progress import KafkaProgress
from tests.unit.timelines import Timeline, at, make_rules

TRIGGER = {"trigger": "cart_abandonment"}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_silence_longer_than_the_timeout_is_a_stall_until_kafka_answers() -> None:
    clock = Clock()
    progress = KafkaProgress(30.0, "k:9092", clock)
    clock.now += 29.0
    assert not progress.stalled()
    clock.now += 2.0
    assert progress.stalled()
    assert progress.silence() == 31.0
    progress.mark()
    assert not progress.stalled()
    assert progress.silence() == 0.0


def decided(registry: CollectorRegistry, rules_quiet: bool, late: timedelta) -> None:
    policy = {"quiet_hours": {"start": "21:00", "end": "08:00"}} if rules_quiet else {}
    rules = make_rules(
        only=("cart_abandonment",),
        default_timezone="UTC",
        triggers={"cart_abandonment": {"stages": ["1h", "2h"]}},
        contact_policy=policy,
    )
    timeline = Timeline(rules)
    timeline.add(at(hours=18), "p1")  # 20:00Z: stages due 21:00 and 22:00, quiet till 08:00
    timeline.advance(at(days=3))
    decisions = [dataclasses.replace(d, fired_at=d.fired_at + late) for d in timeline.decisions()]
    assert len(decisions) == 2
    NudgeMetrics.create(registry, rules).decided(decisions, [], set())


def test_a_quiet_hours_deferral_is_not_lateness_but_its_own_histogram() -> None:
    registry = CollectorRegistry()
    decided(registry, rules_quiet=True, late=timedelta(seconds=3))

    value = registry.get_sample_value
    assert value("nudge_fire_lateness_seconds_count", TRIGGER) == 2
    assert value("nudge_fire_lateness_seconds_sum", TRIGGER) == 6.0  # 3 s late each
    assert value("nudge_deferral_seconds_count", TRIGGER) == 2
    assert value("nudge_deferral_seconds_sum", TRIGGER) == (11 + 10) * 3600  # to 08:00
    assert value("nudge_deferral_seconds_bucket", {**TRIGGER, "le": "28800.0"}) == 0


def test_without_quiet_hours_nothing_is_deferred() -> None:
    registry = CollectorRegistry()
    decided(registry, rules_quiet=False, late=timedelta(seconds=0.5))

    value = registry.get_sample_value
    assert value("nudge_fire_lateness_seconds_sum", TRIGGER) == 1.0
    assert value("nudge_deferral_seconds_count", TRIGGER) == 0


def test_the_registry_has_the_process_metrics() -> None:
    registry = CollectorRegistry()
    NudgeMetrics.create(registry)
    assert (registry.get_sample_value("process_cpu_seconds_total") or 0) > 0
    assert (registry.get_sample_value("process_resident_memory_bytes") or 0) > 0
