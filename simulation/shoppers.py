"""The shoppers of the synthetic traffic: who they are, and what one visit of theirs is.

:mod:`simulation.synthetic` draws a population with :func:`new_shopper` and expands each
visit due with :func:`run_session`; its module docstring describes the behaviours and the
determinism (every session reseeds one shared PRNG from ``(seed, user, session number)``).
"""

from __future__ import annotations

import random
from bisect import bisect_right
from itertools import accumulate
from typing import Any

from simulation.catalog import (
    BY_CATEGORY,
    CATALOG,
    CATEGORIES,
    CONSUMABLE_DAYS,
    CONSUMABLES,
    CUM_WEIGHTS,
    DAY_MS,
    HOUR_MS,
    MIN_MS,
    NEVER,
    SEARCH_TERMS,
    SEC_MS,
    Product,
    mix,
)
from simulation.new_triggers import (
    BIRTHDAY_SHARE,
    EXTRA_SALT,
    WISHLIST_SHARE,
    Extra,
    birthday,
)

# --------------------------------------------------------------------------------------------
# Population
# --------------------------------------------------------------------------------------------

_BROWSER, _ABANDONER, _BUYER, _REPLENISHER = range(4)
_PERSONA_CUM = tuple(accumulate((0.40, 0.20, 0.25, 0.15)))
# mean days between ordinary sessions, by persona
_MEAN_GAP_DAYS = (10.0, 6.0, 8.0, 12.0)

# (IANA zone, standard UTC offset in hours, weight); the offset only shapes the
# local hour of sessions, so ignoring DST here is harmless.
_ZONES: tuple[tuple[str, float, float], ...] = (
    ("Asia/Shanghai", 8, 40),
    ("Asia/Tokyo", 9, 8),
    ("Asia/Singapore", 8, 6),
    ("Asia/Kolkata", 5.5, 5),
    ("Europe/Berlin", 1, 10),
    ("Europe/London", 0, 8),
    ("America/New_York", -5, 10),
    ("America/Los_Angeles", -8, 8),
    ("Australia/Sydney", 10, 5),
)
_ZONE_CUM = tuple(accumulate(z[2] for z in _ZONES))
# relative activity by local hour of day
_HOUR_CUM = tuple(
    accumulate((1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 4, 4, 4, 5, 5, 4, 4, 4, 5, 6, 8, 9, 8, 5, 2))
)

_TEST_USER_SHARE = 0.005
_QUIT_SHARE = 0.25  # users whose activity stops part-way through
_LATE_JOIN_SHARE = 0.15  # users whose first visit is somewhere in the window
_TZ_ANNOUNCE_SHARE = 0.06  # users who send their time zone on their first visit
_OPT_OUT_PER_SESSION = 0.006
_OPT_IN_AGAIN = 0.15
_DUPLICATE_SHARE = 0.01
_CANCEL_SHARE = 0.03
_STORE_ORDER_SHARE = 0.05


class Shopper:
    """Everything that carries over between one user's sessions (small, slotted)."""

    __slots__ = (
        "app",
        "cart",
        "channel",
        "emitted",
        "extra",
        "idx",
        "interests",
        "next_regular",
        "opted_out",
        "orders",
        "persona",
        "quit_at",
        "seq",
        "sessions",
        "staples",
        "test",
        "tz",
        "tz_offset",
        "user_id",
    )

    def __init__(self) -> None:
        self.idx = 0
        self.user_id = ""
        self.persona = _BROWSER
        self.test = False
        self.channel: str | None = None
        self.app = False
        self.tz = ""
        self.tz_offset = 0
        self.interests: tuple[str, ...] = ()
        self.staples: list[list[Any]] = []  # [product, quantity, interval_ms, next_due]
        self.quit_at = NEVER
        self.next_regular = NEVER
        self.sessions = 0
        self.seq = 0  # heap tie-break sequence
        self.emitted = 0  # event id counter
        self.extra: Extra | None = None  # new_triggers: the extra events' stream
        self.orders = 0
        self.opted_out = False
        self.cart: dict[str, int] = {}

    def next_at(self) -> int:
        due = self.next_regular
        for staple in self.staples:
            due = min(due, staple[3])
        return due if due < self.quit_at else NEVER


