"""The catalog side of back in stock and price drop, as ``nudge replay`` keeps it.

A ``product_updated`` has no user. :class:`CatalogBook` keeps what the fan-out
needs: each product's known price, stock and category; per product, the users
interested in it (a view, cart add or wishlist: per price seen, the latest time);
per product, the users a catalog episode was armed for (they hear of a later
out-of-stock or price rise, which cancels it). :meth:`CatalogBook.apply` turns one
catalog event into one :class:`~triggers.catalog.CatalogChanged` per user concerned,
in user-id order, which the caller applies to each user's state through the driver
at the catalog event's time (the live service is to do the same from a product table
and an internal topic co-partitioned with the users).

Event time decides (contract 7.3): an interest later than the catalog event does not
make its user a recipient, nor one older than ``interest_window`` before it. An order
of the product removes the interest it had up to the order's time (ordering is not a
reason to tell them it is back). A restock is ``in_stock`` turning from false to true
(the first event of a product, whose stock was unknown, is none); a price drop is a
price below the product's previous price (or the first known price) that is at least
``min_drop_percent`` below the lowest price a user saw within the window. Re-sent
(same ``event_id``) and ``test`` catalog events change nothing.

Memory: interest older than the window is dropped when its product is next touched;
an armed user is forgotten once all the episode's stages are past, quiet hours
included: a stage they defer can still be cancelled until it is sent (contract 3, step
2), so the user hears of an out-of-stock or a rise until the last stage's offset plus
the longest deferral (:func:`~triggers.quiet_hours.longest_deferral`). No cap drops
users.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from triggers.catalog import BackInStockRules, CatalogChanged, PriceDropRules
from triggers.events import (
    CartItemAdded,
    Event,
    OrderPlaced,
    ProductUpdated,
    ProductViewed,
    WishlistAdded,
)
from triggers.quiet_hours import longest_deferral
from triggers.rules import Rules
from triggers.state import Amount

MAX_PRICES = 16  # distinct prices remembered per (user, product); the oldest goes first


@dataclass(slots=True)
class Product:
    price: Amount | None = None
    in_stock: bool | None = None
    category: str | None = None


@dataclass(slots=True)
class CatalogBook:
    back: BackInStockRules
    drop: PriceDropRules
    products: dict[str, Product] = field(default_factory=dict)
    # product -> user -> price seen (None: no price) -> latest time seen at that price
    interest: dict[str, dict[str, dict[Amount | None, datetime]]] = field(default_factory=dict)
    armed: dict[str, dict[str, datetime]] = field(default_factory=dict)  # product -> user -> at
    seen: set[str] = field(default_factory=set)  # catalog event ids
    deferral: timedelta = timedelta(0)  # the longest quiet hours can defer a stage

    @classmethod
    def of(cls, rules: Rules) -> CatalogBook:
        """The book of the rules' catalog triggers and quiet hours: the global ones, then
        (contract 8.2) a channel's own, whose end may fall in the global ones again."""
        triggers, quiet = rules.triggers, rules.contact_policy.quiet_hours
        deferral = timedelta(0) if quiet is None else longest_deferral(quiet.start, quiet.end)
        windows = [c.quiet_hours for c in rules.channels.values() if c.quiet_hours is not None]
        if windows:
            channel = max(longest_deferral(window.start, window.end) for window in windows)
            deferral = channel + 2 * deferral
        return cls(triggers.back_in_stock, triggers.price_drop, deferral=deferral)  # type: ignore[attr-defined]

    @property
    def enabled(self) -> bool:
        return self.back.enabled or self.drop.enabled

    @property
    def window(self) -> timedelta:
        windows = [r.interest_window for r in (self.back, self.drop) if r.enabled]
        return max(windows, default=timedelta(0))

    @property
    def armed_for(self) -> timedelta:
        """How long after it was armed a user still hears of an out-of-stock or a rise: as
        long as a stage of the episode may be pending, deferred by quiet hours or not."""
        return max(self.back.stages[-1], self.drop.stages[-1]) + self.deferral

    def note_event(self, event: Event) -> None:
        """Keep what a processed user event says about interest (views, cart adds,
        wishlists) or removes from it (orders)."""
        kind = type(event)
        if kind is ProductViewed or kind is WishlistAdded:
            self.note_interest(event.user_id, event.product_id, event.ts, event.price)  # type: ignore[union-attr]
        elif kind is CartItemAdded:
            price = event.unit_price  # type: ignore[union-attr]
            self.note_interest(event.user_id, event.product_id, event.ts, price)  # type: ignore[union-attr]
        elif kind is OrderPlaced:
            products = [line.product_id for line in event.items]  # type: ignore[union-attr]
            self.note_order(event.user_id, products, event.ts)

    def note_interest(
        self, user_id: str, product_id: str, ts: datetime, price: Amount | None
    ) -> None:
        prices = self.interest.setdefault(product_id, {}).setdefault(user_id, {})
        if price in prices and prices[price] >= ts:
            return
        prices.pop(price, None)
        prices[price] = ts
        while len(prices) > MAX_PRICES:
            del prices[min(prices, key=prices.__getitem__)]

    def note_order(self, user_id: str, product_ids: list[str], ts: datetime) -> None:
        for product_id in product_ids:
            users = self.interest.get(product_id)
            prices = users.get(user_id) if users is not None else None
            if prices is None:
                continue
            for price in [p for p, at in prices.items() if at <= ts]:
                del prices[price]
            if not prices:
                del users[user_id]  # type: ignore[union-attr]

    def forget_user(self, user_id: str) -> None:
        """Erasure or retention (contract 8.5): the user's interest and armed rows go."""
        for by_product in (self.interest, self.armed):
            for product_id in [p for p, users in by_product.items() if user_id in users]:
                users = by_product[product_id]
                del users[user_id]
                if not users:
                    del by_product[product_id]

    def apply(self, event: ProductUpdated) -> list[CatalogChanged]:
        """The per-user messages of one catalog event (none for a duplicate or test one)."""
        if event.test or event.event_id in self.seen:
            return []
        self.seen.add(event.event_id)
        pid, ts = event.product_id, event.ts
        product = self.products.setdefault(pid, Product())
        restocked = event.in_stock is True and product.in_stock is False
        out_of_stock = event.in_stock is False
        price = event.price
        dropped = price is not None and (product.price is None or price < product.price)
        rose = price is not None and product.price is not None and price > product.price
        if price is not None:
            product.price = price
        if event.in_stock is not None:
            product.in_stock = event.in_stock
        if event.category is not None:
            product.category = event.category
        arming: dict[str, dict[str, object]] = {}
        users = self._recent(pid, ts)
        if restocked and self.back.enabled:
            start = ts - self.back.interest_window
            for user_id, prices in users.items():
                if any(start <= at <= ts for at in prices.values()):
                    arming.setdefault(user_id, {})["restocked"] = True
        if dropped and self.drop.enabled:
            start = ts - self.drop.interest_window
            factor = 1 - self.drop.min_drop_percent / 100
            for user_id, prices in users.items():
                seen = [p for p, at in prices.items() if p is not None and start <= at <= ts]
                if seen and price <= min(seen) * factor:  # type: ignore[operator]
                    arming.setdefault(user_id, {})["old_price"] = min(seen)
        told = dict.fromkeys(arming)
        armed = self._armed(pid, ts)
        if out_of_stock or rose:
            told.update(dict.fromkeys(armed))
        for user_id in arming:
            armed[user_id] = ts
        return [
            CatalogChanged(
                event.event_id,
                user_id,
                ts,
                pid,
                product.category,
                restocked=bool(arming.get(user_id, {}).get("restocked")),
                out_of_stock=out_of_stock,
                new_price=price,
                old_price=arming.get(user_id, {}).get("old_price"),  # type: ignore[arg-type]
            )
            for user_id in sorted(told)
        ]

    def _recent(self, product_id: str, ts: datetime) -> dict[str, dict[Amount | None, datetime]]:
        """The product's interested users, interest older than the window dropped."""
        users = self.interest.get(product_id, {})
        start = ts - self.window
        for user_id in [u for u, prices in users.items() if max(prices.values()) < start]:
            del users[user_id]
        return users

    def _armed(self, product_id: str, ts: datetime) -> dict[str, datetime]:
        armed = self.armed.setdefault(product_id, {})
        last = self.armed_for
        for user_id in [u for u, at in armed.items() if at + last < ts]:
            del armed[user_id]
        return armed
