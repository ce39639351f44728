"""A/B variants (contract section 7.2): the rules' variant table and the assignment.

Any trigger's rules may carry ``variants: {NAME: WEIGHT, ...}``. A user gets one
variant per trigger, :func:`variant_of`: BLAKE2b of ``"variant"``, user, trigger and
``holdout_salt`` (a different input than the holdout's hash in
:func:`triggers.contact_policy.in_holdout`, so the two are independent and the holdout
thins every variant alike), reduced modulo the total weight and mapped onto the
variants in name order, each owning a share of the range as large as its weight. The
same user keeps the same variant across episodes for as long as the table and the
salt stay the same (the file order of the names does not matter; changing a weight or
adding a variant moves some users).

Names are 1..32 printable characters, neither ``default`` nor a segment name (an
``offers`` key names a variant, a segment or ``default``); weights are integers from
1 to 1,000,000; at most 100 variants per trigger.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Annotated

from pydantic import AfterValidator, Field, StrictInt, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from triggers.records import SEGMENT_NAMES

MAX_VARIANTS = 100
MAX_WEIGHT = 1_000_000
RESERVED = ("default", *SEGMENT_NAMES)  # offers keys that are not variant names


def _variant_name(name: str) -> str:
    if not name.isprintable():
        raise ValueError("a variant name cannot hold control or line-separator characters")
    if name in RESERVED:
        raise ValueError(
            f"{name!r} cannot name a variant: offers use it for a segment or the default"
        )
    return name


VariantName = Annotated[str, Field(min_length=1, max_length=32), AfterValidator(_variant_name)]
Weight = Annotated[StrictInt, Field(ge=1, le=MAX_WEIGHT)]
VariantTable = Annotated[dict[VariantName, Weight], Field(max_length=MAX_VARIANTS)]
OfferKey = Annotated[str, Field(min_length=1, max_length=32)]


def weighted(variants: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """The table as the assignment reads it: (name, weight) in name order."""
    return tuple(sorted(variants.items()))


def variant_of(
    user_id: str, trigger: str, salt: str, variants: tuple[tuple[str, int], ...]
) -> str | None:
    """The user's variant for ``trigger`` (None when the trigger has no variants)."""
    if not variants:
        return None
    if len(variants) == 1:
        return variants[0][0]
    total = sum(weight for _, weight in variants)
    key = f"variant\x1f{user_id}\x1f{trigger}\x1f{salt}".encode()
    point = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % total
    for name, weight in variants:
        if point < weight:
            return name
        point -= weight
    raise AssertionError("unreachable: point < total weight")


def offer_for(table: Mapping[str, str], variant: str | None, segment: str) -> str | None:
    """``offers.TRIGGER.VARIANT``, else ``offers.TRIGGER.SEGMENT``, else ``default``."""
    if variant is not None and variant in table:
        return table[variant]
    return table.get(segment, table.get("default"))


def check_offer_keys(
    offers: Mapping[str, Mapping[str, str]],
    variants: Mapping[str, Mapping[str, int]],
    under: tuple[str, ...] = (),
) -> None:
    """Refuse an ``offers.TRIGGER`` key that is not ``default``, a segment or a variant of
    TRIGGER: a pydantic ``ValidationError`` located at ``offers.TRIGGER.KEY`` (inside a
    model validator, so the rules' error reporting gives it its key path and line).
    ``under`` set: the tables are a custom trigger's own, at ``UNDER.TRIGGER.offers.KEY``."""
    errors = [
        InitErrorDetails(
            type=PydanticCustomError("value_error", "{reason}", {"reason": reason}),
            loc=(*under, trigger, "offers", key) if under else ("offers", trigger, key),
            input=key,
        )
        for trigger, table in offers.items()
        for key in table
        if key not in RESERVED and key not in variants.get(trigger, {})
        for reason in (_offer_key_reason(trigger, key, variants.get(trigger, {})),)
    ]
    if errors:
        raise ValidationError.from_exception_data("Rules", errors)


def _offer_key_reason(trigger: str, key: str, variants: Mapping[str, int]) -> str:
    allowed = ", ".join(repr(name) for name in RESERVED)
    named = ", ".join(repr(name) for name in sorted(variants)) or "none"
    return f"unknown offer key {key!r}: use {allowed} or a variant of {trigger} (variants: {named})"