def _pick(rng: random.Random, cum: tuple[float, ...]) -> int:
    return bisect_right(cum, rng.random() * cum[-1])


class Clock:
    """Session placement at plausible local hours (shop-time ms since ``start``)."""

    __slots__ = ("phase",)

    def __init__(self, start_ms: int) -> None:
        self.phase = start_ms % DAY_MS

    def at_local_hour(self, rng: random.Random, sh: Shopper, around: int, after: int) -> int:
        """A time on the local day of ``around`` at a typical hour, strictly after ``after``."""
        local_day = (around + self.phase + sh.tz_offset) // DAY_MS
        tod = _pick(rng, _HOUR_CUM) * HOUR_MS + rng.randrange(HOUR_MS)
        t = local_day * DAY_MS + tod - self.phase - sh.tz_offset
        while t <= after:
            t += DAY_MS
        return t


def new_shopper(rng: random.Random, seed: int, idx: int, horizon: int, clock: Clock) -> Shopper:
    rng.seed(mix(seed, idx, 0))
    sh = Shopper()
    sh.idx = idx
    sh.user_id = f"u{idx:07d}"
    sh.test = rng.random() < _TEST_USER_SHARE
    sh.persona = _BUYER if sh.test else _pick(rng, _PERSONA_CUM)
    r = rng.random()
    sh.channel = "web" if r < 0.55 else "app" if r < 0.95 else None
    sh.app = sh.channel == "app"
    zone = _ZONES[_pick(rng, _ZONE_CUM)]
    sh.tz = zone[0]
    sh.tz_offset = int(zone[1] * HOUR_MS)
    first, *rest = rng.sample(CATEGORIES, 3)
    sh.interests = (first, *rest[: rng.randrange(0, 3)])
    mean_gap = _MEAN_GAP_DAYS[sh.persona] * DAY_MS
    if rng.random() < _LATE_JOIN_SHARE:
        around = int(rng.random() * horizon)
    else:  # already a visitor: memoryless start keeps the activity rate flat over time
        around = int(rng.expovariate(1.0 / mean_gap))
    sh.next_regular = clock.at_local_hour(rng, sh, around, -1)
    if sh.persona == _REPLENISHER:
        for category in rng.sample(CONSUMABLES, 1 if rng.random() < 0.7 else 2):
            product = BY_CATEGORY[category][_pick(rng, CUM_WEIGHTS[category])]
            interval = int(CONSUMABLE_DAYS[category] * DAY_MS * rng.uniform(0.85, 1.15))
            # mid-cycle: the first purchase falls somewhere in the first interval
            first_due = clock.at_local_hour(rng, sh, int(rng.random() * interval), -1)
            quantity = 1 if rng.random() < 0.75 else 2
            sh.staples.append([product, quantity, interval, first_due])
    if rng.random() < _QUIT_SHARE:
        sh.quit_at = int(horizon * rng.uniform(0.1, 0.9))
    return sh


# --------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------

# One output item of a session: (shop-time offset ms, event without ts, re-delivered?)
SessionEvent = tuple[int, dict[str, Any], bool]


