"""Synthetic events for the triggers of contract 7 (``generate_events(new_triggers=True)``).

- :class:`Listing`: one product's catalog timeline, ``product_updated`` events keyed by
  product with no ``user_id`` (list price and in stock at the start, then stock-outs
  with restocks, and sales with the price rising back);
- :class:`Extra`: a shopper's own random stream and event-id counter for the extra user
  events (``wishlist_added`` after some views, a ``birthday`` on the first visit), so
  the default traffic's random draws and event ids are untouched;
- :func:`birthday`: a random real birthday in either contract form.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from simulation.catalog import DAY_MS, MIN_MS, SEC_MS, Product, mix

# the extra events' shares and the catalog's rhythm
BIRTHDAY_SHARE = 0.35  # users who give a birthday on their first visit
_BIRTHDAY_WITH_YEAR = 0.5  # "YYYY-MM-DD" rather than "MM-DD"
WISHLIST_SHARE = 0.06  # product views followed by a wishlist_added
_CATALOG_MEAN_GAP_DAYS = 25.0  # between a product's stock or price changes
_OUT_OF_STOCK_DAYS = (1.0, 6.0)
_SALE_DAYS = (2.0, 7.0)
_SALE_CUT = (0.10, 0.35)  # a sale's price cut, share of the list price
EXTRA_SALT = 0x6E65775F74726967  # the extra events' random streams differ from the others
_CATALOG_SALT = 0x636174616C6F6721


class Extra:
    """A shopper's extra events (new_triggers): their own random stream and event ids."""

    __slots__ = ("emitted", "rng")

    def __init__(self) -> None:
        self.rng = random.Random()
        self.emitted = 0


class Listing:
    """One product's catalog timeline (new_triggers): stock and price as it changes."""

    __slots__ = ("changes", "in_stock", "index", "next_at", "price", "product", "seq")

    def __init__(self, index: int, product: Product) -> None:
        self.index = index
        self.product = product
        self.changes = 0
        self.seq = 0
        self.in_stock = True
        self.price = product.price
        self.next_at = index * SEC_MS  # shop time of the next change: the first, at the start

    def change(self, seed: int, t: int, rng: random.Random) -> tuple[dict[str, Any], int]:
        """The product_updated at shop time ``t`` and the time of the next change."""
        rng.seed(mix(seed ^ _CATALOG_SALT, self.index, self.changes))
        self.changes += 1
        p = self.product
        fields: dict[str, Any]
        if self.changes == 1:  # the catalog as the shop starts: list price, in stock
            fields = {"price": p.price, "in_stock": True}
            following = t + int(rng.expovariate(1.0 / (_CATALOG_MEAN_GAP_DAYS * DAY_MS)))
        elif not self.in_stock:  # restocked
            self.in_stock = True
            fields = {"in_stock": True}
            following = t + int(rng.expovariate(1.0 / (_CATALOG_MEAN_GAP_DAYS * DAY_MS)))
        elif self.price != p.price:  # the sale ends: back to the list price
            self.price = p.price
            fields = {"price": p.price}
            following = t + int(rng.expovariate(1.0 / (_CATALOG_MEAN_GAP_DAYS * DAY_MS)))
        elif rng.random() < 0.5:  # sold out
            self.in_stock = False
            fields = {"in_stock": False}
            following = t + int(rng.uniform(*_OUT_OF_STOCK_DAYS) * DAY_MS)
        else:  # a sale
            cut = rng.uniform(*_SALE_CUT)
            self.price = max(0.49, round(p.price * (1 - cut), 1) - 0.01)
            fields = {"price": round(self.price, 2)}
            following = t + int(rng.uniform(*_SALE_DAYS) * DAY_MS)
        event: dict[str, Any] = {
            "event_id": f"cat-{p.product_id}-{self.changes:x}",
            "type": "product_updated",
            "ts": 0,  # stamped when it leaves the heap
            "product_id": p.product_id,
            "category": p.category,
            **fields,
        }
        return event, max(following, t + MIN_MS)


def birthday(rng: random.Random) -> str:
    """A birthday, "MM-DD" or "YYYY-MM-DD" (Feb 29 only in a leap year)."""
    day = date(2000, 1, 1) + timedelta(days=rng.randrange(366))  # 2000: a leap year
    if rng.random() >= _BIRTHDAY_WITH_YEAR:
        return f"{day.month:02d}-{day.day:02d}"
    year = rng.randrange(1950, 2009)
    if (day.month, day.day) == (2, 29):
        year -= year % 4  # 1952..2008: all leap years
    return f"{year}-{day.month:02d}-{day.day:02d}"
