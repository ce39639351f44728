"""The catalog fan-out's internal messages and rows (``docs/protocol.md``, "Catalog fan-out").

Two internal topics, both created with the input topics' partition count:

- ``nudge.interest``, keyed by product: :class:`Interest` (a view, cart add or wishlist
  of a product by a user, or an order of it, which removes interest) written by the user
  side when it reads an event, :class:`Forget` (an erasure, when read; a retention
  expiry, when applied) and :class:`Mark` (a user partition's input watermark: all its
  interest up to ``ms`` is written), both written to every partition.
- ``nudge.catalog-fanout``, sent to the recipients' partition: :class:`Changes` (one
  catalog event as it concerns up to :data:`CHANGES_PER_MESSAGE` users of one partition;
  :class:`Change`, one user, keyed by the user, is the shape before it, still read) and
  :class:`Mark` (a product partition's fan-out watermark: every fan-out message earlier
  than ``ms`` is written) written to every partition.

A record lands on the partition the shop's producers give its key (Kafka's default
partitioner, murmur2), so an interest record meets its product's ``shop.catalog`` events
and a fan-out message its user's events. Values are msgpack.

The products table (the product side's state, :mod:`stream.catalog_side`) has four kinds
of rows, so that a product's interested users are a prefix scan, never one big row:
``p<US>product`` (:class:`ProductRow`), ``i<US>product<US>user`` (:class:`InterestRow`),
``a<US>product<US>user`` (the time the user was last armed for the product), and
``e<US>partition<US>user`` (:class:`ForgetRow`: a user erased or expired, whose rows the
sweep deletes).
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from aiokafka.partitioner import murmur2

from triggers.catalog import CatalogChanged
from triggers.events import CartItemAdded, Event, OrderPlaced, ProductViewed, WishlistAdded

SEP = "\x1f"
SEEN_PER_PRODUCT = 64  # catalog event ids remembered per product (re-deliveries)


class Interest(msgspec.Struct, frozen=True, tag="i", array_like=True):
    product_id: str
    user_id: str
    ts: datetime
    price: int | float | None = None
    order: bool = False  # an order of the product: removes interest up to ts


class Mark(msgspec.Struct, frozen=True, tag="m", array_like=True):
    source: int  # the partition that wrote it
    ms: int  # its watermark (epoch ms)


class Change(msgspec.Struct, frozen=True, tag="c", array_like=True):
    source: int  # the product partition that wrote it
    change: CatalogChanged


class Changes(msgspec.Struct, frozen=True, tag="C", array_like=True):
    """One catalog event's changes for several users of one partition, in order (sent to
    that partition, keyed by its first user)."""

    source: int  # the product partition that wrote it
    changes: list[CatalogChanged]


#: Users per :class:`Changes` message (~130 bytes each with short ids: ~65 KB)...
CHANGES_PER_MESSAGE = 500
#: ...and about this many bytes at most (long ids), well under Kafka's 1 MB default;
#: a change counts its ids and category plus ``CHANGE_BYTES`` (field names, time, flags).
CHANGES_MAX_BYTES = 256 * 1024
CHANGE_BYTES = 120


class Forget(msgspec.Struct, frozen=True, tag="f", array_like=True):
    """A user's interest and armed rows up to ``ts`` go (contract 8.5), on every partition:
    an erasure (``erased``: remembered for the erasure memory, so that interest not later
    than it that arrives afterwards is dropped too) or a retention expiry."""

    user_id: str
    ts: datetime
    erased: bool = True


Message = Interest | Mark | Change | Changes | Forget
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def encode(message: Message) -> bytes:
    return _encoder.encode(message)


def decode(raw: bytes) -> Message:
    """Raises ``msgspec.DecodeError`` or ``ValidationError`` for a message not ours."""
    return _decoder.decode(raw)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java, aiokafka) gives a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def change_records(
    source: int, changes: list[CatalogChanged], partitions: int
) -> list[tuple[bytes, bytes, int]]:
    """One catalog event's changes as fan-out records ``(key, value, partition)``: per
    recipients' partition, in order, :class:`Changes` of up to ``CHANGES_PER_MESSAGE`` users
    and about ``CHANGES_MAX_BYTES`` (one Kafka record, one consumer message each)."""
    by_partition: dict[int, list[CatalogChanged]] = {}
    for change in changes:
        q = partition_of(change.user_id.encode(), partitions)
        group = by_partition.get(q)
        if group is None:
            by_partition[q] = [change]
        else:
            group.append(change)
    records = []
    for q, group in by_partition.items():
        chunk: list[CatalogChanged] = []
        size = 0
        for change in group:
            chunk.append(change)
            size += CHANGE_BYTES + len(change.user_id) + len(change.event_id)
            size += len(change.product_id) + len(change.category or "")
            if len(chunk) == CHANGES_PER_MESSAGE or size >= CHANGES_MAX_BYTES:
                records.append((chunk[0].user_id.encode(), encode(Changes(source, chunk)), q))
                chunk, size = [], 0
        if chunk:
            records.append((chunk[0].user_id.encode(), encode(Changes(source, chunk)), q))
    return records


def interest_of(event: Event) -> list[Interest]:
    """What a user event tells the product side (``CatalogBook.note_event``'s projection)."""
    kind = type(event)
    if kind is ProductViewed or kind is WishlistAdded:
        return [Interest(event.product_id, event.user_id, event.ts, event.price)]  # type: ignore[union-attr]
    if kind is CartItemAdded:
        return [Interest(event.product_id, event.user_id, event.ts, event.unit_price)]  # type: ignore[union-attr]
    if kind is OrderPlaced:
        products = dict.fromkeys(line.product_id for line in event.items)  # type: ignore[union-attr]
        return [Interest(p, event.user_id, event.ts, None, order=True) for p in products]
    return []


class ProductRow(msgspec.Struct, array_like=True):
    price: int | float | None = None
    in_stock: bool | None = None
    category: str | None = None
    seen: list[str] = msgspec.field(default_factory=list)  # recent catalog event ids


class InterestRow(msgspec.Struct, array_like=True):
    prices: list[tuple[int | float | None, datetime]]  # (price seen, latest time), in order


class ForgetRow(msgspec.Struct, array_like=True):
    """A user whose rows of the partition go up to ``ts`` (:class:`Forget`): kept while
    the sweep deletes them, and for an erasure as long as its memory."""

    ts: datetime
    erased: bool


_product = msgspec.msgpack.Decoder(ProductRow)
_interest = msgspec.msgpack.Decoder(InterestRow)
_time = msgspec.msgpack.Decoder(datetime)
_forget = msgspec.msgpack.Decoder(ForgetRow)


PRODUCT_ROWS = f"p{SEP}".encode()  # each kind of row: a prefix of its keys
INTEREST_ROWS = f"i{SEP}".encode()
ARMED_ROWS = f"a{SEP}".encode()
FORGET_ROWS = f"e{SEP}".encode()


def product_key(product_id: str) -> bytes:
    return PRODUCT_ROWS + product_id.encode()


def interest_prefix(product_id: str) -> bytes:
    return INTEREST_ROWS + f"{product_id}{SEP}".encode()


def armed_prefix(product_id: str) -> bytes:
    return ARMED_ROWS + f"{product_id}{SEP}".encode()


def forget_prefix(partition: int) -> bytes:
    """The partition's forgotten users (every partition has its own: keys are unique)."""
    return FORGET_ROWS + f"{partition}{SEP}".encode()


def user_of(key: bytes, prefix: bytes) -> str:
    return key[len(prefix) :].decode()


def encode_row(row: ProductRow | InterestRow | ForgetRow | datetime) -> bytes:
    return _encoder.encode(row)


def decode_product(raw: bytes) -> ProductRow:
    return _product.decode(raw)


def decode_interest(raw: bytes) -> dict[int | float | None, datetime]:
    return dict(_interest.decode(raw).prices)


def decode_time(raw: bytes) -> datetime:
    return _time.decode(raw)


def decode_forget(raw: bytes) -> ForgetRow:
    return _forget.decode(raw)
