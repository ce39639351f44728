"""State encoding: exact round trip, compact for typical users, bounded for heavy ones.

Also: the stored layout is pinned (format 2 and format 1 samples checked in below), the
trigger-code table is append-only and independent of ``TRIGGER_NAMES``, held decisions
round-trip with their context, and a cart keeps at most ``MAX_CART_LINES`` lines.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulation.synthetic import event_lines, generate_events
from tests.unit.timelines import Timeline, at, make_rules
from triggers.replay import replay_lines
from triggers.rules import Rules
from triggers.state import (
    MAX_CART_LINES,
    STATE_FORMAT,
    TRIGGER_CODES,
    Attributable,
    Cart,
    CartLine,
    ContactLog,
    Order,
    OrderHistory,
    Pending,
    Preferences,
    ProductPurchases,
    UserState,
    View,
    decode_state,
    encode_state,
    event_digest,
)

pytestmark = pytest.mark.unit


def typical_user() -> UserState:
    """About ten events: browsing, a cart, an order, preferences."""
    rules = make_rules(
        default_timezone="Asia/Shanghai",
        contact_policy={"quiet_hours": {"start": "21:00", "end": "08:00"}},
    )
    tl = Timeline(rules)
    tl.send("preferences_updated", at(), timezone="Europe/Berlin", marketing_opt_in=True)
    tl.view(at(minutes=1), "sku-10293", category="coffee", price=12.9)
    tl.view(at(minutes=3), "sku-20931", category="coffee", price=14.5)
    tl.send("search", at(minutes=4), query="espresso beans")
    tl.add(at(minutes=5), "sku-20931", 14.5, category="coffee")
    tl.add(at(minutes=6), "sku-55555", 3.2, quantity=2, category="filters")
    tl.advance(at(hours=2))
    tl.send("checkout_started", at(hours=3))
    tl.order(at(hours=3, minutes=5), "ord-881923", ["sku-20931", "sku-55555"], price=14.5)
    tl.view(at(days=2), "sku-10293", category="coffee", price=12.9)
    tl.advance(at(days=2, hours=1))
    return tl.state()


def test_a_typical_state_round_trips_and_is_small() -> None:
    state = typical_user()
    data = encode_state(state)
    assert decode_state(data) == state
    assert encode_state(decode_state(data)) == data
    assert len(data) < 700, len(data)
    assert state.pending and state.history.orders and state.prefs and state.viewed


def test_a_new_user_state_round_trips() -> None:
    state = UserState("u1")
    assert decode_state(encode_state(state)) == state
    assert len(encode_state(state)) < 60


def test_deferred_stages_round_trip() -> None:
    rules = make_rules(
        default_timezone="Asia/Shanghai",
        contact_policy={"quiet_hours": {"start": "21:00", "end": "08:00"}},
        triggers={"dormancy": {"audience": "all", "stages": ["2h"]}},
    )
    tl = Timeline(rules)
    tl.add(at(hours=11), "p1")  # 21:00 local: cart (22:00) and dormancy (23:00) are deferred
    tl.advance(at(hours=13))
    state = tl.state()
    assert state.dormancy_send_at is not None
    assert any(p.send_at != p.due for p in state.pending)
    assert decode_state(encode_state(state)) == state


def test_synthetic_users_round_trip_and_stay_compact() -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    lines = list(event_lines(generate_events(users=300, seed=7, start=start, days=20)))
    result = replay_lines(lines, Rules())
    sizes = []
    for state in result.states.values():
        data = encode_state(state)
        assert decode_state(data) == state
        sizes.append(len(data))
    assert sum(sizes) / len(sizes) < 1024


def test_a_heavy_user_state_is_bounded() -> None:
    tl = Timeline(make_rules())
    for n in range(400):
        tl.view(at(minutes=10 * n), f"product-{n % 60}", category=f"cat-{n % 7}", price=9.99)
        if n % 5 == 0:
            tl.add(at(minutes=10 * n + 1), f"product-{n % 60}", 9.99)
        if n % 10 == 0:
            tl.order(at(minutes=10 * n + 2), f"order-{n}", [f"product-{n % 60}", "staple"])
    data = encode_state(tl.state())
    assert decode_state(data) == tl.state()
    assert len(tl.state().seen) == 256 * 8
    assert len(data) < 12 * 1024, len(data)


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b'[2, "u"]', b'[1, "u"]', b"{}", b"[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]"],
)
def test_corrupt_state_raises_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_state(data)


# --- the stored layout, pinned --------------------------------------------------------------

T0 = datetime(2026, 11, 2, 9, 30, 15, 250000, tzinfo=UTC)


def _t(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def sample_state() -> UserState:
    """Every part of a state set, amounts both int and float, one stage deferred."""
    return UserState(
        "u-42",
        b"".join(event_digest(f"e{n}") for n in range(3)),
        _t(300),
        Preferences(True, _t(0), "Europe/Berlin", _t(0)),
        Cart(
            (CartLine("sku-1", 2, 14.5, "coffee"), CartLine("sku-2", 1, None, None)),
            _t(200),
            True,
            (("sku-9", _t(100)), ("sku-1", _t(190)), ("sku-2", _t(200))),
            _t(120),
        ),
        OrderHistory(
            (
                Order("ord-1", _t(110), 120, ("sku-9",)),
                Order("ord-2", _t(120), 25.29, ("sku-3", "sku-9")),
            ),
            3,
            170.29,
            (
                ProductPurchases("sku-9", "tea", (_t(110), _t(120))),
                ProductPurchases("sku-3", None, (_t(120),)),
            ),
            ("ord-0",),
        ),
        View("sku-7", "coffee", 9, _t(250)),
        (
            Pending("cart_abandonment", 1, "e2", _t(200), _t(260), _t(900)),
            Pending("replenishment", 2, "e1\x1fsku-9", _t(120), _t(5000), _t(5000), "sku-9"),
        ),
        ContactLog(
            (_t(30), _t(60)),
            (("browse_abandonment", _t(30)), ("first_purchase_followup", _t(60))),
            Attributable(
                "0123456789abcdef0123456789abcdef", "first_purchase_followup", "holdout", _t(60)
            ),
        ),
        "e2",
        1,
        _t(1000),
    )


# sample_state() as the format-1 encoder (orjson, before msgspec) wrote it
FORMAT_1_SAMPLE = (
    b'[1,"u-42","EbXh1TroKxQbXV5R9U8PBP7RNQgvDv94",1793629815250,[true,1793611815250,'
    b'"Europe/Berlin",1793611815250],[[["sku-1",2,14.5,"coffee"],["sku-2",1,null,null]],'
    b'1793623815250,true,[["sku-9",1793617815250],["sku-1",1793623215250],["sku-2",'
    b'1793623815250]],1793619015250],[[["ord-1",1793618415250,120,["sku-9"]],["ord-2",'
    b'1793619015250,25.29,["sku-3","sku-9"]]],3,170.29,[["sku-9","tea",[1793618415250,'
    b'1793619015250]],["sku-3",null,[1793619015250]]],["ord-0"]],["sku-7","coffee",9,'
    b'1793626815250],[[0,1,"e2",1793623815250,1793627415250,1793665815250,null],[2,2,'
    b'"e1\\u001fsku-9",1793619015250,1793911815250,null,"sku-9"]],[[1793613615250,'
    b'1793615415250],[[1,1793613615250],[3,1793615415250]],["0123456789abcdef0123456789abcdef"'
    b',3,"holdout",1793615415250]],["e2",1,1793671815250]]'
)

# sample_state() in format 2; a change here means stored states change meaning
FORMAT_2_SAMPLE = bytes.fromhex(
    "029da4752d3432c41811b5e1d53ae82b141b5d5e51f54f0f04fed135082f0eff78d7ff3b9aca006ae89e77"
    "94c3d7ff3b9aca006ae85827ad4575726f70652f4265726c696ed7ff3b9aca006ae85827959294a5736b75"
    "2d3102cb402d000000000000a6636f6666656594a5736b752d3201c0c0d7ff3b9aca006ae88707c39392a5"
    "736b752d39d7ff3b9aca006ae86f9792a5736b752d31d7ff3b9aca006ae884af92a5736b752d32d7ff3b9a"
    "ca006ae88707d7ff3b9aca006ae87447959294a56f72642d31d7ff3b9aca006ae871ef7891a5736b752d39"
    "94a56f72642d32d7ff3b9aca006ae87447cb40394a3d70a3d70a92a5736b752d33a5736b752d3903cb4065"
    "4947ae147ae1929300a37465619200019301c0910191a56f72642d3094a5736b752d37a6636f6666656509"
    "d7ff3b9aca006ae892bf92970001a2653201d7ff3b9aca006ae89517d7ff3b9aca006ae92b17c0970202a8"
    "65311f736b752d3903d7ff3b9aca006aecec07c0a5736b752d399392d7ff3b9aca006ae85f2fd7ff3b9aca"
    "006ae866379292010092030194d92030313233343536373839616263646566303132333435363738396162"
    "6364656603a7686f6c646f757401a2653201d7ff3b9aca006ae9428790"
)


def test_format_2_is_pinned() -> None:
    assert STATE_FORMAT == 2
    assert encode_state(sample_state()) == FORMAT_2_SAMPLE
    assert decode_state(FORMAT_2_SAMPLE) == sample_state()


def test_format_1_is_still_read() -> None:
    state = decode_state(FORMAT_1_SAMPLE)
    assert state == sample_state()
    assert encode_state(state) == FORMAT_2_SAMPLE  # rewritten in format 2 on the next write


def test_amounts_keep_their_type() -> None:
    """An integer amount stays an integer (a record's JSON would change otherwise)."""
    for data in (FORMAT_1_SAMPLE, FORMAT_2_SAMPLE):
        state = decode_state(data)
        orders = state.history.orders
        assert [type(o.total) for o in orders] == [int, float]
        assert state.viewed is not None and type(state.viewed.price) is int
        assert type(state.history.monetary) is float


def test_the_trigger_code_table_is_append_only() -> None:
    assert list(TRIGGER_CODES.items())[:6] == [
        ("cart_abandonment", 0),
        ("browse_abandonment", 1),
        ("replenishment", 2),
        ("first_purchase_followup", 3),
        ("lapsing", 4),
        ("dormancy", 5),
    ]
    assert list(TRIGGER_CODES.values()) == list(range(len(TRIGGER_CODES)))


_REORDERED = """
import sys
import triggers.registry as registry
registry.TRIGGER_NAMES = tuple(reversed(registry.TRIGGER_NAMES))
from triggers.state import decode_state, encode_state
for data in (bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])):
    state = decode_state(data)
    names = [p.trigger for p in state.pending] + [n for n, _ in state.contacts.last_by_trigger]
    print(",".join([*names, state.contacts.attributable.trigger]), encode_state(state).hex())
"""


def test_reordering_trigger_names_never_changes_stored_states() -> None:
    """The codes come from TRIGGER_CODES alone, whatever order TRIGGER_NAMES has."""
    done = subprocess.run(
        [sys.executable, "-c", _REORDERED, FORMAT_1_SAMPLE.hex(), FORMAT_2_SAMPLE.hex()],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    names = "cart_abandonment,replenishment,browse_abandonment,first_purchase_followup"
    expected = f"{names},first_purchase_followup {FORMAT_2_SAMPLE.hex()}"
    assert done.stdout.splitlines() == [expected, expected]


def test_a_trigger_without_a_code_is_stored_by_name() -> None:
    state = UserState(
        "u1",
        pending=(Pending("socks_after_shoes", 1, "e1", _t(0), _t(60), _t(60)),),
        contacts=ContactLog(
            (_t(0),),
            (("vip_winback", _t(0)), ("lapsing", _t(1))),
            Attributable("f" * 32, "vip_winback", "treatment", _t(0)),
        ),
    )
    data = encode_state(state)
    assert decode_state(data) == state
    assert b"socks_after_shoes" in data and b"vip_winback" in data and b"lapsing" not in data


def test_references_fall_back_to_the_values() -> None:
    """Times and ids that match no order, anchor or contact are stored as themselves."""
    orders = (Order("ord-5", _t(50), 10.0, ("sku-1", "sku-2")), Order("ord-6", _t(60), 5, ()))
    state = UserState(
        "u1",
        last_activity=_t(70),
        history=OrderHistory(
            orders,
            4,
            30.0,
            (
                ProductPurchases("sku-1", None, (_t(10), _t(20), _t(50))),  # older orders gone
                ProductPurchases("sku-2", "tea", (_t(55),)),  # no such order
                ProductPurchases("sku-3", "tea", (_t(60),)),  # not in the order's products
                ProductPurchases("sku-4", None, ()),
            ),
        ),
        pending=(
            Pending("lapsing", 1, "e9", _t(60), _t(900), _t(900)),  # the latest order
            Pending("dormancy", 1, "e9", _t(65), _t(900), _t(950)),  # no known time
        ),
        contacts=ContactLog(
            (_t(40),),
            (("lapsing", _t(40)), ("dormancy", _t(30))),
            Attributable("a" * 32, "lapsing", "treatment", _t(30)),
        ),
    )
    data = encode_state(state)
    assert decode_state(data) == state
    assert encode_state(decode_state(data)) == data


def test_encoding_reuses_nothing_stale_from_earlier_decodes() -> None:
    """Encoding remembers the stored form of the latest history and contacts by identity."""
    sample = decode_state(FORMAT_2_SAMPLE)
    other = typical_user()
    other_data = encode_state(other)
    decoded_other = decode_state(other_data)  # now the remembered ones
    assert encode_state(sample) == FORMAT_2_SAMPLE
    assert encode_state(decoded_other) == other_data
    mixed = msgspec.structs.replace(decoded_other, history=sample.history, contacts=sample.contacts)
    assert decode_state(encode_state(mixed)) == mixed
    changed = msgspec.structs.replace(decoded_other.history, count=decoded_other.history.count + 1)
    assert decode_state(encode_state(msgspec.structs.replace(decoded_other, history=changed))) == (
        msgspec.structs.replace(other, history=changed)
    )


# Few distinct times, ids and triggers, so that values repeat and references are taken.
_times = st.sampled_from(
    [_t(m) for m in (0, 0.001, 1, 60, 61, 600)] + [_t(0).replace(microsecond=0)]
)
_ids = st.sampled_from(["sku-1", "sku-2", "sku-3", "ord-1", ""])
_triggers = st.sampled_from(["cart_abandonment", "lapsing", "dormancy", "birthday", "x"])
_amounts = st.one_of(st.integers(0, 10**15), st.floats(0, 1e15), st.none())


def _tuples(strategy: st.SearchStrategy, size: int = 4) -> st.SearchStrategy:
    return st.lists(strategy, max_size=size).map(tuple)


_states = st.builds(
    UserState,
    user_id=_ids,
    seen=st.binary(max_size=24),
    last_activity=st.none() | _times,
    prefs=st.none() | st.builds(Preferences, st.none() | st.booleans(), st.none() | _times),
    cart=st.builds(
        Cart,
        _tuples(st.builds(CartLine, _ids, st.integers(1, 9), _amounts, st.none() | _ids)),
        st.none() | _times,
        st.booleans(),
        _tuples(st.tuples(_ids, _times)),
        st.none() | _times,
    ),
    history=st.builds(
        OrderHistory,
        _tuples(st.builds(Order, _ids, _times, _amounts.filter(bool), _tuples(_ids))),
        st.integers(0, 40),
        st.integers(0, 99) | st.floats(0, 1e6),
        _tuples(st.builds(ProductPurchases, _ids, st.none() | _ids, _tuples(_times, 8))),
        _tuples(_ids),
    ),
    viewed=st.none() | st.builds(View, _ids, st.none() | _ids, _amounts, _times),
    pending=_tuples(
        st.builds(Pending, _triggers, st.integers(1, 3), _ids, _times, _times, _times, _ids)
    ),
    contacts=st.builds(
        ContactLog,
        _tuples(_times),
        _tuples(st.tuples(_triggers, _times)),
        st.none() | st.builds(Attributable, _ids, _triggers, _ids, _times),
    ),
    dormancy_key=st.none() | _ids,
    dormancy_stage=st.integers(0, 3),
    dormancy_send_at=st.none() | _times,
)


@settings(max_examples=300, deadline=None)
@given(_states)
def test_any_state_round_trips_exactly(state: UserState) -> None:
    data = encode_state(state)
    back = decode_state(data)
    assert back == state
    assert [type(o.total) for o in back.history.orders] == [
        type(o.total) for o in state.history.orders
    ]
    assert encode_state(back) == data


def test_a_reference_to_a_missing_time_is_corrupt() -> None:
    view = View("sku-7", None, None, _t(5))
    state = UserState(
        "u1", viewed=view, pending=(Pending("browse_abandonment", 1, "e1", _t(5), _t(65), _t(65)),)
    )
    data = encode_state(state)
    assert decode_state(data) == state
    view_bytes = msgspec.msgpack.encode(view)
    assert data.count(view_bytes) == 1
    with pytest.raises(ValueError, match="missing time"):
        decode_state(data.replace(view_bytes, b"\xc0"))


def test_a_held_decision_round_trips_with_its_context() -> None:
    tl = Timeline(make_rules())
    tl.add(at(), "sku-1", 14.5, category="coffee")
    tl.add(at(minutes=1), "sku-2", 3, quantity=2)
    tl.advance(at(days=1))
    decision = tl.decisions("cart_abandonment")[0]
    assert decision.context["lines"] and decision.context["value"] == 20.5
    state = msgspec.structs.replace(tl.state(), held=(decision,))
    data = encode_state(state)
    back = decode_state(data)
    assert back == state
    assert back.held[0].context == decision.context
    assert type(back.held[0]) is type(decision)
    assert encode_state(back) == data


def test_a_full_cart_drops_its_oldest_line() -> None:
    tl = Timeline(make_rules())
    for n in range(MAX_CART_LINES + 10):
        tl.add(at(minutes=n), f"sku-{n}", 1.0)
    tl.add(at(minutes=100), "sku-30", 1.0)  # an existing line: merged, nothing dropped
    lines = tl.state().cart.lines
    assert len(lines) == MAX_CART_LINES == 50
    assert [line.product_id for line in lines] == [f"sku-{n}" for n in range(10, 60)]
    assert next(line for line in lines if line.product_id == "sku-30").quantity == 2
    assert decode_state(encode_state(tl.state())) == tl.state()


@pytest.mark.parametrize(
    "data",
    [
        b"\x02",
        b"\x02\x91",
        b"\x03" + FORMAT_2_SAMPLE[1:],
        FORMAT_2_SAMPLE + b"\x00",
        FORMAT_2_SAMPLE.replace(bytes.fromhex("970202"), bytes.fromhex("977e02")),  # no trigger 126
        FORMAT_1_SAMPLE.replace(b"[[0,1,", b"[[9,1,"),
        FORMAT_2_SAMPLE.replace(bytes.fromhex("929300"), bytes.fromhex("929309")),  # no product 9
        FORMAT_2_SAMPLE.replace(bytes.fromhex("920001"), bytes.fromhex("9200ff")),  # order -1
    ],
)
def test_corrupt_format_2_raises_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_state(data)