class _Session:
    """Builds one visit's events in time order (offsets in shop-time ms)."""

    __slots__ = ("out", "rng", "sh", "t")

    def __init__(self, rng: random.Random, sh: Shopper, t: int) -> None:
        self.rng = rng
        self.sh = sh
        self.t = t
        self.out: list[SessionEvent] = []

    def step(self, mean_s: float = 40.0) -> None:
        self.t += 3 * SEC_MS + int(self.rng.expovariate(1.0 / (mean_s * SEC_MS)))

    def emit(
        self, type_: str, fields: dict[str, Any], at: int | None = None, extra: bool = False
    ) -> dict[str, Any]:
        """One event; ``extra``: a new_triggers event, from the shopper's extra stream."""
        sh, rng = self.sh, self.rng
        if extra:
            assert sh.extra is not None
            rng = sh.extra.rng
            sh.extra.emitted += 1
            event_id = f"{sh.user_id}-x{sh.extra.emitted:x}"
        else:
            sh.emitted += 1
            event_id = f"{sh.user_id}-{sh.emitted:x}"
        event: dict[str, Any] = {
            "event_id": event_id,
            "type": type_,
            "user_id": sh.user_id,
            "ts": 0,  # stamped when it leaves the heap (scaled time, form by producer)
        }
        event.update(fields)
        if sh.channel is not None and rng.random() < 0.85:
            event["channel"] = sh.channel
        if sh.test:
            event["test"] = True
        self.out.append((self.t if at is None else at, event, rng.random() < _DUPLICATE_SHARE))
        return event

    # -- building blocks -------------------------------------------------------------------

    def product(self) -> Product:
        rng = self.rng
        interests = self.sh.interests
        category = (
            interests[rng.randrange(len(interests))]
            if rng.random() < 0.8
            else rng.choice(CATEGORIES)
        )
        return BY_CATEGORY[category][_pick(rng, CUM_WEIGHTS[category])]

    def view(self, p: Product) -> None:
        fields: dict[str, Any] = {"product_id": p.product_id}
        if self.rng.random() < 0.9:
            fields["category"] = p.category
            fields["price"] = p.price
        self.emit("product_viewed", fields)
        extra = self.sh.extra
        if extra is not None and extra.rng.random() < WISHLIST_SHARE:
            later = self.t + SEC_MS + int(extra.rng.random() * 30 * SEC_MS)
            wished = {"product_id": p.product_id, "category": p.category, "price": p.price}
            self.emit("wishlist_added", wished, at=later, extra=True)

    def browse(self, n: int) -> None:
        rng = self.rng
        for _ in range(n):
            self.step()
            r = rng.random()
            if r < 0.70:
                self.view(self.product())
            elif r < 0.88:
                self.emit("category_viewed", {"category": self.product().category})
            else:
                category = self.product().category
                self.emit("search", {"query": rng.choice(SEARCH_TERMS[category])})

    def add(self, p: Product, quantity: int) -> None:
        self.step(25.0)
        fields: dict[str, Any] = {"product_id": p.product_id}
        if quantity != 1 or self.rng.random() < 0.7:
            fields["quantity"] = quantity
        fields["unit_price"] = p.price
        fields["category"] = p.category
        self.emit("cart_item_added", fields)
        cart = self.sh.cart
        cart[p.product_id] = cart.get(p.product_id, 0) + quantity

    def fill_cart(self) -> None:
        rng = self.rng
        for _ in range(1 if rng.random() < 0.55 else 2 if rng.random() < 0.7 else 3):
            p = self.product()
            self.view(p)
            self.add(p, 1 if rng.random() < 0.8 else rng.randint(2, 4))
        cart = self.sh.cart
        if len(cart) > 1 and rng.random() < 0.1:  # changes their mind about one line
            self.step()
            product_id = rng.choice(sorted(cart))
            quantity = cart[product_id]
            if quantity > 1 and rng.random() < 0.5:
                self.emit("cart_item_removed", {"product_id": product_id, "quantity": 1})
                cart[product_id] = quantity - 1
            else:
                self.emit("cart_item_removed", {"product_id": product_id})
                del cart[product_id]

    def checkout(
        self, *, in_store: bool = False, lines: list[tuple[Product, int]] | None = None
    ) -> None:
        """``checkout_started`` + ``order_placed`` with exactly the cart's lines (or ``lines``)."""
        sh, rng = self.sh, self.rng
        if lines is None:
            lines = [(_PRODUCTS[pid], q) for pid, q in sh.cart.items()]
            self.step(60.0)
            self.emit("checkout_started", {})
        self.t += 30 * SEC_MS + int(rng.random() * 4 * MIN_MS)
        sh.orders += 1
        order_id = f"o-{sh.user_id}-{sh.orders}"
        items = [
            {
                "product_id": p.product_id,
                "quantity": q,
                "unit_price": p.price,
                "category": p.category,
            }
            for p, q in lines
        ]
        fields: dict[str, Any] = {"order_id": order_id, "items": items}
        if rng.random() < 0.9:  # else the contract's default: the sum of the lines
            fields["total"] = round(sum(p.price * q for p, q in lines), 2)
        event = self.emit("order_placed", fields)
        if in_store:
            event["channel"] = "store"
        sh.cart.clear()
        if rng.random() < _CANCEL_SHARE:
            later = self.t + 30 * MIN_MS + int(rng.random() * 3 * DAY_MS)
            self.emit("order_cancelled", {"order_id": order_id}, at=later)

    def leave_cart(self) -> None:
        if self.rng.random() < 0.3:
            self.step(60.0)
            self.emit("checkout_started", {})


