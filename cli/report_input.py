"""The input of ``nudge report``: the audit topic read up to its end (``--from-kafka``), the
one line saying what an input holds when it is no audit stream, and the channels' costs
from a rules file (``--rules``)."""

from __future__ import annotations

import asyncio
import sys

from cli.report_data import AuditTally
from triggers.rules import RulesError, load_rules


def not_audit(
    tally: AuditTally, source: str | None, from_kafka: bool, topic: str | None
) -> str | None:
    """One line saying what the input is and what to give instead, when it holds lines but no
    audit record (e.g. the events file instead of its replay); None when it is fine."""
    kind = tally.not_audit()
    if kind is None:
        return None
    if from_kafka:
        name = f"topic {topic}" if topic else "the topic NUDGE_TOPIC_AUDIT names"
        what = "shop events" if kind == "events" else "no audit record"
        return (
            f"{name} holds {what} ({tally.lines:,} records, none an audit record):"
            " give the topic the worker writes its audit records to (--topic or"
            " NUDGE_TOPIC_AUDIT)"
        )
    name = "stdin" if source in (None, "-") else source
    events = "EVENTS" if name == "stdin" else name
    if kind == "events":
        return (
            f"{name} holds shop events ({tally.events:,} of {tally.lines:,} lines), the input of"
            f" nudge replay, not audit records: run `nudge replay {events} --rules RULES"
            " --out audit.jsonl`, then `nudge report audit.jsonl`"
        )
    return (
        f"none of the {tally.lines:,} lines of {name} is an audit record (a decision,"
        " conversion, engagement or erasure): give nudge replay's output, or read the audit"
        " topic with --from-kafka"
    )


def tally_kafka(topic: str | None) -> AuditTally | int:
    """The audit topic (``NUDGE_TOPIC_AUDIT``, or ``topic``) from the beginning up to its end
    offsets at start, tallied; or the exit status after a one-line error."""
    from stream.client_start import KafkaUnavailable
    from stream.settings import SettingsError, load_settings
    from stream.tail import MissingTopic
    from stream.topic_reader import ReadStopped, read_to_end

    try:
        settings, warnings = load_settings()
    except SettingsError as exc:
        print(f"nudge report: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"nudge report: warning: {warning}", file=sys.stderr)
    name = topic or settings.topic_audit
    variable = "--topic" if topic else "NUDGE_TOPIC_AUDIT"
    fix = (
        f"Set {variable} to the audit topic the worker writes (it creates it at its first "
        "start), or check that NUDGE_KAFKA_BOOTSTRAP is the worker's cluster"
    )
    tally = AuditTally()
    try:
        asyncio.run(read_to_end(settings, name, tally.add_line, fix=fix))
    except (KafkaUnavailable, MissingTopic) as exc:
        print(f"nudge report: {exc}", file=sys.stderr)
        return 1
    except ReadStopped as exc:
        print(f"nudge report: {exc}; no report", file=sys.stderr)
        return 130
    except OSError as exc:  # e.g. a TLS certificate file named in the settings is missing
        print(f"nudge report: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return tally


def channel_costs(rules: str | None) -> dict[str, float] | int | None:
    """Each channel's ``cost`` (contract 8.1) in the rules file's order; None without a file;
    the exit status after the errors when the file cannot be used."""
    if rules is None:
        return None
    try:
        loaded = load_rules(rules)
    except RulesError as exc:
        for line in str(exc).splitlines():
            print(f"nudge report: rules: {line}", file=sys.stderr)
        return 1
    return {name: channel.cost for name, channel in loaded.channels.items()}
