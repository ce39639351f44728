"""``nudge inspect USER``: from a replay (``--events FILE``) or a running worker (``--url``).

From a replay, the events file is replayed whole (every user: the clock, and so
the fate of each of this user's stages, depends on the other users' events too)
and the user's state at the end is shown, with their last output records. From a
worker, ``GET URL/admin/users/USER`` with ``Authorization: Bearer TOKEN`` (the
token from ``--token`` or ``NUDGE_ADMIN_TOKEN``; see :mod:`stream.admin`).

Exit status: 0 shown; 1 unknown user, invalid rules, or refused by the worker; 2 an
unreadable input, a bad option or a worker that cannot be reached.
"""

from __future__ import annotations

import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from cli.event_input import EventInput, NotEventText, open_events
from cli.inspect import RECENT_RECORDS, describe_records, describe_state, render_text
from cli.replay_jobs import JobFailed, JobReplay, owner, run_parallel, spool
from triggers.events import InvalidEvent
from triggers.replay import Record, Replay, without_cycle_collector
from triggers.rules import Rules, RulesError, load_rules
from triggers.state import UserState
from triggers.timestamps import TimestampError, parse_timestamp

TIMEOUT_SECONDS = 10.0


def inspect_command(
    user: str,
    *,
    events: str | None,
    rules: str | None,
    until: str | None,
    as_json: bool,
    url: str | None,
    token: str | None,
    jobs: int = 1,
) -> int:
    if (events is None) == (url is None):
        print("nudge inspect: give either --events FILE or --url URL", file=sys.stderr)
        return 2
    if url is not None:
        if rules is not None or until is not None:
            print("nudge inspect: --rules and --until go with --events", file=sys.stderr)
            return 2
        status, view = _from_worker(url, user, token or os.environ.get("NUDGE_ADMIN_TOKEN"))
    else:
        assert events is not None
        status, view = _from_replay(events, user, rules, until, jobs)
    if view is None:
        return status
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(view, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        sys.stdout.write(render_text(view))
    return 0


def _from_replay(
    events: str, user: str, rules_path: str | None, until: str | None, jobs: int = 1
) -> tuple[int, dict[str, Any] | None]:
    try:
        rules = load_rules(rules_path)
    except RulesError as exc:
        for line in str(exc).splitlines():
            print(f"nudge inspect: rules: {line}", file=sys.stderr)
        return 1, None
    end: datetime | None = None
    if until is not None:
        try:
            end = parse_timestamp(int(until) if until.strip().lstrip("-").isdigit() else until)
        except TimestampError as exc:
            print(f"nudge inspect: --until: {exc.detail}", file=sys.stderr)
            return 2, None
    try:
        source = open_events(events, sys.stdin.buffer)
    except OSError as exc:
        print(f"nudge inspect: cannot read {events}: {exc.strerror or exc}", file=sys.stderr)
        return 2, None
    except NotEventText as exc:
        print(f"nudge inspect: {exc}", file=sys.stderr)
        return 2, None
    try:
        if jobs > 1:
            seen = _replay_in_jobs(events, source, user, rules, end, jobs)
        else:
            seen = _replay_one(source, user, rules, end, Replay(rules, keep_going=True))
    except (EOFError, OSError) as exc:
        print(f"nudge inspect: {events}: reading stopped: {exc}", file=sys.stderr)
        return 2, None
    except JobFailed as exc:
        print(f"nudge inspect: {exc}", file=sys.stderr)
        return 1, None
    finally:
        if source.raw is not sys.stdin.buffer:
            source.close()
    if seen.state is None or seen.clock is None:
        print(
            f"nudge inspect: no event of user {user!r} in {events} "
            f"({seen.lines} lines, {seen.users} users)",
            file=sys.stderr,
        )
        return 1, None
    view = describe_state(seen.state, rules, seen.clock)
    view["recent_records"] = describe_records(seen.records)
    return 0, view


@dataclass(slots=True)
class _Seen:
    """What a replay (or one job of it) tells of the user."""

    state: UserState | None
    clock: datetime | None
    records: list[Record]  # the user's last RECENT_RECORDS records
    lines: int
    users: int
    problem: str | None = None  # a job's reading stopped early: why


def _replay_one(
    source: EventInput, user: str, rules: Rules, end: datetime | None, replay: Replay
) -> _Seen:
    mine: deque[Record] = deque(maxlen=RECENT_RECORDS)

    def keep(records: list[Record]) -> None:
        mine.extend(record for record in records if record.user_id == user)

    with without_cycle_collector():
        for raw in source.lines:
            if not raw.strip():
                continue
            try:
                keep(replay.feed_line(raw))
            except InvalidEvent:
                continue  # counted in the summary; `nudge replay` lists them
        keep(replay.finish(end))
    summary = replay.summary
    state = replay.states.get(user)
    return _Seen(state, replay.clock, list(mine), summary.events_read, summary.users)


def _replay_in_jobs(
    events: str, source: EventInput, user: str, rules: Rules, end: datetime | None, jobs: int
) -> _Seen:
    """The users split across ``jobs`` processes (:mod:`cli.replay_jobs`): the user's
    job gives the state and records, every job its count of users."""
    with tempfile.TemporaryDirectory(prefix="nudge-inspect-") as temporary:
        path, problem = spool(source.lines, Path(temporary)) if events == "-" else (events, None)
        if problem is not None:
            raise OSError(problem)

        def job(k: int) -> _Seen:
            lines = open_events(path, sys.stdin.buffer)
            try:
                seen = _replay_one(lines, user, rules, end, JobReplay(rules, job=k, jobs=jobs))
            except (EOFError, OSError) as exc:
                return _Seen(None, None, [], 0, 0, str(exc) or type(exc).__name__)
            finally:
                lines.close()
            return seen if k == owner(user, jobs) else _Seen(None, None, [], seen.lines, seen.users)

        parts = run_parallel(jobs, job)
    if parts[0].problem is not None:
        raise OSError(parts[0].problem)
    mine = parts[owner(user, jobs)]
    mine.lines = parts[0].lines
    mine.users = sum(part.users for part in parts)
    return mine


def _from_worker(url: str, user: str, token: str | None) -> tuple[int, dict[str, Any] | None]:
    if not token:
        print(
            "nudge inspect: --url needs the admin token (--token or NUDGE_ADMIN_TOKEN)",
            file=sys.stderr,
        )
        return 2, None
    address = f"{url.rstrip('/')}/admin/users/{urllib.parse.quote(user, safe='')}"
    request = urllib.request.Request(address, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return 0, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = _error_detail(exc)
        if exc.code == 401:
            print(f"nudge inspect: refused by {url}: {detail}", file=sys.stderr)
        elif exc.code == 404:
            print(f"nudge inspect: {detail}", file=sys.stderr)
        else:
            print(f"nudge inspect: {url} answered {exc.code}: {detail}", file=sys.stderr)
        return 1, None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"nudge inspect: cannot reach {url}: {reason}", file=sys.stderr)
        return 2, None


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        body = orjson.loads(exc.read())
    except (orjson.JSONDecodeError, OSError):
        return exc.reason or "no detail"
    return str(body.get("error", body)) if isinstance(body, dict) else str(body)
