"""``nudge inspect USER``: the state as a person reads it, from a replay and from the admin
endpoint (off by default, bearer token, refuses without it)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import faust
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from msgspec.structs import replace

from cli.inspect import render_text
from cli.main import main
from stream.admin import ADMIN_PATH, admin_handler, admin_response, register_admin
from stream.settings import Settings, SettingsError
from triggers.held import hold
from triggers.rules import Rules
from triggers.state import UserState
from triggers.state_view import describe_state

from .timelines import Timeline, at, make_rules

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = [
    "--events",
    str(ROOT / "examples/shop.jsonl"),
    "--rules",
    str(ROOT / "examples/rules.yaml"),
]
TOKEN = "s3cret-admin-token-0123"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def shopper() -> tuple[Timeline, Rules]:
    """u1: two orders, a cart with a pending stage deferred by quiet hours, one contact."""
    rules = make_rules(
        only=("cart_abandonment", "browse_abandonment"),
        triggers={"cart_abandonment": {"stages": ["1h", "24h"], "variants": {"A": 1, "B": 1}}},
        contact_policy={"quiet_hours": {"start": "21:00", "end": "08:00"}},
    )
    tl = Timeline(rules)
    tl.order(at(days=-20), "o1", ["tea"], price=12.0)
    tl.order(at(days=-5), "o2", ["tea", "cup"], price=8.0)
    tl.send("preferences_updated", at(days=-5), marketing_opt_in=True, timezone="UTC")
    tl.view(at(hours=1), "kettle", price=40)
    tl.add(at(hours=18, minutes=30), "mug", 6.5, quantity=2, category="kitchen")  # 20:30 UTC
    tl.advance(at(hours=19))
    return tl, rules


def test_the_view_shows_what_a_person_asks_about() -> None:
    tl, rules = shopper()
    state = tl.state()
    view = describe_state(state, rules, at(hours=19))
    assert view["user_id"] == "u1" and view["as_of"] == "2026-11-23T21:00:00Z"
    assert (view["segment"], view["opted_out"]) == ("potential", False)
    assert view["preferences"]["marketing_opt_in"] is True
    assert view["orders"]["count"] == 2 and [o["order_id"] for o in view["orders"]["kept"]] == [
        "o1",
        "o2",
    ]
    assert view["cart"]["lines"] == [
        {"product_id": "mug", "quantity": 2, "unit_price": 6.5, "category": "kitchen"}
    ]
    assert view["cart"]["value"] == 13.0
    by_trigger = {item["trigger"]: item for item in view["pending"]}
    cart = by_trigger["cart_abandonment"]
    # due 21:30 UTC, inside quiet hours: it will be sent at 08:00
    assert (cart["stage"], cart["stages"], cart["due_at"], cart["send_at"]) == (
        1,
        2,
        "2026-11-23T21:30:00Z",
        "2026-11-24T08:00:00Z",
    )
    assert (
        view["contacts"]["in_frequency_window"] == 1
    )  # the browse reminder, due 05:00, sent at 08:00
    assert view["converts"]["trigger"] == "browse_abandonment" and view["converts"]["open"]
    assert view["variants"]["cart_abandonment"] in ("A", "B")
    assert view["held"] == []
    text = render_text(view)
    for expected in (
        "segment        potential (2 orders, 28.0 total)",
        "marketing      opted in",
        "cart: 1 line, value 13.0",
        "mug  x2  6.5  kitchen",
        "cart_abandonment stage 1 of 2: due 2026-11-23T21:30:00Z (in 30m), deferred by quiet"
        " hours to 2026-11-24T08:00:00Z",
        "contacts: 1 in the last 1d (frequency cap 2)",
        "an order by 2026-11-26T08:00:00Z (in 2d11h) converts browse_abandonment (treatment",
        "A/B variants   cart_abandonment: ",
    ):
        assert expected in text


def test_opt_out_held_decisions_and_dormancy_show() -> None:
    rules = make_rules(
        only=("cart_abandonment", "dormancy"), triggers={"dormancy": {"audience": "all"}}
    )
    tl = Timeline(rules)
    tl.add(at(), "p1")
    before = tl.state().contacts
    tl.advance(at(hours=1))
    (decision,) = tl.decisions("cart_abandonment")
    held_state, _ = hold(before, tl.state(), (decision,))
    prefs = replace(held_state.prefs or _prefs(), opt_in=False)
    state = replace(held_state, prefs=prefs)
    view = describe_state(state, tl.rules, at(hours=2))
    assert view["opted_out"] is True
    assert [(h["trigger"], h["status"], h["reached_at"]) for h in view["held"]] == [
        ("cart_abandonment", "sent", "2026-11-23T03:00:00Z")
    ]
    assert [p["trigger"] for p in view["pending"]] == ["cart_abandonment", "dormancy"]
    text = render_text(view)
    assert "marketing      OPTED OUT" in text
    assert "cart_abandonment stage 1 sent, reached 2026-11-23T03:00:00Z (1h ago)" in text
    assert "dormancy stage 1 of 3: due 2026-12-23T02:00:00Z (in 29d)" in text


def _prefs():
    from triggers.state import Preferences

    return Preferences()


# --- the command, from a replay ------------------------------------------------------------


def test_inspect_from_a_replay_of_the_worked_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "ben", *EXAMPLE, "--until", "2026-12-31T00:00:00Z"]) == 0
    text = capsys.readouterr().out
    assert "user ben, as of 2026-12-31T00:00:00Z" in text
    assert "segment        dormant (1 order, 14.5 total)" in text
    assert "dormancy stage 2 of 3: due 2027-01-22T09:30:00Z (in 22d)" in text
    assert "2026-12-23T09:30:00Z  decision    dormancy stage 1 sent" in text

    assert main(["inspect", "ana", *EXAMPLE, "--json"]) == 0
    view = orjson.loads(capsys.readouterr().out)
    assert view["as_of"] == "2026-11-23T09:30:00Z"  # the last event's time
    assert [p["due_at"] for p in view["pending"]] == ["2026-11-23T10:05:00Z"]
    assert view["recent_records"] == []


def test_inspect_refuses_an_unknown_user_and_bad_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["inspect", "zed", *EXAMPLE]) == 1
    assert "no event of user 'zed'" in capsys.readouterr().err
    assert main(["inspect", "ana"]) == 2
    assert main(["inspect", "ana", *EXAMPLE, "--url", "http://127.0.0.1:1"]) == 2
    assert (
        main(
            ["inspect", "ana", "--url", "http://127.0.0.1:1"],
        )
        == 2
    )  # no token
    assert "admin token" in capsys.readouterr().err


# --- the admin endpoint ----------------------------------------------------------------------


def lookup_of(states: dict[str, UserState], asked: list[str]):
    def lookup(user_id: str) -> UserState | None:
        asked.append(user_id)
        return states.get(user_id)

    return lookup


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer wrong-token-0123456789", f"Basic {TOKEN}", f"Bearer {TOKEN}x"],
)
def test_the_endpoint_refuses_without_the_token_and_looks_nothing_up(header: str | None) -> None:
    asked: list[str] = []
    answer = admin_response(
        TOKEN, header, "u1", lookup_of({"u1": UserState("u1")}, asked), Rules(), NOW
    )
    assert answer.status == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert answer.body == {"error": "missing or wrong bearer token"} and asked == []


def test_the_endpoint_answers_with_the_token() -> None:
    tl, rules = shopper()
    asked: list[str] = []
    lookup = lookup_of({"u1": tl.state()}, asked)
    answer = admin_response(TOKEN, f"bearer {TOKEN}", "u1", lookup, rules, NOW)
    assert answer.status == 200 and answer.body == describe_state(tl.state(), rules, NOW)
    assert answer.headers == {"Cache-Control": "no-store"}
    missing = admin_response(TOKEN, f"Bearer {TOKEN}", "nobody", lookup, rules, NOW)
    assert missing.status == 404 and "nobody" in missing.body["error"]
    assert asked == ["u1", "nobody"]


def test_the_endpoint_is_off_without_a_token_setting() -> None:
    app = faust.App("nudge-admin-off", web_tables_enabled=False, web_router_enabled=False)
    assert register_admin(app, Settings(), lambda _: None, Rules()) is False
    assert list(app.web.web_app.router.routes()) == []
    assert Settings(admin_token="").admin_token is None
    with pytest.raises(ValueError, match="at least 16 characters"):
        Settings(admin_token="short")


async def test_the_faust_page_refuses_without_the_token_and_serves_with_it() -> None:
    tl, rules = shopper()
    states = {"u1": tl.state(), "a/b c": UserState("a/b c")}
    app = faust.App("nudge-admin-on", web_tables_enabled=False, web_router_enabled=False)
    assert register_admin(app, Settings(admin_token=TOKEN), lookup_of(states, []), rules)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with TestClient(TestServer(app.web.web_app)) as client:
        refused = await client.get("/admin/users/u1")
        assert refused.status == 401 and "segment" not in await refused.text()
        wrong = await client.get("/admin/users/u1", headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401
        ok = await client.get("/admin/users/u1", headers=auth)
        assert ok.status == 200 and ok.content_type == "application/json"
        body = await ok.json()
        assert body["segment"] == "potential" and body["user_id"] == "u1"
        odd = await client.get("/admin/users/a%2Fb%20c", headers=auth)
        assert odd.status == 200 and (await odd.json())["user_id"] == "a/b c"
        assert (await client.get("/admin/users/zz", headers=auth)).status == 404


async def test_inspect_url_reads_the_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    tl, rules = shopper()
    clock = lambda: at(hours=19)  # noqa: E731
    handle = admin_handler(TOKEN, lookup_of({"u1": tl.state()}, []), rules, clock)
    app = web.Application()
    app.router.add_get(ADMIN_PATH, handle)
    async with TestServer(app) as server:
        url = str(server.make_url(""))
        loop = asyncio.get_running_loop()

        async def run(*argv: str) -> int:
            return await loop.run_in_executor(None, main, ["inspect", *argv])

        assert await run("u1", "--url", url, "--token", TOKEN) == 0
        out = capsys.readouterr().out
        assert out == render_text(describe_state(tl.state(), rules, at(hours=19)))
        assert await run("u1", "--url", url, "--token", "wrong-token-0123456789") == 1
        assert "refused by" in capsys.readouterr().err
        assert await run("nobody", "--url", url, "--token", TOKEN, "--json") == 1
        assert "no state for user 'nobody'" in capsys.readouterr().err


def test_settings_errors_name_the_variable_without_the_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stream.settings import load_settings

    monkeypatch.setenv("NUDGE_ADMIN_TOKEN", "tiny-secret")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "NUDGE_ADMIN_TOKEN" in str(caught.value) and "tiny-secret" not in str(caught.value)


T0 = "2026-11-23T10:00:00Z"


def test_inspect_of_an_erased_user_says_so_and_shows_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.jsonl"
    added = {"product_id": "p1", "quantity": 1, "unit_price": 5.0}
    lines = [
        {"event_id": "e1", "type": "cart_item_added", "user_id": "eve", "ts": T0, **added},
        {"event_id": "e2", "type": "user_erased", "user_id": "eve", "ts": "2026-11-23T10:10:00Z"},
    ]
    events.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    assert main(["inspect", "eve", "--events", str(events)]) == 0
    text = capsys.readouterr().out
    assert "ERASED at 2026-11-23T10:10:00Z" in text and "cart" not in text
    assert "2026-12-23T10:10:00Z" in text  # the memory's end: erasure_memory 30d
    assert main(["inspect", "eve", "--events", str(events), "--json"]) == 0
    view = orjson.loads(capsys.readouterr().out)
    assert view["erased_at"] == "2026-11-23T10:10:00Z" and "cart" not in view
