"""Per-user state: what the triggers and the contact policy remember, and its compact encoding.

Everything is a frozen dataclass; the engine returns a new ``UserState`` and
never mutates one. History is bounded, so a state never grows without limit:

- ``seen``: the 256 most recent event ids, as 8-byte BLAKE2b digests in one
  ``bytes`` (oldest first);
- ``history.orders``: the 32 most recent orders (running ``count`` and
  ``monetary`` totals cover older ones too);
- ``history.products``: the 32 most recently bought products, the last 8
  purchase times each;
- ``history.cancelled``: the 16 most recently cancelled order ids;
- ``contacts``: contact times inside the frequency-cap window, the last contact
  per trigger (cooldown) and the one decision a next order can convert.

``encode_state`` writes a versioned JSON array (orjson) with times as epoch
milliseconds and trigger names as small indexes; ``decode_state`` reads it back
to an equal ``UserState``. A typical user with about ten events encodes to a
few hundred bytes.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime

import orjson

from triggers.frozen import frozen_record
from triggers.records import TRIGGER_NAMES
from triggers.timestamps import from_millis, to_millis

STATE_FORMAT = 1
MAX_SEEN = 256
DIGEST_SIZE = 8

_TRIGGER_INDEX = {name: index for index, name in enumerate(TRIGGER_NAMES)}


@frozen_record
class CartLine:
    product_id: str
    quantity: int
    unit_price: float | None = None
    category: str | None = None


@frozen_record
class Cart:
    lines: tuple[CartLine, ...] = ()
    updated_at: datetime | None = None  # latest cart activity (event time)
    checkout: bool = False  # checkout started since the cart was last emptied
    # (product_id, latest add time) of the last RECENT_ADDS products added, even if removed
    # since: a view that arrives late, older than an add of its product, arms nothing.
    added: tuple[tuple[str, datetime], ...] = ()
    # The latest order_placed ever seen, even if cancelled since: it emptied the cart then,
    # so cart events not later than it are history whatever order they arrive in.
    emptied_at: datetime | None = None


RECENT_ADDS = 8


@frozen_record
class Order:
    order_id: str
    ts: datetime
    total: float
    products: tuple[str, ...]  # distinct product ids, in line order


@frozen_record
class ProductPurchases:
    product_id: str
    category: str | None
    times: tuple[datetime, ...]  # ascending, at most 8, one per order


@frozen_record
class OrderHistory:
    orders: tuple[Order, ...] = ()  # ascending by time, at most 32
    count: int = 0  # every order known and not cancelled, including those beyond `orders`
    monetary: float = 0.0  # their total value
    products: tuple[ProductPurchases, ...] = ()  # most recently bought last, at most 32
    cancelled: tuple[str, ...] = ()  # recently cancelled order ids, at most 16


@frozen_record
class Preferences:
    opt_in: bool | None = None  # None: never said; only False opts out
    opt_in_at: datetime | None = None
    timezone: str | None = None  # IANA name
    timezone_at: datetime | None = None


@frozen_record
class View:
    """The latest product view (browse abandonment's subject)."""

    product_id: str
    category: str | None
    price: float | None
    ts: datetime


@frozen_record
class Pending:
    """One scheduled stage of one episode."""

    trigger: str
    stage: int  # 1-based
    key: str  # the episode key: event id of the arming event (+ product id)
    anchor: datetime  # the event time the stage delays count from
    due: datetime
    send_at: datetime  # the due time, or the end of quiet hours after a deferral
    subject: str | None = None  # product id (replenishment) or order id (first purchase)


@frozen_record
class Attributable:
    """The most recent sent/holdout decision, until an order converts it."""

    trigger_id: str
    trigger: str
    arm: str  # treatment | holdout
    fired_at: datetime


@frozen_record
class ContactLog:
    recent: tuple[datetime, ...] = ()  # sent/holdout times inside the frequency window
    last_by_trigger: tuple[tuple[str, datetime], ...] = ()  # latest contact per trigger
    attributable: Attributable | None = None


EMPTY_CART = Cart()
EMPTY_HISTORY = OrderHistory()
NO_CONTACTS = ContactLog()


@frozen_record
class UserState:
    user_id: str
    seen: bytes = b""  # 8-byte digests of recent event ids, oldest first
    last_activity: datetime | None = None  # latest event time of any valid event
    prefs: Preferences | None = None
    cart: Cart = EMPTY_CART
    history: OrderHistory = EMPTY_HISTORY
    viewed: View | None = None
    pending: tuple[Pending, ...] = ()  # scheduled stages of cart, browse, replenishment, ...
    contacts: ContactLog = NO_CONTACTS
    # The dormancy episode, inline because every event re-arms it (see triggers.dormancy):
    dormancy_key: str | None = None  # episode key (event id of the arming event)
    dormancy_stage: int = 0  # next stage to fire, 0 = nothing pending
    dormancy_send_at: datetime | None = None  # set when quiet hours deferred that stage


# --- encoding ----------------------------------------------------------------------------


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else to_millis(moment)


def _dt(millis: int | None) -> datetime | None:
    return None if millis is None else from_millis(millis)


def encode_state(state: UserState) -> bytes:
    """Compact, deterministic bytes for a state (see the module docstring)."""
    prefs = state.prefs
    cart = state.cart
    history = state.history
    viewed = state.viewed
    contacts = state.contacts
    attributable = contacts.attributable
    return orjson.dumps(
        [
            STATE_FORMAT,
            state.user_id,
            base64.b64encode(state.seen).decode("ascii"),
            _ms(state.last_activity),
            None
            if prefs is None
            else [prefs.opt_in, _ms(prefs.opt_in_at), prefs.timezone, _ms(prefs.timezone_at)],
            None
            if cart is EMPTY_CART or cart == EMPTY_CART
            else [
                [[ln.product_id, ln.quantity, ln.unit_price, ln.category] for ln in cart.lines],
                _ms(cart.updated_at),
                cart.checkout,
                [[product, to_millis(at)] for product, at in cart.added],
                _ms(cart.emptied_at),
            ],
            None
            if history == EMPTY_HISTORY
            else [
                [[o.order_id, to_millis(o.ts), o.total, o.products] for o in history.orders],
                history.count,
                history.monetary,
                [
                    [p.product_id, p.category, [to_millis(t) for t in p.times]]
                    for p in history.products
                ],
                history.cancelled,
            ],
            None
            if viewed is None
            else [viewed.product_id, viewed.category, viewed.price, to_millis(viewed.ts)],
            [
                [
                    _TRIGGER_INDEX[p.trigger],
                    p.stage,
                    p.key,
                    to_millis(p.anchor),
                    to_millis(p.due),
                    None if p.send_at == p.due else to_millis(p.send_at),
                    p.subject,
                ]
                for p in state.pending
            ],
            None
            if contacts == NO_CONTACTS
            else [
                [to_millis(t) for t in contacts.recent],
                [[_TRIGGER_INDEX[name], to_millis(t)] for name, t in contacts.last_by_trigger],
                None
                if attributable is None
                else [
                    attributable.trigger_id,
                    _TRIGGER_INDEX[attributable.trigger],
                    attributable.arm,
                    to_millis(attributable.fired_at),
                ],
            ],
            None
            if state.dormancy_stage == 0
            else [state.dormancy_key, state.dormancy_stage, _ms(state.dormancy_send_at)],
        ]
    )


def decode_state(data: bytes) -> UserState:
    """Inverse of :func:`encode_state`; raises ``ValueError`` on anything else."""
    try:
        fields = orjson.loads(data)
        if not isinstance(fields, list) or not fields or fields[0] != STATE_FORMAT:
            raise ValueError("unknown state format")
        (
            _,
            user_id,
            seen,
            last_activity,
            prefs,
            cart,
            history,
            viewed,
            pending,
            contacts,
            dormancy,
        ) = fields
        dormancy_key, dormancy_stage, dormancy_send_at = dormancy or (None, 0, None)
        return UserState(
            user_id=user_id,
            seen=base64.b64decode(seen),
            last_activity=_dt(last_activity),
            prefs=None if prefs is None else _decode_prefs(prefs),
            cart=EMPTY_CART if cart is None else _decode_cart(cart),
            history=EMPTY_HISTORY if history is None else _decode_history(history),
            viewed=None
            if viewed is None
            else View(viewed[0], viewed[1], viewed[2], from_millis(viewed[3])),
            pending=tuple(_decode_pending(item) for item in pending),
            contacts=NO_CONTACTS if contacts is None else _decode_contacts(contacts),
            dormancy_key=dormancy_key,
            dormancy_stage=dormancy_stage,
            dormancy_send_at=_dt(dormancy_send_at),
        )
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"corrupt user state: {exc!r}") from None


