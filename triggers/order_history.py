"""Order history facts: orders, running totals, per-product purchases, cancellations.

Pure functions over :class:`~triggers.state.OrderHistory`. Bounded: the 32 most
recent orders, the 32 most recently bought products with their last 8
purchase times, the 16 most recently cancelled order ids. ``count`` and
``monetary`` are running totals over every order known, so they stay right
when old orders fall out of the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from triggers.events import OrderPlaced
from triggers.state import Order, OrderHistory, ProductPurchases, UserState

MAX_ORDERS = 32
MAX_PRODUCTS = 32
MAX_PURCHASES = 8
MAX_CANCELLED = 16


def last_order_at(history: OrderHistory) -> datetime | None:
    return history.orders[-1].ts if history.orders else None


def knows_order(history: OrderHistory, order_id: str) -> bool:
    """True if the order is in the window or was cancelled recently (a re-sent order)."""
    return order_id in history.cancelled or any(o.order_id == order_id for o in history.orders)


def find_order(history: OrderHistory, order_id: str) -> Order | None:
    for order in history.orders:
        if order.order_id == order_id:
            return order
    return None


def purchases_of(history: OrderHistory, product_id: str) -> ProductPurchases | None:
    for product in history.products:
        if product.product_id == product_id:
            return product
    return None


def mean_gap(times: Sequence[datetime]) -> timedelta | None:
    """Mean time between consecutive times (ascending); None for fewer than two."""
    if len(times) < 2:
        return None
    return (times[-1] - times[0]) / (len(times) - 1)


def add_order(history: OrderHistory, event: OrderPlaced) -> OrderHistory:
    """The history with one more order (the caller checks :func:`knows_order` first)."""
    categories: dict[str, str | None] = {}
    for line in event.items:
        if line.product_id not in categories or categories[line.product_id] is None:
            categories[line.product_id] = line.category
    order = Order(event.order_id, event.ts, event.total, tuple(categories))

    orders = history.orders
    if not orders or orders[-1].ts <= event.ts:
        orders = (*orders, order)
    else:
        orders = tuple(sorted((*orders, order), key=lambda o: o.ts))
    if len(orders) > MAX_ORDERS:
        orders = orders[-MAX_ORDERS:]

    products = list(history.products)
    for product_id, category in categories.items():
        current = purchases_of(history, product_id)
        if current is None:
            products.append(ProductPurchases(product_id, category, (event.ts,)))
            continue
        products.remove(current)
        times = tuple(sorted((*current.times, event.ts)))[-MAX_PURCHASES:]
        products.append(ProductPurchases(product_id, category or current.category, times))
    products.sort(key=lambda p: (p.times[-1], p.product_id))

    return OrderHistory(
        orders,
        history.count + 1,
        round(history.monetary + event.total, 6),
        tuple(products[-MAX_PRODUCTS:]),
        history.cancelled,
    )


def cancel_order(history: OrderHistory, order_id: str) -> tuple[OrderHistory, Order | None]:
    """Remove a known order from the history; returns the removed order (None if unknown).

    The id is remembered either way, so an ``order_placed`` that arrives after
    its cancellation is ignored.
    """
    cancelled = history.cancelled
    if order_id not in cancelled:
        cancelled = (*cancelled, order_id)[-MAX_CANCELLED:]
    order = find_order(history, order_id)
    if order is None:
        return OrderHistory(
            history.orders, history.count, history.monetary, history.products, cancelled
        ), None

    products = []
    for product in history.products:
        if product.product_id in order.products and order.ts in product.times:
            times = list(product.times)
            times.remove(order.ts)
            if not times:
                continue
            product = ProductPurchases(product.product_id, product.category, tuple(times))
        products.append(product)
    products.sort(key=lambda p: (p.times[-1], p.product_id))

    return OrderHistory(
        tuple(o for o in history.orders if o is not order),
        max(history.count - 1, 0),
        max(round(history.monetary - order.total, 6), 0.0),
        tuple(products),
        cancelled,
    ), order


def latest_order_placed(state: UserState) -> datetime | None:
    """The latest order_placed seen, cancelled or not: cart and views before it are history."""
    orders, emptied = state.history.orders, state.cart.emptied_at
    kept = orders[-1].ts if orders else None  # order_history.last_order_at, inline
    if kept is None or emptied is None:
        return kept or emptied
    return max(kept, emptied)
