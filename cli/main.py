"""The ``nudge`` command line: worker, replay, report, inspect, rules check, simulate, tail,
schema.

Each subcommand is registered by one ``_add_*`` function, which declares its
arguments and sets ``run`` to a function of the parsed arguments returning the
exit status. Heavy imports (Faust, Kafka clients) happen inside ``run``, so
``nudge replay`` and ``nudge rules check`` start fast and never touch Kafka or
Redis.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

Subparsers = argparse._SubParsersAction  # the type argparse gives add_subparsers()


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` for options that have a real default (not None or False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _command(sub: Subparsers, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand parser that shows defaults in its ``--help``."""
    return sub.add_parser(name, help=help, description=help, formatter_class=_HelpFormatter)


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def count(text: str) -> int:
    """A count where 0 means "no limit"."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no limit) or more, got {text}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number greater than 0, got {text}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def version() -> str:
    try:
        return metadata.version("nudge")
    except metadata.PackageNotFoundError:  # running from a checkout that is not installed
        return "unknown (not installed)"


def _add_worker(sub: Subparsers) -> None:
    worker = _command(sub, "worker", "run the live service (Faust worker on Kafka + Redis)")
    worker.add_argument("--rules", help="rules file (YAML); default: NUDGE_RULES_PATH or built-in")

    def run(args: argparse.Namespace) -> int:
        from stream.worker import worker_command

        return worker_command(rules=args.rules)

    worker.set_defaults(run=run)


JOBS_HELP = "processes to split the users across (the same output for every N)"


def _add_replay(sub: Subparsers) -> None:
    replay = _command(sub, "replay", "run the engine on a JSON Lines event file")
    replay.add_argument(
        "events", help="events file (JSON Lines, plain or gzip-compressed), '-' for stdin"
    )
    replay.add_argument("--rules", help="rules file (YAML)")
    replay.add_argument(
        "--until", help="advance the clock to this time at the end (RFC 3339 or epoch ms)"
    )
    replay.add_argument("--out", default="-", help="output file, '-' for stdout")
    replay.add_argument(
        "--summary-json", metavar="FILE", help="also write the summary to FILE as JSON"
    )
    replay.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    replay.add_argument(
        "--progress-every",
        type=positive_float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between two progress lines on stderr",
    )
    replay.add_argument(
        "--compare",
        metavar="RULES_B",
        help="what-if: replay under --rules and RULES_B, print the decisions kept, re-timed,"
        " re-judged, added and removed (instead of the records)",
    )
    replay.add_argument("--diff", metavar="FILE", help="with --compare: the changed records")
    replay.add_argument("--jobs", type=positive_int, default=1, metavar="N", help=JOBS_HELP)

    def run(args: argparse.Namespace) -> int:
        from cli.replay import replay_command

        if args.compare is not None or args.diff is not None:
            from cli.compare import compare_command

            if args.compare is None or args.out != "-":
                message = "nudge replay: --diff needs --compare, --compare takes no --out"
                print(message, file=sys.stderr)
                return 2
            return compare_command(
                args.events,
                rules=args.rules,
                compare=args.compare,
                until=args.until,
                diff=args.diff,
                jobs=args.jobs,
            )
        return replay_command(
            args.events,
            rules=args.rules,
            until=args.until,
            out=args.out,
            quiet=args.quiet,
            summary_json=args.summary_json,
            progress_every=args.progress_every,
            jobs=args.jobs,
        )

    replay.set_defaults(run=run)


def _add_report(sub: Subparsers) -> None:
    report = _command(
        sub, "report", "uplift, funnel and cost per trigger, stage, variant and channel"
    )
    report.add_argument(
        "audit", nargs="?", help="audit records (JSON Lines, e.g. replay output), '-' stdin"
    )
    report.add_argument(
        "--from-kafka",
        action="store_true",
        help="read the audit topic instead (NUDGE_TOPIC_AUDIT on NUDGE_KAFKA_BOOTSTRAP), "
        "from the beginning up to its end at start",
    )
    report.add_argument("--topic", help="with --from-kafka: this topic instead")
    report.add_argument(
        "--rules", metavar="FILE", help="the rules file, for each channel's cost (contract 8.1)"
    )
    report.add_argument("--json", action="store_true", help="print JSON instead of a table")
    report.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page")

    def run(args: argparse.Namespace) -> int:
        from cli.report import report_command

        if args.from_kafka and args.audit is not None:
            report.error("give an audit file or --from-kafka, not both")
        if not args.from_kafka and args.audit is None:
            report.error("give an audit file ('-' for stdin) or --from-kafka")
        if args.topic is not None and not args.from_kafka:
            report.error("--topic needs --from-kafka")
        return report_command(
            args.audit,
            from_kafka=args.from_kafka,
            topic=args.topic,
            rules=args.rules,
            as_json=args.json,
            html=args.html,
        )

    report.set_defaults(run=run)


def _add_inspect(sub: Subparsers) -> None:
    inspect = _command(sub, "inspect", "one shopper's state: from a replay or a running worker")
    inspect.add_argument("user", help="the user_id")
    inspect.add_argument("--events", metavar="FILE", help="replay this events file ('-' stdin)")
    inspect.add_argument("--rules", help="with --events: rules file (YAML)")
    inspect.add_argument("--until", help="with --events: advance the clock to this time at the end")
    inspect.add_argument("--url", help="a worker's web address instead, e.g. http://host:6066")
    inspect.add_argument("--token", help="with --url: admin token (default: NUDGE_ADMIN_TOKEN)")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    inspect.add_argument("--jobs", type=positive_int, default=1, metavar="N", help=JOBS_HELP)

    def run(args: argparse.Namespace) -> int:
        from cli.inspect_command import inspect_command

        return inspect_command(
            args.user,
            events=args.events,
            rules=args.rules,
            until=args.until,
            as_json=args.json,
            url=args.url,
            token=args.token,
            jobs=args.jobs,
        )

    inspect.set_defaults(run=run)


def _add_rules(sub: Subparsers) -> None:
    rules = _command(sub, "rules", "rules file tools")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    check = _command(rules_sub, "check", "print the effective rules or the errors")
    check.add_argument("file", help="rules file (YAML)")

    def run(args: argparse.Namespace) -> int:
        from cli.rules import rules_check_command

        return rules_check_command(args.file)

    check.set_defaults(run=run)


def _add_simulate(sub: Subparsers) -> None:
    simulate = _command(sub, "simulate", "produce synthetic shop traffic to Kafka")
    simulate.add_argument(
        "--rate", type=positive_float, default=50.0, help="events per second (not with --realtime)"
    )
    simulate.add_argument("--users", type=positive_int, default=1000, help="number of shoppers")
    simulate.add_argument("--seed", type=int, default=1, help="random seed")
    simulate.add_argument("--limit", type=count, default=0, help="stop after N events (0 = never)")
    simulate.add_argument(
        "--file", help="produce this JSON Lines file instead of synthetic traffic"
    )
    simulate.add_argument(
        "--realtime",
        action="store_true",
        help="with --file: send each event when the clock reaches its ts (past ones at once)",
    )
    simulate.add_argument(
        "--new-triggers",
        action="store_true",
        help="also catalog changes (restocks, price changes, to NUDGE_TOPIC_CATALOG), "
        "wishlists and birthdays, for birthday, back_in_stock and price_drop",
    )

    simulate.add_argument(
        "--keys",
        choices=("user", "random", "null"),
        default="user",
        help="message keys of user events: by user_id (default), random, or none, as a "
        "shop's producers may have them (Nudge re-keys what is misplaced)",
    )

    provider = simulate.add_argument_group(
        "delivery provider (docs: README, 'Demo traffic')",
        "--provider answers the sent decisions of NUDGE_TOPIC_TRIGGERS with delivery feedback "
        "on NUDGE_TOPIC_ENGAGEMENT (delivered, opened, clicked, bounces, unsubscribes, "
        "complaints) instead of producing shop traffic; --seed and --limit (decisions) apply",
    )
    provider.add_argument("--provider", action="store_true", help="be the delivery provider")
    provider.add_argument(
        "--rates",
        metavar="[CHANNEL.]NAME=P,...",
        help="override feedback rates, e.g. opened=0.3,sms.clicked=0.12 (NAME: delivered, "
        "hard_bounce, soft_bounce, opened, clicked, unsubscribed, complained)",
    )
    provider.add_argument(
        "--delay-scale",
        type=positive_float,
        default=1.0,
        help="multiply the feedback delays (about 2 s to delivery, 20 s more to an open)",
    )

    def run(args: argparse.Namespace) -> int:
        from stream.simulate import simulate_command

        if args.provider:
            from stream.delivery_provider import provider_command

            if args.file or args.new_triggers or args.realtime:
                simulate.error("--provider: not with --file, --realtime or --new-triggers")
            return provider_command(
                rates=args.rates or "",
                seed=args.seed,
                delay_scale=args.delay_scale,
                limit=args.limit,
            )
        if args.new_triggers and args.file:
            simulate.error("--new-triggers shapes synthetic traffic: not with --file")
        return simulate_command(
            rate=args.rate,
            users=args.users,
            seed=args.seed,
            limit=args.limit,
            file=args.file,
            realtime=args.realtime,
            new_triggers=args.new_triggers,
            keys=args.keys,
        )

    simulate.set_defaults(run=run)


def _add_tail(sub: Subparsers) -> None:
    tail = _command(sub, "tail", "print a topic's records, e.g. marketing.triggers")
    tail.add_argument("topic", help="topic name")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    tail.add_argument("--limit", type=count, default=0, help="stop after N records (0 = never)")

    def run(args: argparse.Namespace) -> int:
        from stream.tail import tail_command

        return tail_command(args.topic, from_beginning=args.from_beginning, limit=args.limit)

    tail.set_defaults(run=run)


def _add_schema(sub: Subparsers) -> None:
    schema = _command(sub, "schema", "print the JSON Schemas (2020-12) of the wire records")
    schema.add_argument(
        "name",
        nargs="?",
        help="one schema, e.g. input-event, decision, conversion, dead-letter (default: all,"
        " as one JSON object by name)",
    )
    schema.add_argument("--out", metavar="DIR", help="write NAME.json files to DIR instead")

    def run(args: argparse.Namespace) -> int:
        from triggers.schemas import schema_command

        return schema_command(args.name, args.out)

    schema.set_defaults(run=run)


# One registration function per subcommand, in the order `nudge --help` lists them.
SUBCOMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _add_worker,
    _add_replay,
    _add_report,
    _add_inspect,
    _add_rules,
    _add_simulate,
    _add_tail,
    _add_schema,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nudge",
        description="Real-time marketing trigger engine for e-commerce.",
    )
    parser.add_argument("--version", action="version", version=f"nudge {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(sub)
    return parser


INTERRUPTED = 130  # 128 + SIGINT: the shell's status of a command stopped by Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status. Ctrl-C (SIGINT) is 130 for every command: one line
    on stderr (or the command's own stop) and no traceback."""
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(argv)
        status = int(args.run(args))
    except KeyboardInterrupt:
        print(f"{_name(args)}: interrupted (Ctrl-C)", file=sys.stderr)
        return INTERRUPTED
    return INTERRUPTED if status == 0 and _stopped_by_ctrl_c() else status


def _name(args: argparse.Namespace | None) -> str:
    """``nudge replay``, ``nudge rules check``: the command as typed, for a message."""
    words = [] if args is None else [args.command, getattr(args, "rules_command", None)]
    return " ".join(["nudge", *(word for word in words if word)])


def _stopped_by_ctrl_c() -> bool:
    """Whether a Kafka command (simulate, tail, report --from-kafka) stopped on SIGINT: they
    stop cleanly on a signal, and the status says which one."""
    client_start = sys.modules.get("stream.client_start")
    return client_start is not None and signal.SIGINT in client_start.received


if __name__ == "__main__":
    sys.exit(main())
