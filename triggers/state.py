"""Per-user state: what the triggers and the contact policy remember, and its compact encoding.

Every record is a frozen ``msgspec.Struct`` (compared and hashed by value); the
engine returns a new ``UserState`` and never mutates one. History is bounded, so
a state never grows without limit:

- ``seen``: the 256 most recent event ids, as 8-byte BLAKE2b digests in one
  ``bytes`` (oldest first);
- ``cart.lines``: at most :data:`MAX_CART_LINES` (50) lines; adding a new product
  to a full cart drops its oldest line (the first added), a bound no real
  cart reaches and that keeps a bot's cart from growing the state;
- ``cart.added``: the :data:`RECENT_ADDS` (8) most recently added products;
- ``history.orders``: the 32 most recent orders (running ``count`` and
  ``monetary`` totals cover older ones too);
- ``history.products``: the 32 most recently bought products, the last 8
  purchase times each;
- ``history.cancelled``: the 16 most recently cancelled order ids;
- ``contacts``: contact times inside the frequency-cap window, the last contact
  per trigger (cooldown) and the one decision a next order can convert;
- ``held``: decisions reached while the outside facts could not be asked
  (see :mod:`triggers.held`).

Encoding (format 2): one format byte ``0x02``, then MessagePack (msgspec) of the
state as nested arrays in field order; times are msgpack timestamps; triggers
are small integer codes from :data:`TRIGGER_CODES`, an append-only table (a
trigger not in it, such as a custom one named by the rules file, is stored as
its name). Format 1 (a JSON array, ``[1, ...]``) is still read
(:mod:`triggers.state_format1`). Layout and sizes: ``docs/engine.md`` ("State").
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import msgspec

from triggers.records import Decision

STATE_FORMAT = 2
MAX_SEEN = 256
DIGEST_SIZE = 8
MAX_CART_LINES = 50
RECENT_ADDS = 8

# Stored states name triggers by these codes. APPEND ONLY: never reorder, renumber or
# remove an entry (stored states would change meaning); a new trigger gets the next code.
TRIGGER_CODES: dict[str, int] = {
    "cart_abandonment": 0,
    "browse_abandonment": 1,
    "replenishment": 2,
    "first_purchase_followup": 3,
    "lapsing": 4,
    "dormancy": 5,
}
TRIGGER_BY_CODE: dict[int, str] = {code: name for name, code in TRIGGER_CODES.items()}

_RECORD: dict[str, Any] = {"frozen": True, "array_like": True, "gc": False}

Amount = int | float  # an integer amount stays an integer (triggers.event_fields.read_amount)


class CartLine(msgspec.Struct, **_RECORD):
    product_id: str
    quantity: int
    unit_price: Amount | None = None
    category: str | None = None


class Cart(msgspec.Struct, **_RECORD):
    lines: tuple[CartLine, ...] = ()  # at most MAX_CART_LINES, in the order first added
    updated_at: datetime | None = None  # latest cart activity (event time)
    checkout: bool = False  # checkout started since the cart was last emptied
    # (product_id, latest add time) of the last RECENT_ADDS products added, even if removed
    # since: a view that arrives late, older than an add of its product, arms nothing.
    added: tuple[tuple[str, datetime], ...] = ()
    # The latest order_placed ever seen, even if cancelled since: it emptied the cart then,
    # so cart events not later than it are history whatever order they arrive in.
    emptied_at: datetime | None = None


class Order(msgspec.Struct, **_RECORD):
    order_id: str
    ts: datetime
    total: Amount
    products: tuple[str, ...]  # distinct product ids, in line order


class ProductPurchases(msgspec.Struct, **_RECORD):
    product_id: str
    category: str | None
    times: tuple[datetime, ...]  # ascending, at most 8, one per order


class OrderHistory(msgspec.Struct, **_RECORD):
    orders: tuple[Order, ...] = ()  # ascending by time, at most 32
    count: int = 0  # every order known and not cancelled, including those beyond `orders`
    monetary: Amount = 0.0  # their total value
    products: tuple[ProductPurchases, ...] = ()  # most recently bought last, at most 32
    cancelled: tuple[str, ...] = ()  # recently cancelled order ids, at most 16


class Preferences(msgspec.Struct, **_RECORD):
    opt_in: bool | None = None  # None: never said; only False opts out
    opt_in_at: datetime | None = None
    timezone: str | None = None  # IANA name
    timezone_at: datetime | None = None


class View(msgspec.Struct, **_RECORD):
    """The latest product view (browse abandonment's subject)."""

    product_id: str
    category: str | None
    price: Amount | None
    ts: datetime


class Pending(msgspec.Struct, **_RECORD):
    """One scheduled stage of one episode."""

    trigger: str
    stage: int  # 1-based
    key: str  # the episode key: event id of the arming event (+ product id)
    anchor: datetime  # the event time the stage delays count from
    due: datetime
    send_at: datetime  # the due time, or the end of quiet hours after a deferral
    subject: str | None = None  # product id (replenishment) or order id (first purchase)


class Attributable(msgspec.Struct, **_RECORD):
    """The most recent sent/holdout decision, until an order converts it."""

    trigger_id: str
    trigger: str
    arm: str  # treatment | holdout
    fired_at: datetime


class ContactLog(msgspec.Struct, **_RECORD):
    recent: tuple[datetime, ...] = ()  # sent/holdout times inside the frequency window
    last_by_trigger: tuple[tuple[str, datetime], ...] = ()  # latest contact per trigger
    attributable: Attributable | None = None


EMPTY_CART = Cart()
EMPTY_HISTORY = OrderHistory()
NO_CONTACTS = ContactLog()


class UserState(msgspec.Struct, **_RECORD):
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
    # Decisions reached while the outside facts could not be asked (triggers.held).
    held: tuple[Decision, ...] = ()


# --- encoding ----------------------------------------------------------------------------
# The stored layout is UserState's, field for field, except where a trigger is named:
# there it holds TRIGGER_CODES[name] (or the name itself), and a pending stage's send_at
# is None when it equals its due time. New fields are only ever appended, with defaults,
# so a shorter (older) array still decodes.

TriggerRef = int | str


class _Pending(msgspec.Struct, **_RECORD):
    trigger: TriggerRef
    stage: int
    key: str
    anchor: datetime
    due: datetime
    send_at: datetime | None  # None: the due time
    subject: str | None


class _Attributable(msgspec.Struct, **_RECORD):
    trigger_id: str
    trigger: TriggerRef
    arm: str
    fired_at: datetime


class _Contacts(msgspec.Struct, **_RECORD):
    recent: tuple[datetime, ...] = ()
    last_by_trigger: tuple[tuple[TriggerRef, datetime], ...] = ()
    attributable: _Attributable | None = None


_NO_STORED_CONTACTS = _Contacts()


class _State(msgspec.Struct, **_RECORD):
    user_id: str
    seen: bytes = b""
    last_activity: datetime | None = None
    prefs: Preferences | None = None
    cart: Cart = EMPTY_CART
    history: OrderHistory = EMPTY_HISTORY
    viewed: View | None = None
    pending: tuple[_Pending, ...] = ()
    contacts: _Contacts = _NO_STORED_CONTACTS
    dormancy_key: str | None = None
    dormancy_stage: int = 0
    dormancy_send_at: datetime | None = None
    held: tuple[Decision, ...] = ()


_FORMAT_BYTE = STATE_FORMAT.to_bytes(1, "big")
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_State).decode
_code = TRIGGER_CODES.get


