"""Per-user state: the records (:mod:`triggers.state_records`) and their compact encoding.

Format 2: one format byte ``0x02``, then MessagePack (msgspec) of the state as
nested arrays in field order, times as msgpack timestamps. Triggers are small
integer codes from :data:`TRIGGER_CODES`, an append-only table independent of
``triggers.registry.TRIGGER_NAMES`` (a trigger not in it, such as a custom one
named by the rules file, is stored as its name). Where a value repeats one kept
elsewhere in the state, the stored form refers to it (see "encoding" below).
Format 1 (a JSON array, ``[1, ...]``) is still read (:mod:`triggers.state_format1`).
Layout and sizes: ``docs/engine.md`` ("State").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from triggers.records import Decision
from triggers.state_history import (
    NO_STORED_HISTORY,
    Ref,
    StoredHistory,
    load_history,
    store_history,
)
from triggers.state_records import (
    DIGEST_SIZE,
    EMPTY_CART,
    EMPTY_HISTORY,
    MAX_CART_LINES,
    MAX_CONSENT,
    MAX_SEEN,
    NO_CONTACTS,
    RECENT_ADDS,
    TRIGGER_BY_CODE,
    TRIGGER_CODES,
    Amount,
    Attributable,
    Cart,
    CartLine,
    ChannelContacts,
    Consent,
    ContactLog,
    Order,
    OrderHistory,
    Pending,
    Preferences,
    ProductPurchases,
    UserState,
    View,
    event_digest,
    has_seen,
    remember,
)

__all__ = [
    "DIGEST_SIZE",
    "EMPTY_CART",
    "EMPTY_HISTORY",
    "MAX_CART_LINES",
    "MAX_CONSENT",
    "MAX_SEEN",
    "NO_CONTACTS",
    "RECENT_ADDS",
    "STATE_FORMAT",
    "TRIGGER_BY_CODE",
    "TRIGGER_CODES",
    "Amount",
    "Attributable",
    "Cart",
    "CartLine",
    "ChannelContacts",
    "Consent",
    "ContactLog",
    "Order",
    "OrderHistory",
    "Pending",
    "Preferences",
    "ProductPurchases",
    "UserState",
    "View",
    "decode_state",
    "encode_state",
    "event_digest",
    "has_seen",
    "remember",
]

STATE_FORMAT = 2


_RECORD: dict[str, Any] = {"frozen": True, "array_like": True, "gc": False}

# --- encoding ----------------------------------------------------------------------------
# The stored layout is UserState's, field for field, except that it refers where it can:
# - a trigger is TRIGGER_CODES[name] (or the name itself if it has no code);
# - a bought product's id is its index among the distinct product ids of the kept orders
#   (in order of first appearance), and each purchase time the index of the order it
#   equals (in history.products; the id or time itself if there is no such order);
# - a pending stage's anchor is one of _ANCHORS (0 last activity, 1 cart activity,
#   2 latest view, 3 latest order) when it equals it, and send_at None if it is the due time;
# - a contact time in last_by_trigger / attributable is its index in contacts.recent;
# - the attributable decision's arm is [arm, variant] when it has an A/B variant.
# Fields are only ever appended, with defaults, so a shorter (older) array still decodes.

TriggerRef = Ref | str


class _Pending(msgspec.Struct, **_RECORD):
    trigger: TriggerRef
    stage: int
    key: str
    anchor: Ref | datetime
    due: datetime
    send_at: datetime | None
    subject: str | None


class _Attributable(msgspec.Struct, **_RECORD):
    trigger_id: str
    trigger: TriggerRef
    # (arm, variant) when the decision has an A/B variant, (arm, variant, channel) with a channel
    arm: str | tuple[str | None, ...]
    fired_at: Ref | datetime


class _Contacts(msgspec.Struct, **_RECORD):
    recent: tuple[datetime, ...] = ()
    last_by_trigger: tuple[tuple[TriggerRef, Ref | datetime], ...] = ()
    attributable: _Attributable | None = None


_NO_CONTACTS = _Contacts()
_NO_SECTION_8 = ((), (), None, None)


class _StateBase(msgspec.Struct, **_RECORD):
    user_id: str
    seen: bytes = b""
    last_activity: datetime | None = None
    prefs: Preferences | None = None
    cart: Cart = EMPTY_CART
    history: StoredHistory = NO_STORED_HISTORY
    viewed: View | None = None
    pending: tuple[_Pending, ...] = ()
    contacts: _Contacts = _NO_CONTACTS
    dormancy_key: str | None = None
    dormancy_stage: int = 0
    dormancy_send_at: datetime | None = None
    held: tuple[Decision, ...] = ()


class _State(_StateBase, **_RECORD):
    """The stored state; a state without contract 8's fields is stored as a _StateBase."""

    consent: tuple[Consent, ...] = ()
    channel_contacts: tuple[ChannelContacts, ...] = ()
    erased_at: datetime | None = None
    touched_at: datetime | None = None


# The live worker decodes a state, steps it and encodes the result, whose history and
# contacts are most often the very objects decoding made (they change on orders and
# contacts only): the stored form of the latest of each is kept, keyed by identity (the
# memo holds the object, so its id cannot be reused), and encoding reuses it.
_history_memo: list[tuple[OrderHistory, StoredHistory]] = [(EMPTY_HISTORY, NO_STORED_HISTORY)]
_contacts_memo: list[tuple[ContactLog, _Contacts]] = [(NO_CONTACTS, _NO_CONTACTS)]

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


def _anchors(state: UserState | _State, history: OrderHistory) -> list[datetime | None]:
    viewed = state.viewed
    return [
        state.last_activity,
        state.cart.updated_at,
        None if viewed is None else viewed.ts,
        history.orders[-1].ts if history.orders else None,
    ]