_PRODUCTS: dict[str, Product] = {p.product_id: p for p in CATALOG}


def _browse_len(rng: random.Random) -> int:
    return 1 + min(11, int(rng.expovariate(1.0 / 2.2)))


def run_session(
    rng: random.Random, seed: int, sh: Shopper, t: int, clock: Clock
) -> list[SessionEvent]:
    """Expand the visit due at ``t`` into events and schedule the user's next visit."""
    sh.sessions += 1
    rng.seed(mix(seed, sh.idx, sh.sessions))
    s = _Session(rng, sh, t)
    persona = sh.persona
    if sh.extra is not None:
        sh.extra.rng.seed(mix(seed ^ EXTRA_SALT, sh.idx, sh.sessions))
        if sh.sessions == 1 and not sh.test and sh.extra.rng.random() < BIRTHDAY_SHARE:
            s.emit("preferences_updated", {"birthday": birthday(sh.extra.rng)}, extra=True)

    if sh.sessions == 1 and not sh.test and rng.random() < _TZ_ANNOUNCE_SHARE:
        prefs: dict[str, Any] = {"timezone": sh.tz}
        if rng.random() < 0.5:
            prefs["marketing_opt_in"] = True
        s.emit("preferences_updated", prefs)
    elif not sh.test and rng.random() < (_OPT_IN_AGAIN if sh.opted_out else _OPT_OUT_PER_SESSION):
        sh.opted_out = not sh.opted_out
        s.emit("preferences_updated", {"marketing_opt_in": not sh.opted_out})

    due = [st for st in sh.staples if st[3] <= t]
    if due:
        # replenishment visit: everything due within two days goes into one basket
        soon = t + 2 * DAY_MS
        basket = [st for st in sh.staples if st[3] <= soon]
        if rng.random() < 0.4:
            s.browse(1)
        for staple in basket:
            product, quantity = staple[0], staple[1]
            if rng.random() < 0.5:
                s.view(product)
            s.add(product, quantity)
        s.checkout()
        for staple in basket:
            interval = staple[2] * rng.uniform(0.85, 1.15)
            staple[3] = clock.at_local_hour(rng, sh, s.t + int(interval), s.t)
    else:
        r = rng.random()
        cart = sh.cart
        if persona == _BROWSER:
            s.browse(_browse_len(rng))
            if r < 0.08:  # puts something in the cart, then takes it out again
                p = s.product()
                s.view(p)
                s.add(p, 1)
                s.step()
                s.emit("cart_item_removed", {"product_id": p.product_id})
                cart.clear()
        elif cart and r < (0.35 if persona == _ABANDONER else 0.6):
            # comes back to the cart left last time and buys it (maybe adding more)
            s.browse(rng.randrange(0, 3))
            if rng.random() < 0.3:
                s.fill_cart()
            s.checkout()
        elif cart and r < 0.45:
            s.step()
            s.emit("cart_cleared", {})
            cart.clear()
        elif (
            persona == _BUYER and not cart and r > 1 - _STORE_ORDER_SHARE
        ):  # in-store purchase: no online cart involved
            n = rng.randint(1, 3)
            s.checkout(in_store=True, lines=[(s.product(), 1) for _ in range(n)])
        elif rng.random() < (0.4 if persona == _REPLENISHER else 0.6):
            s.browse(rng.randrange(0, 4))
            s.fill_cart()
            buys = {_ABANDONER: 0.2, _BUYER: 0.75, _REPLENISHER: 0.6}[persona]
            if rng.random() < buys:
                s.checkout()
            else:
                s.leave_cart()
        else:
            s.browse(_browse_len(rng))

    if sh.next_regular <= s.t:
        gap = rng.expovariate(1.0 / (_MEAN_GAP_DAYS[persona] * DAY_MS))
        sh.next_regular = clock.at_local_hour(rng, sh, s.t + int(gap), s.t)
    return s.out
