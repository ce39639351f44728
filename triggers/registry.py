"""The trigger registry: every built-in trigger, in one list.

Adding a trigger means writing its module (its rules section model, how it arms and
its decision context) and adding ONE :class:`TriggerKind` to :data:`KINDS` below.
Everything else is derived from this list: the trigger names
(:data:`TRIGGER_NAMES`), the ``triggers`` and ``offers`` sections of the
rules model (:mod:`triggers.rules`), what firing looks up per trigger
(:func:`triggers.firing.firing_rules`), the decision ``context`` and the engine's
event hooks (:mod:`triggers.engine`). Stored states name triggers by the separate,
append-only code table ``triggers.state_records.TRIGGER_CODES``: a new trigger also gets the
next code there (one without a code is stored by name, which works but is larger).

Custom triggers (:mod:`triggers.custom`) are not listed: the rules file names them
(``triggers.custom.NAME``), and the engine and firing add them next to these.

The six original triggers keep the facts they share (cart, order history, latest
view, activity) in the engine's per-event handlers and have no ``react`` hook; a
trigger with a ``react`` hook is told about every processed event after those facts
are updated and returns the user's new pending stages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from triggers import (
    birthday,
    browse_abandonment,
    cart_abandonment,
    catalog,
    custom,
    dormancy,
    first_purchase_followup,
    lapsing,
    replenishment,
)
from triggers.rules_types import TriggerRules
from triggers.state import Pending, UserState

#: (state, the stage that came due, now, the trigger's rules section) -> context
ContextOf = Callable[[UserState, Pending, datetime, Any], dict[str, object]]
#: (state before, state after the facts were updated, event, rules section, default zone)
#: -> the new pending stages (the after state's, changed or not)
React = Callable[[UserState, UserState, Any, Any, str], tuple[Pending, ...]]
#: (state, the stage just decided, rules section, default zone) -> the episode's next stage
Follow = Callable[[UserState, Pending, Any, str], Pending | None]


@dataclass(frozen=True, slots=True)
class TriggerKind:
    name: str  # the trigger's name in rules, decisions and states
    rules: type[TriggerRules]  # its section under ``triggers`` in the rules file
    stages: Callable[[Any], tuple[timedelta, ...]]  # () for one stage with a computed due
    context: ContextOf  # the decision's ``context``
    react: React | None = None  # called for every processed event (None: the engine's own)
    follow: Follow | None = None  # None: the next of ``stages`` (episodes.next_stage)
    # added with contract section 7: its rules section and offers, left at their defaults,
    # are left out of the rules' content hash (rules_version stays what it was)
    added: bool = False


def _no_stages(_rules: Any) -> tuple[timedelta, ...]:
    return ()


def _stages(rules: Any) -> tuple[timedelta, ...]:
    return rules.stages


KINDS: tuple[TriggerKind, ...] = (
    TriggerKind(
        cart_abandonment.NAME,
        cart_abandonment.CartAbandonmentRules,
        _stages,
        lambda state, item, now, rules: cart_abandonment.context(state.cart),
    ),
    TriggerKind(
        browse_abandonment.NAME,
        browse_abandonment.BrowseAbandonmentRules,
        _stages,
        lambda state, item, now, rules: browse_abandonment.context(state.viewed),
    ),
    TriggerKind(
        replenishment.NAME,
        replenishment.ReplenishmentRules,
        _no_stages,  # one stage, due computed from the interval
        lambda state, item, now, rules: replenishment.context(state.history, item.subject, rules),
    ),
    TriggerKind(
        first_purchase_followup.NAME,
        first_purchase_followup.FirstPurchaseFollowupRules,
        _stages,
        lambda state, item, now, rules: first_purchase_followup.context(
            state.history, item.subject
        ),
    ),
    TriggerKind(
        lapsing.NAME,
        lapsing.LapsingRules,
        _no_stages,  # one stage, due computed from the mean gap
        lambda state, item, now, rules: lapsing.context(state.history),
    ),
    TriggerKind(
        dormancy.NAME,
        dormancy.DormancyRules,
        _stages,
        lambda state, item, now, rules: dormancy.context(state.last_activity, now),
    ),
    TriggerKind(
        birthday.NAME,
        birthday.BirthdayRules,
        _no_stages,  # one stage a year, re-armed by ``follow``
        birthday.context,
        react=birthday.react,
        follow=birthday.follow,
        added=True,
    ),
    TriggerKind(
        catalog.BACK_IN_STOCK,
        catalog.BackInStockRules,
        _stages,
        catalog.context_back_in_stock,
        react=catalog.react_back_in_stock,
        added=True,
    ),
    TriggerKind(
        catalog.PRICE_DROP,
        catalog.PriceDropRules,
        _stages,
        catalog.context_price_drop,
        react=catalog.react_price_drop,
        added=True,
    ),
)

KIND_BY_NAME: dict[str, TriggerKind] = {kind.name: kind for kind in KINDS}
#: The built-in triggers, in registry order.
TRIGGER_NAMES: tuple[str, ...] = tuple(KIND_BY_NAME)


def reactors(rules: Any) -> list[tuple[React, Any]]:
    """(react, rules section) of every enabled trigger with an event hook: the registered
    ones in registry order, then the rules' custom triggers (triggers.custom) by name."""
    out: list[tuple[React, Any]] = [
        (kind.react, rules.trigger(kind.name))
        for kind in KINDS
        if kind.react is not None and rules.trigger(kind.name).enabled
    ]
    for name, section in sorted(rules.triggers.custom.items()):
        if section.enabled:
            out.append((partial(custom.react, name), section))
    return out