def encode_state(state: UserState) -> bytes:
    """Compact, deterministic bytes for a state (see the module docstring)."""
    history = state.history
    memo = _history_memo[0]
    if history is memo[0]:
        stored_history = memo[1]
    elif history == EMPTY_HISTORY:
        stored_history = NO_STORED_HISTORY
    else:
        stored_history = store_history(history)
        _history_memo[0] = (history, stored_history)
    pending = state.pending
    if pending:
        anchors = _anchors(state, history)  # (datetimes are compared, never hashed: slow)
        pending = tuple(
            _Pending(
                _code(p.trigger, p.trigger),
                p.stage,
                p.key,
                anchors.index(p.anchor) if p.anchor in anchors else p.anchor,
                p.due,
                None if p.send_at == p.due else p.send_at,
                p.subject,
            )
            for p in pending
        )
    contacts = state.contacts
    memo = _contacts_memo[0]
    if contacts is memo[0]:
        stored_contacts = memo[1]
    elif contacts == NO_CONTACTS:
        stored_contacts = _NO_CONTACTS
    else:
        stored_contacts = _store_contacts(contacts)
        _contacts_memo[0] = (contacts, stored_contacts)
    section_8 = (state.consent, state.channel_contacts, state.erased_at, state.touched_at)
    return _FORMAT_BYTE + _encode(
        (_State if section_8 != _NO_SECTION_8 else _StateBase)(
            state.user_id,
            state.seen,
            state.last_activity,
            state.prefs,
            state.cart,
            stored_history,
            state.viewed,
            pending,  # type: ignore[arg-type]
            stored_contacts,
            state.dormancy_key,
            state.dormancy_stage,
            state.dormancy_send_at,
            state.held,
            *(section_8 if section_8 != _NO_SECTION_8 else ()),
        )
    )


def _store_contacts(contacts: ContactLog) -> _Contacts:
    recent = contacts.recent
    attributable = contacts.attributable
    last = tuple(
        (_code(name, name), recent.index(at) if at in recent else at)
        for name, at in contacts.last_by_trigger
    )
    if attributable is None:
        return _Contacts(recent, last)
    fired_at = attributable.fired_at
    return _Contacts(
        recent,
        last,
        _Attributable(
            attributable.trigger_id,
            _code(attributable.trigger, attributable.trigger),
            _stored_arm(attributable),
            recent.index(fired_at) if fired_at in recent else fired_at,
        ),
    )


def decode_state(data: bytes) -> UserState:
    """Inverse of :func:`encode_state` (and reader of format 1); ``ValueError`` otherwise."""
    head = data[:1]
    if head == _FORMAT_BYTE:
        try:
            return _from_stored(_decode(memoryview(data)[1:]))
        except (msgspec.DecodeError, LookupError, TypeError) as exc:
            raise ValueError(f"corrupt user state: {exc!r}") from None
    if head == b"[":
        from triggers.state_format1 import decode_format1

        return decode_format1(data)
    raise ValueError("unknown state format")


def _from_stored(stored: _State) -> UserState:
    history = EMPTY_HISTORY
    if stored.history != NO_STORED_HISTORY:
        history = load_history(stored.history)
        _history_memo[0] = (history, stored.history)
    pending: list[Pending] = []
    if stored.pending:
        anchors = _anchors(stored, history)
        for p in stored.pending:
            anchor = p.anchor
            if type(anchor) is int:
                anchor = anchors[anchor]
                if anchor is None:
                    raise ValueError("corrupt user state: a stage anchored to a missing time")
            due = p.due
            send_at = p.send_at
            pending.append(
                Pending(
                    _name(p.trigger),
                    p.stage,
                    p.key,
                    anchor,  # type: ignore[arg-type]
                    due,
                    due if send_at is None else send_at,
                    p.subject,
                )
            )
    contacts = stored.contacts
    log = NO_CONTACTS
    if contacts != _NO_CONTACTS:
        log = _load_contacts(contacts)
        _contacts_memo[0] = (log, contacts)
    return UserState(
        stored.user_id,
        stored.seen,
        stored.last_activity,
        stored.prefs,
        stored.cart,
        history,
        stored.viewed,
        tuple(pending),
        log,
        stored.dormancy_key,
        stored.dormancy_stage,
        stored.dormancy_send_at,
        stored.held,
        stored.consent,
        stored.channel_contacts,
        stored.erased_at,
        stored.touched_at,
    )


def _load_contacts(stored: _Contacts) -> ContactLog:
    recent = stored.recent
    attributable = stored.attributable
    arm, variant, channel = "", None, None
    if attributable is not None:
        stored_arm = attributable.arm
        if type(stored_arm) is str:
            arm = stored_arm
        else:
            arm, variant, channel = (*stored_arm, None)[:3]  # type: ignore[assignment]
    return ContactLog(
        recent,
        tuple(
            (_name(ref), recent[at] if type(at) is int else at)  # type: ignore[misc]
            for ref, at in stored.last_by_trigger
        ),
        None
        if attributable is None
        else Attributable(
            attributable.trigger_id,
            _name(attributable.trigger),
            arm,
            recent[attributable.fired_at]  # type: ignore[index]
            if type(attributable.fired_at) is int
            else attributable.fired_at,
            variant,
            channel,
        ),
    )


def _stored_arm(attributable: Attributable) -> str | tuple[str | None, ...]:
    if attributable.channel is not None:
        return (attributable.arm, attributable.variant, attributable.channel)
    if attributable.variant is not None:
        return (attributable.arm, attributable.variant)
    return attributable.arm
