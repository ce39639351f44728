"""``--jobs N``: the users split across N processes give the one-process output, byte for byte.

The property runs the jobs of :mod:`cli.replay_parallel` one after the other in this
process (the same code the processes run) on generated timelines: out of order, with
catalog changes, duplicates, test events, erasures, retention and invalid lines. The
command tests fork real processes.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import main
from cli.replay_jobs import merge_summaries, owner
from cli.replay_parallel import _job, _merge_records
from tests.unit.seeded_shops import START, seeded_shop
from tests.unit.timelines import iso, make_rules
from triggers.records import record_to_json
from triggers.replay import replay_lines
from triggers.rules import Rules

NUDGE = str(Path(sys.executable).with_name("nudge"))
USERS = tuple(f"u{n}" for n in range(7))
PRODUCTS = ("p1", "p2")
KINDS = (
    *("product_viewed", "cart_item_added", "order_placed", "checkout_started"),
    *("wishlist_added", "user_erased", "message_bounced", "catalog", "catalog"),
    *("duplicate", "test", "invalid", "blank"),
    *("invalid_later", "escaped", "spaced"),  # lines a job must read in full
)
RULES = make_rules(
    default_timezone="Asia/Shanghai",
    contact_policy={"quiet_hours": {"start": "21:00", "end": "08:00"}, "max_delay": "2h"},
    triggers={
        "cart_abandonment": {"stages": ["1h", "3h"], "cooldown": 0},
        "browse_abandonment": {"stages": ["30m"]},
        "dormancy": {"audience": "all", "stages": ["1d"]},
        "back_in_stock": {"enabled": True, "stages": ["0s", "2h"]},
        "price_drop": {"enabled": True},
    },
    retention="3d",
    erasure_memory="1d",
)


def _user_event(kind: str, user: str, minute: int, n: int, product: str) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": f"e{n}",
        "user_id": user,
        "ts": iso(START + timedelta(minutes=minute)),
        "type": kind,
    }
    if kind in ("product_viewed", "wishlist_added"):
        event |= {"product_id": product, "price": 10.0}
    elif kind == "cart_item_added":
        event |= {"product_id": product, "unit_price": 12.0}
    elif kind == "order_placed":
        event |= {"order_id": f"o{n}", "items": [{"product_id": product, "unit_price": 9.0}]}
    elif kind == "message_bounced":
        event |= {"trigger_id": "t", "channel": "email", "bounce": "hard"}
    return event


@st.composite
def timelines(draw: st.DrawFn) -> list[bytes]:
    """Up to 40 lines, each some minutes after a running time that sometimes steps back."""
    lines: list[bytes] = []
    minute = 0
    for n in range(draw(st.integers(1, 40))):
        minute = max(0, minute + draw(st.sampled_from((-600, -30, 0, 1, 10, 59, 61, 200, 1500))))
        what = draw(st.sampled_from(KINDS))
        user, product = draw(st.sampled_from(USERS)), draw(st.sampled_from(PRODUCTS))
        if what == "catalog":
            event: dict[str, Any] = {
                "event_id": f"c{n}",
                "type": "product_updated",
                "product_id": product,
                "ts": iso(START + timedelta(minutes=minute)),
                "in_stock": draw(st.booleans()),
                "price": draw(st.sampled_from((5.0, 8.0, 10.0, 20.0))),
            }
        elif what == "duplicate" and lines:
            lines.append(draw(st.sampled_from(lines)))
            continue
        elif what == "invalid":
            lines.append(draw(st.sampled_from((b"not json", b'{"type": "search", "ts": 1}'))))
            continue
        elif what == "blank":
            lines.append(b"")
            continue
        elif what == "invalid_later":  # plain, but no product: must not move any clock
            later = iso(START + timedelta(minutes=minute + 5000))
            line = {"event_id": f"x{n}", "type": "product_viewed", "user_id": user, "ts": later}
            lines.append(orjson.dumps(line))
            continue
        elif what in ("escaped", "spaced"):  # "u\u0031" is u1; ", " and ": " separators
            event = _user_event("cart_item_added", user, minute, n, product)
            text = json.dumps(event, separators=(", ", ": ") if what == "spaced" else (",", ":"))
            if what == "escaped":
                text = text.replace(f'"{user}"', '"u\\u00' + f"{ord(user[1]):x}" + '"')
            lines.append(text.encode())
            continue
        else:
            kind = "product_viewed" if what in ("duplicate", "test") else what
            event = _user_event(kind, user, minute, n, product)
            event["test"] = what == "test"
        lines.append(orjson.dumps(event))
    return lines


def _one_process(lines: list[bytes], rules: Rules) -> tuple[bytes, list[str]]:
    result = replay_lines(lines, rules)
    return b"".join(record_to_json(r) + b"\n" for r in result.records), result.summary.lines()


def _in_jobs(lines: list[bytes], rules: Rules, jobs: int) -> tuple[bytes, list[str]]:
    """The jobs one after the other in this process, then the merge the parent does."""
    with tempfile.TemporaryDirectory() as temporary:
        workdir = Path(temporary)
        path = workdir / "events.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        outcomes = [
            _job(k, jobs=jobs, path=str(path), rules=rules, until=None, workdir=workdir,
                 progress_every=None)
            for k in range(jobs)
        ]  # fmt: skip
        out = workdir / "out.jsonl"
        with out.open("wb") as sink:
            _merge_records(workdir, jobs, sink)
        return out.read_bytes(), merge_summaries([o.summary for o in outcomes]).lines()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timelines())
def test_every_number_of_jobs_gives_the_one_process_output(lines: list[bytes]) -> None:
    expected = _one_process(lines, RULES)
    for jobs in (2, 3, 4):
        assert _in_jobs(lines, RULES, jobs) == expected


def test_the_jobs_share_the_users_by_the_live_partitioner() -> None:
    from stream.catalog_wire import partition_of

    assert [owner(u, 4) for u in USERS] == [partition_of(u.encode(), 4) for u in USERS]
    assert len({owner(f"u{n}", 2) for n in range(20)}) == 2  # both jobs get users


def _write(tmp_path: Path, lines: list[bytes], name: str = "events.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(argv)
    return status, capsys.readouterr().err


def test_the_command_writes_the_same_bytes_and_messages_for_any_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = seeded_shop(3, users=40)
    lines[5:5] = [b"not json", b'{"type": "search"}']
    events = _write(tmp_path, lines)
    outputs, errors = [], []
    for jobs in (1, 2, 3):
        out = tmp_path / f"out-{jobs}.jsonl"
        summary = tmp_path / f"summary-{jobs}.json"
        argv = ["replay", str(events), "--out", str(out), "--quiet", "--jobs", str(jobs)]
        status, err = _run([*argv, "--summary-json", str(summary)], capsys)
        assert status == 0
        outputs.append(out.read_bytes())
        errors.append(err)
        document = orjson.loads(summary.read_bytes())
        assert document["events_read"] == len(lines) and document["invalid"] == 2
        assert len(document.get("job_cpu_seconds", [])) == (jobs if jobs > 1 else 0)
    assert outputs[0].count(b"\n") > 50
    assert outputs[1] == outputs[0] and outputs[2] == outputs[0]
    assert errors[0].startswith("line 6: ") and errors[1] == errors[0] == errors[2]


def test_stdin_and_a_truncated_gzip_in_jobs(tmp_path: Path) -> None:
    data = gzip.compress(b"\n".join(seeded_shop(5, users=2000)) + b"\n")
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    runs = [
        subprocess.run(
            [NUDGE, "replay", "-", "--quiet", "--jobs", str(jobs)],
            input=cut.read_bytes(),
            capture_output=True,
            check=False,
        )
        for jobs in (1, 2)
    ]
    assert runs[0].returncode == runs[1].returncode == 2
    assert runs[1].stdout == runs[0].stdout and runs[0].stdout
    assert runs[1].stderr == runs[0].stderr
    assert b"reading stopped after line" in runs[0].stderr and b"Traceback" not in runs[1].stderr


def test_a_failing_job_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import cli.replay_parallel

    def broken(job: int, **_: object) -> None:
        raise RuntimeError(f"disk gone in job {job}")

    monkeypatch.setattr(cli.replay_parallel, "_job", broken)
    events = _write(tmp_path, seeded_shop(1, users=5))
    status, err = _run(["replay", str(events), "--quiet", "--jobs", "2"], capsys)
    assert status == 1
    assert err == "nudge replay: job 0 failed: RuntimeError: disk gone in job 0\n"


def test_ctrl_c_stops_every_job_with_130(tmp_path: Path) -> None:
    events = _write(tmp_path, seeded_shop(7, users=3000) * 3)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen(
        [NUDGE, "replay", str(events), "--quiet", "--out", os.devnull, "--jobs", "2"],
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: SIGINT to all, as a terminal does
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    time.sleep(1.5)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err.decode() == "nudge replay: interrupted (Ctrl-C)\n"
    assert list(scratch.iterdir()) == []  # the jobs' files are gone
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # no job left running


def test_compare_and_inspect_take_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = _write(tmp_path, seeded_shop(11, users=40))
    rules_b = tmp_path / "b.yaml"
    rules_b.write_text("contact_policy: {frequency_cap: {max: 1, per: 24h}}\n")
    texts, diffs, views = [], [], []
    for jobs in ("1", "2"):
        diff = tmp_path / f"diff-{jobs}.jsonl"
        argv = ["replay", str(events), "--compare", str(rules_b), "--diff", str(diff)]
        assert main([*argv, "--jobs", jobs]) == 0
        texts.append(capsys.readouterr().out)
        diffs.append(diff.read_bytes())
        assert main(["inspect", "u7", "--events", str(events), "--json", "--jobs", jobs]) == 0
        views.append(capsys.readouterr().out)
    assert texts[1] == texts[0] and "re-judged" in texts[0]
    assert diffs[1] == diffs[0] and diffs[0]
    assert views[1] == views[0] and '"recent_records"' in views[0]
    assert main(["inspect", "nobody", "--events", str(events), "--jobs", "3"]) == 1
    assert "(" in capsys.readouterr().err
