"""``nudge rules check FILE``: print the effective rules, or the errors."""

from __future__ import annotations

import sys

from triggers.rules import RulesError, dump_rules, load_rules
from triggers.rules_source import EXAMPLE_FILE


def rules_check_command(path: str) -> int:
    """Print the effective rules (exit 0) or the errors, one a line (exit 1)."""
    try:
        rules = load_rules(path)
    except RulesError as exc:
        print(str(exc), file=sys.stderr)
        print(
            f"{path}: {len(exc.errors)} error(s); rules refused (every key, commented:"
            f" {EXAMPLE_FILE})",
            file=sys.stderr,
        )
        return 1
    sys.stdout.write(dump_rules(rules))
    return 0
