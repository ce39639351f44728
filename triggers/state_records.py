"""Per-user state records: what the triggers and the contact policy remember, bounded.

Every record is a frozen ``msgspec.Struct`` (compared and hashed by value,
encoded as an array); the engine returns a new ``UserState`` and never mutates
one. Import them from :mod:`triggers.state`, which also encodes them. History is
bounded, so a state never grows without limit:

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
  (see :mod:`triggers.held`);
- ``consent``: per-channel answers (contract 8.1, 8.3), at most
  :data:`MAX_CONSENT` channels (the least recently changed one goes first);
- ``channel_contacts``: contact times inside their channel's own frequency window,
  kept only for channels with a cap of their own;
- ``erased_at``: the erasure memory (contract 8.5); ``touched_at``: the later of the
  last event and the last decision, kept only when the rules set a ``retention``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import msgspec

from triggers.records import Decision

# Stored states name triggers by these codes. APPEND ONLY: never reorder, renumber or
# remove an entry (stored states would change meaning); a new trigger gets the next code.
TRIGGER_CODES: dict[str, int] = {
    "cart_abandonment": 0,
    "browse_abandonment": 1,
    "replenishment": 2,
    "first_purchase_followup": 3,
    "lapsing": 4,
    "dormancy": 5,
    "birthday": 6,
    "back_in_stock": 7,
    "price_drop": 8,
}
TRIGGER_BY_CODE: dict[int, str] = {code: name for name, code in TRIGGER_CODES.items()}

MAX_SEEN = 256
DIGEST_SIZE = 8
MAX_CART_LINES = 50
RECENT_ADDS = 8
MAX_CONSENT = 64

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
    variant: str | None = None  # the decision's A/B variant (a conversion carries it)
    channel: str | None = None  # the decision's channel (a conversion carries it)


class ContactLog(msgspec.Struct, **_RECORD):
    recent: tuple[datetime, ...] = ()  # sent/holdout times inside the frequency window
    last_by_trigger: tuple[tuple[str, datetime], ...] = ()  # latest contact per trigger
    attributable: Attributable | None = None


class Consent(msgspec.Struct, **_RECORD):
    """What one channel's consent is made of (contract 8.1, 8.3, 8.7)."""

    channel: str
    answer: bool | None = None  # the latest preferences_updated.channels answer (event time)
    answer_at: datetime | None = None
    withdrawn_at: datetime | None = None  # the latest feedback that set it false


class ChannelContacts(msgspec.Struct, **_RECORD):
    """Contacts on one channel inside its own frequency window (a channel with a cap)."""

    channel: str
    times: tuple[datetime, ...] = ()


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
    # Contract section 8 (appended: a state that uses none of it is stored as before).
    consent: tuple[Consent, ...] = ()  # per channel, least recently changed first
    channel_contacts: tuple[ChannelContacts, ...] = ()
    erased_at: datetime | None = None  # erasure memory: events not later than it are ignored
    touched_at: datetime | None = None  # later of last event and decision (retention only)


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
