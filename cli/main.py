"""The ``nudge`` command line: worker, replay, rules check, simulate, tail.

Each subcommand is registered by one ``_add_*`` function, which declares its
arguments and sets ``run`` to a function of the parsed arguments returning the
exit status. Heavy imports (Faust, Kafka clients) happen inside ``run``, so
``nudge replay`` and ``nudge rules check`` start fast and never touch Kafka or
Redis.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Subparsers = argparse._SubParsersAction  # the type argparse gives add_subparsers()


def _add_worker(sub: Subparsers) -> None:
    worker = sub.add_parser("worker", help="run the live service (Faust worker on Kafka + Redis)")
    worker.add_argument("--rules", help="rules file (YAML); default: NUDGE_RULES_PATH or built-in")

    def run(args: argparse.Namespace) -> int:
        from stream.worker import worker_command

        return worker_command(rules=args.rules)

    worker.set_defaults(run=run)


def _add_replay(sub: Subparsers) -> None:
    replay = sub.add_parser("replay", help="run the engine on a JSON Lines event file")
    replay.add_argument("events", help="events file (JSON Lines), '-' for stdin")
    replay.add_argument("--rules", help="rules file (YAML)")
    replay.add_argument("--until", help="advance the clock to this time at the end (RFC 3339)")
    replay.add_argument("--out", default="-", help="output file, '-' for stdout (default)")

    def run(args: argparse.Namespace) -> int:
        from cli.replay import replay_command

        return replay_command(args.events, rules=args.rules, until=args.until, out=args.out)

    replay.set_defaults(run=run)


def _add_rules(sub: Subparsers) -> None:
    rules = sub.add_parser("rules", help="rules file tools")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    check = rules_sub.add_parser("check", help="print the effective rules or the errors")
    check.add_argument("file", help="rules file (YAML)")

    def run(args: argparse.Namespace) -> int:
        from cli.rules import rules_check_command

        return rules_check_command(args.file)

    check.set_defaults(run=run)


def _add_simulate(sub: Subparsers) -> None:
    simulate = sub.add_parser("simulate", help="produce synthetic shop traffic to Kafka")
    simulate.add_argument("--rate", type=float, default=50.0, help="events per second")
    simulate.add_argument("--users", type=int, default=1000, help="number of shoppers")
    simulate.add_argument("--seed", type=int, default=1, help="random seed")
    simulate.add_argument("--limit", type=int, default=0, help="stop after N events (0 = never)")
    simulate.add_argument(
        "--file", help="produce this JSON Lines file instead of synthetic traffic"
    )
    simulate.add_argument(
        "--realtime",
        action="store_true",
        help="with --file: send each event when the clock reaches its ts (past ones at once)",
    )

    def run(args: argparse.Namespace) -> int:
        from stream.simulate import simulate_command

        return simulate_command(
            rate=args.rate,
            users=args.users,
            seed=args.seed,
            limit=args.limit,
            file=args.file,
            realtime=args.realtime,
        )

    simulate.set_defaults(run=run)


def _add_tail(sub: Subparsers) -> None:
    tail = sub.add_parser("tail", help="print a topic's records, e.g. marketing.triggers")
    tail.add_argument("topic", help="topic name")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    tail.add_argument("--limit", type=int, default=0, help="stop after N records (0 = never)")

    def run(args: argparse.Namespace) -> int:
        from stream.tail import tail_command

        return tail_command(args.topic, from_beginning=args.from_beginning, limit=args.limit)

    tail.set_defaults(run=run)


# One registration function per subcommand, in the order `nudge --help` lists them.
SUBCOMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _add_worker,
    _add_replay,
    _add_rules,
    _add_simulate,
    _add_tail,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nudge",
        description="Real-time marketing trigger engine for e-commerce.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
