"""The stored form of a user's order history (format 2, :mod:`triggers.state`).

A bought product (``history.products``) is stored as the index of its id among the
distinct product ids of the kept orders (in order of first appearance), and each of
its purchase times as the index of the order it equals (the id or time itself where
no kept order matches): the purchases mostly repeat the orders.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from triggers.state_records import Amount, Order, OrderHistory, ProductPurchases

_RECORD: dict[str, Any] = {"frozen": True, "array_like": True, "gc": False}

Ref = Annotated[int, msgspec.Meta(ge=0)]  # an index or code, never negative


class StoredPurchases(msgspec.Struct, **_RECORD):
    product_id: Ref | str
    category: str | None
    times: tuple[Ref | datetime, ...]


class StoredHistory(msgspec.Struct, **_RECORD):
    orders: tuple[Order, ...] = ()
    count: int = 0
    monetary: Amount = 0.0
    products: tuple[StoredPurchases, ...] = ()
    cancelled: tuple[str, ...] = ()


def store_history(history: OrderHistory) -> StoredHistory:
    orders = history.orders
    order_ts = [order.ts for order in orders]
    containing: dict[str, list[int]] = {}  # product id -> indexes of the orders with it
    for n, order in enumerate(orders):
        for product in order.products:
            if product in containing:
                containing[product].append(n)
            else:
                containing[product] = [n]
    ids = dict(zip(containing, range(len(containing)), strict=True))
    products = []
    for p in history.products:
        product_id: Ref | str = p.product_id
        times: tuple[Ref | datetime, ...] = p.times
        refs = containing.get(p.product_id)
        if refs is not None:  # its times are usually those of the orders with it: refer to them
            product_id = ids[p.product_id]
            k = min(len(times), len(refs))
            tail = refs[len(refs) - k :]
            if k and tuple(map(order_ts.__getitem__, tail)) == times[len(times) - k :]:
                times = (*times[: len(times) - k], *tail)
        products.append(StoredPurchases(product_id, p.category, times))
    return StoredHistory(
        orders, history.count, history.monetary, tuple(products), history.cancelled
    )


def load_history(stored: StoredHistory) -> OrderHistory:
    orders = stored.orders
    order_ts = [order.ts for order in orders]
    ids: dict[str, None] = {}
    for order in orders:
        for product in order.products:
            ids[product] = None
    names = list(ids)
    products = []
    for p in stored.products:
        product_id = p.product_id
        try:  # every time refers to an order (the usual case)
            times = tuple(map(order_ts.__getitem__, p.times))  # type: ignore[arg-type]
        except TypeError:
            times = tuple(order_ts[at] if type(at) is int else at for at in p.times)  # type: ignore[misc]
        products.append(
            ProductPurchases(
                product_id if type(product_id) is str else names[product_id],  # type: ignore[index]
                p.category,
                times,
            )
        )
    return OrderHistory(orders, stored.count, stored.monetary, tuple(products), stored.cancelled)


NO_STORED_HISTORY = StoredHistory()