def _decode_prefs(item: list) -> Preferences:
    opt_in, opt_in_at, zone, zone_at = item
    return Preferences(opt_in, _dt(opt_in_at), zone, _dt(zone_at))


def _decode_cart(item: list) -> Cart:
    lines, updated_at, checkout, *rest = item  # older states have fewer fields
    added = tuple((product, from_millis(at)) for product, at in rest[0]) if rest else ()
    emptied_at = _dt(rest[1]) if len(rest) > 1 else None
    return Cart(
        tuple(CartLine(*line) for line in lines), _dt(updated_at), checkout, added, emptied_at
    )


def _decode_history(item: list) -> OrderHistory:
    orders, count, monetary, products, cancelled = item
    return OrderHistory(
        tuple(Order(o[0], from_millis(o[1]), o[2], tuple(o[3])) for o in orders),
        count,
        monetary,
        tuple(ProductPurchases(p[0], p[1], tuple(from_millis(t) for t in p[2])) for p in products),
        tuple(cancelled),
    )


def _decode_pending(item: list) -> Pending:
    trigger, stage, key, anchor, due, send_at, subject = item
    due_at = from_millis(due)
    return Pending(
        TRIGGER_NAMES[trigger],
        stage,
        key,
        from_millis(anchor),
        due_at,
        due_at if send_at is None else from_millis(send_at),
        subject,
    )


def _decode_contacts(item: list) -> ContactLog:
    recent, last_by_trigger, attributable = item
    return ContactLog(
        tuple(from_millis(t) for t in recent),
        tuple((TRIGGER_NAMES[name], from_millis(t)) for name, t in last_by_trigger),
        None
        if attributable is None
        else Attributable(
            attributable[0],
            TRIGGER_NAMES[attributable[1]],
            attributable[2],
            from_millis(attributable[3]),
        ),
    )


# --- event-id memory ---------------------------------------------------------------------


def event_digest(event_id: str) -> bytes:
    """The 8-byte BLAKE2b digest under which an event id is remembered."""
    return hashlib.blake2b(event_id.encode(), digest_size=DIGEST_SIZE).digest()


def has_seen(seen: bytes, digest: bytes) -> bool:
    """True if ``digest`` (8 bytes) is one of the remembered event-id digests."""
    index = seen.find(digest)
    while index != -1:
        if index % DIGEST_SIZE == 0:
            return True
        index = seen.find(digest, index + 1)
    return False


def remember(seen: bytes, digest: bytes) -> bytes:
    """Append a digest, keeping the most recent :data:`MAX_SEEN`."""
    if len(seen) >= MAX_SEEN * DIGEST_SIZE:
        return seen[DIGEST_SIZE - MAX_SEEN * DIGEST_SIZE :] + digest
    return seen + digest
