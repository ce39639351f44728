"""Synthetic shop traffic: a pure, deterministic, seeded event generator.

Used by the replay benchmark (``bench/replay_bench.py``), by ``nudge simulate``
(the live demo) and by tests. It produces contract-valid input events
(CONTRACT section 1) for a population of shoppers with different behaviours:

- **browsers** look at products and categories and search, and never buy;
- **cart abandoners** fill carts (sometimes start checkout) and mostly leave,
  now and then coming back to buy what is in the cart;
- **buyers** complete checkout: ``cart_item_added`` -> ``checkout_started`` ->
  ``order_placed`` whose items and total are exactly the cart's lines, plus a
  few in-store orders without a cart;
- **replenishers** buy 1-2 consumables on a rhythm (coffee every ~14 days, pet
  food every ~30 days, ... with per-user and per-cycle jitter) and browse in
  between.

A share of users go quiet part-way through (their activity just stops), some
join late, a few send ``preferences_updated`` (IANA time zones, opt-outs and
opt-ins), a small share are staff / QA accounts whose events carry
``test: true``, about 1 % of events are re-delivered (same payload, same
``event_id``), about 3 % of orders are cancelled later, and most events carry
a ``channel``. Sessions happen at plausible local hours of the user's time
zone. Timestamps use both contract forms: the app's tracker (browse and cart
events of app users) sends epoch milliseconds, every other producer RFC 3339
UTC strings with millisecond precision.

With ``new_triggers=True`` the traffic also feeds the triggers of contract 7:
the catalog changes (``product_updated`` on ``shop.catalog``, keyed by product, no
``user_id``: list prices at the start, stock-outs and restocks, sales and the
price rising back), wishlists (``wishlist_added`` after some product views) and
birthdays (``preferences_updated`` with ``birthday`` on a share of first visits).
These come from their own random streams and event-id counters, so every event of
the default traffic is still there, unchanged: the extra events are only added
(default ``new_triggers=False``: byte-identical to the traffic before they
existed). The shoppers do not react to the catalog (views keep the list price,
out-of-stock products are still bought).

Determinism: the output is a pure function of the arguments. Each user's
timeline depends only on ``(seed, user index)`` - every session reseeds one
shared PRNG from a hash of ``(seed, user, session number)`` - so changing
``users`` or ``time_scale`` never changes what an existing user does, only
when (``time_scale``) and among whom.

Memory: nothing is materialised. One heap holds one "next session" marker per
active user plus the events of sessions in progress; a marker is expanded into
its session's events only when it reaches the head of the heap, so memory
grows with the number of users (a few hundred bytes each), not with the
number of events or days.
"""

from __future__ import annotations

import heapq
import os
import random
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from simulation.catalog import CATALOG, CONSUMABLE_DAYS, DAY_MS, SEC_MS, Product
from simulation.new_triggers import Extra, Listing
from simulation.shoppers import Clock, new_shopper, run_session
from triggers.events import TOPIC_OF_TYPE

__all__ = [
    "CATALOG",
    "CONSUMABLE_DAYS",
    "TOPIC_FOR_TYPE",
    "Product",
    "event_lines",
    "generate_events",
    "write_event_file",
]

# the contract's type -> topic mapping, one source of truth with the parser
TOPIC_FOR_TYPE: dict[str, str] = TOPIC_OF_TYPE

# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def _rfc3339(ms: int) -> str:
    return (_NAIVE_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds") + "Z"


def generate_events(
    *,
    users: int,
    seed: int,
    start: datetime,
    days: float = 30.0,
    time_scale: float = 1.0,
    new_triggers: bool = False,
) -> Iterator[dict[str, Any]]:
    """Yield contract-valid input events of ``users`` shoppers, globally sorted by ``ts``.

    ``start`` (timezone-aware) is the beginning of the window; events fall in
    ``[start, start + days * time_scale)``. ``time_scale`` compresses shop time
    for live demos (``1/3600``: an hour of shop time per second); it does not
    change which events are generated, only their timestamps. ``ts`` is an
    RFC 3339 UTC string with milliseconds, or epoch milliseconds for the app's
    browse and cart events. Re-delivered duplicates are separate, equal dicts.
    ``new_triggers``: also catalog changes, wishlists and birthdays (module docstring);
    a catalog event has no ``user_id`` (its key is ``product_id``).
    """
    if users < 0:
        raise ValueError("users must be >= 0")
    if days <= 0:
        raise ValueError("days must be > 0")
    if time_scale <= 0:
        raise ValueError("time_scale must be > 0")
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be a timezone-aware datetime")
    start_ms = (start - _EPOCH) // timedelta(milliseconds=1)
    return _generate(users, seed, start_ms, int(days * DAY_MS), time_scale, new_triggers)


def _generate(
    users: int, seed: int, start_ms: int, horizon: int, time_scale: float, new_triggers: bool
) -> Iterator[dict[str, Any]]:
    rng = random.Random()
    clock = Clock(start_ms)
    scaled = time_scale != 1.0

    def stamp(offset: int) -> int:
        return start_ms + (int(offset * time_scale) if scaled else offset)

    # heap items: (ts ms, user index, per-user sequence, event dict | shopper marker)
    heap: list[tuple[int, int, int, Any]] = []
    for idx in range(users):
        sh = new_shopper(rng, seed, idx, horizon, clock)
        if new_triggers:
            sh.extra = Extra()
        first = sh.next_at()
        if first < horizon:
            heap.append((stamp(first), idx, 0, sh))
    if new_triggers:  # the catalog's listings sort before the shoppers (negative index)
        for index, product in enumerate(CATALOG):
            heap.append((stamp(index * SEC_MS), -1 - index, 0, Listing(index, product)))
    heapq.heapify(heap)
    push, pop = heapq.heappush, heapq.heappop
    catalog_rng = random.Random()

    while heap:
        ts, idx, _, item = pop(heap)
        kind = type(item)
        if kind is dict:
            yield item
            continue
        if kind is Listing:
            listing: Listing = item
            t = listing.next_at
            event, following = listing.change(seed, t, catalog_rng)
            event["ts"] = _rfc3339(stamp(t))
            listing.seq += 1
            push(heap, (stamp(t), idx, listing.seq, event))
            listing.next_at = following
            if following < horizon:
                listing.seq += 1
                push(heap, (stamp(following), idx, listing.seq, listing))
            continue
        sh = item
        t = sh.next_at()
        for offset, event, redelivered in run_session(rng, seed, sh, t, clock):
            if offset >= horizon:
                continue
            ts = stamp(offset)
            app_tracker = sh.app and TOPIC_FOR_TYPE[event["type"]] in ("shop.browse", "shop.cart")
            event["ts"] = ts if app_tracker else _rfc3339(ts)
            sh.seq += 1
            push(heap, (ts, idx, sh.seq, event))
            if redelivered:
                sh.seq += 1
                push(heap, (ts, idx, sh.seq, dict(event)))
        following = sh.next_at()
        if following < horizon:
            sh.seq += 1
            push(heap, (stamp(following), idx, sh.seq, sh))


def event_lines(events: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """Serialise events as JSON Lines (``b'{...}\\n'`` each, orjson)."""
    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    for event in events:
        yield dumps(event, option=option)


def write_event_file(
    path: str | os.PathLike[str],
    *,
    users: int,
    seed: int,
    start: datetime,
    days: float = 30.0,
    new_triggers: bool = False,
) -> int:
    """Write the synthetic events to ``path`` as JSON Lines; return the number of events.

    The file appears atomically (written to a temporary sibling, then renamed),
    so an interrupted run never leaves a truncated file behind.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    count = 0
    batch: list[bytes] = []
    with tmp.open("wb", buffering=1 << 20) as f:
        events = generate_events(
            users=users, seed=seed, start=start, days=days, new_triggers=new_triggers
        )
        for line in event_lines(events):
            batch.append(line)
            if len(batch) >= 4096:
                f.write(b"".join(batch))
                count += len(batch)
                batch.clear()
        f.write(b"".join(batch))
        count += len(batch)
    os.replace(tmp, target)
    return count