def _name(ref: TriggerRef) -> str:
    if type(ref) is str:
        return ref
    name = TRIGGER_BY_CODE.get(ref)  # type: ignore[arg-type]
    if name is None:
        raise ValueError(f"corrupt user state: unknown trigger code {ref}")
    return name


def encode_state(state: UserState) -> bytes:
    """Compact, deterministic bytes for a state (see the module docstring)."""
    contacts = state.contacts
    if contacts is NO_CONTACTS:
        stored_contacts = _NO_STORED_CONTACTS
    else:
        attributable = contacts.attributable
        stored_contacts = _Contacts(
            contacts.recent,
            tuple((_code(name, name), at) for name, at in contacts.last_by_trigger),
            None
            if attributable is None
            else _Attributable(
                attributable.trigger_id,
                _code(attributable.trigger, attributable.trigger),
                attributable.arm,
                attributable.fired_at,
            ),
        )
    stored = _State(
        state.user_id,
        state.seen,
        state.last_activity,
        state.prefs,
        state.cart,
        state.history,
        state.viewed,
        tuple(
            _Pending(
                _code(p.trigger, p.trigger),
                p.stage,
                p.key,
                p.anchor,
                p.due,
                None if p.send_at == p.due else p.send_at,
                p.subject,
            )
            for p in state.pending
        ),
        stored_contacts,
        state.dormancy_key,
        state.dormancy_stage,
        state.dormancy_send_at,
        state.held,
    )
    return _FORMAT_BYTE + _encode(stored)


def decode_state(data: bytes) -> UserState:
    """Inverse of :func:`encode_state` (and reader of format 1); ``ValueError`` otherwise."""
    head = data[:1]
    if head == _FORMAT_BYTE:
        try:
            stored = _decode(memoryview(data)[1:])
        except msgspec.DecodeError as exc:
            raise ValueError(f"corrupt user state: {exc}") from None
        return _from_stored(stored)
    if head == b"[":
        from triggers.state_format1 import decode_format1

        return decode_format1(data)
    raise ValueError("unknown state format")


def _from_stored(stored: _State) -> UserState:
    contacts = stored.contacts
    if contacts == _NO_STORED_CONTACTS:
        log = NO_CONTACTS
    else:
        attributable = contacts.attributable
        log = ContactLog(
            contacts.recent,
            tuple((_name(ref), at) for ref, at in contacts.last_by_trigger),
            None
            if attributable is None
            else Attributable(
                attributable.trigger_id,
                _name(attributable.trigger),
                attributable.arm,
                attributable.fired_at,
            ),
        )
    return UserState(
        stored.user_id,
        stored.seen,
        stored.last_activity,
        stored.prefs,
        stored.cart,
        stored.history,
        stored.viewed,
        tuple(
            Pending(
                _name(p.trigger),
                p.stage,
                p.key,
                p.anchor,
                p.due,
                p.due if p.send_at is None else p.send_at,
                p.subject,
            )
            for p in stored.pending
        ),
        log,
        stored.dormancy_key,
        stored.dormancy_stage,
        stored.dormancy_send_at,
        stored.held,
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
