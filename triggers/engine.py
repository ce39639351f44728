"""The engine: one user's state + one event (or the time) -> new state + records.

Pure and deterministic: no I/O, no wall clock. The caller (the live service or
``nudge replay``) owns the clock and the storage:

- ``on_event(state, event, now)`` applies one event. It never fires a stage,
  but it can emit a :class:`~triggers.records.Conversion`. If the event arms a
  stage that is already due (a late event), ``next_due <= now`` and the caller
  calls ``on_time`` right away.
- ``on_time(state, now, facts)`` fires every stage whose send time is <= now,
  in send-time order, equal times by priority (highest first), applying the
  contact policy. A stage reached inside quiet hours is deferred (no record);
  its new send time shows in ``next_due``.

``Step.outcome`` for events: ``processed``, ``duplicate``, ``test`` (the last two
return the state unchanged; for a new user a fresh one, not to be stored),
``before_erasure`` (unchanged) or ``erased`` (the state is the erasure memory alone,
contract 8.5); ``fired`` for ``on_time``. Engagement feedback (8.3) is no activity.
"""

from __future__ import annotations

from datetime import datetime

from msgspec.structs import replace

from triggers import (
    browse_abandonment,
    cart_abandonment,
    first_purchase_followup,
    lapsing,
    replenishment,
)
from triggers.attribution import attribute
from triggers.catalog import CatalogChanged
from triggers.channels import after_answers, after_feedback, preferences_after
from triggers.contact_policy import pruned
from triggers.event_engagement import (
    ENGAGEMENT_CLASSES,
    EngagementEvent,
    UserErased,
    audit_record,
)
from triggers.events import (
    CartCleared,
    CartItemAdded,
    CartItemRemoved,
    CategoryViewed,
    CheckoutStarted,
    Event,
    OrderCancelled,
    OrderPlaced,
    PreferencesUpdated,
    ProductViewed,
    SearchPerformed,
    WishlistAdded,
)
from triggers.firing import fire_due, firing_rules, next_due
from triggers.order_history import add_order, cancel_order, knows_order, latest_order_placed
from triggers.records import Erasure
from triggers.registry import reactors
from triggers.rules import Rules
from triggers.state import (
    Cart,
    ContactLog,
    OrderHistory,
    Pending,
    Preferences,
    UserState,
    View,
    event_digest,
    has_seen,
    remember,
)
from triggers.steps import (
    BEFORE_ERASURE,
    DUPLICATE,
    ERASED,
    FIRED,
    NO_FACTS,
    PROCESSED,
    TEST,
    OutsideFacts,
    Record,
    Step,
)


class Engine:
    """Holds the rules (and what is derived from them); every call is pure."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.rules_version = rules.version_label
        self._firing = firing_rules(rules)
        self._dormancy = rules.triggers.dormancy
        self._dormancy_all = self._dormancy.enabled and self._dormancy.audience == "all"
        self._dormancy_customers = self._dormancy.enabled and self._dormancy.audience != "all"
        self._cap_window = rules.contact_policy.frequency_cap.per
        self._cooldown = self._firing.cooldown
        self._attribution_window = rules.contact_policy.attribution_window
        self._reactors = reactors(rules)  # triggers with their own event hook
        self._erasure_memory = rules.erasure_memory
        self._handlers = {
            ProductViewed: self._product_viewed,
            CategoryViewed: self._activity_only,
            SearchPerformed: self._activity_only,
            WishlistAdded: self._activity_only,
            CartItemAdded: self._cart_event,
            CartItemRemoved: self._cart_event,
            CartCleared: self._cart_event,
            CheckoutStarted: self._cart_event,
            OrderPlaced: self._order_placed,
            OrderCancelled: self._order_cancelled,
            PreferencesUpdated: self._preferences_updated,
            CatalogChanged: self._catalog_changed,
            **dict.fromkeys(ENGAGEMENT_CLASSES, self._engagement),
        }

    # --- events ------------------------------------------------------------------------

    def on_event(
        self, state: UserState | None, event: Event | CatalogChanged, now: datetime
    ) -> Step:
        if state is None:
            state = UserState(event.user_id)
        elif state.user_id != event.user_id:
            raise ValueError(f"event for {event.user_id!r} applied to state of {state.user_id!r}")
        if event.test:
            return Step(state, (), next_due(self._firing, state), TEST)
        erased_at = state.erased_at
        if erased_at is not None:  # the erasure memory (contract 8.5)
            if now - erased_at > self._erasure_memory:
                state = replace(state, erased_at=None)
            elif event.ts <= erased_at:
                return Step(state, (), next_due(self._firing, state), BEFORE_ERASURE)
        if type(event) is UserErased:
            erasure = Erasure(state.user_id, event.ts)
            return Step(UserState(state.user_id, erased_at=event.ts), (erasure,), None, ERASED)
        digest = event_digest(event.event_id)
        if has_seen(state.seen, digest):
            return Step(state, (), next_due(self._firing, state), DUPLICATE)
        new_state, records = self._handlers[type(event)](
            state, event, remember(state.seen, digest), now
        )
        if self._reactors and not isinstance(event, EngagementEvent):
            new_state = self._react(state, new_state, event)
        return Step(new_state, records, next_due(self._firing, new_state), PROCESSED)

    def _finish(
        self,
        state: UserState,
        event: Event,
        seen: bytes,
        now: datetime,
        prefs: Preferences | None,
        cart: Cart,
        history: OrderHistory,
        viewed: View | None,
        pending: tuple[Pending, ...],
        contacts: ContactLog,
    ) -> UserState:
        """What every event does (activity, dormancy re-arming, contact expiry), then the state."""
        previous = state.last_activity
        ts = event.ts
        newest = previous is None or ts >= previous
        was_eligible = is_eligible = self._dormancy_all  # dormancy.eligible, inline
        if self._dormancy_customers:
            was_eligible = state.history.count > 0
            is_eligible = was_eligible if history is state.history else history.count > 0
        # The dormancy episode after the event: (key, next stage), stage 0 = nothing pending.
        # A newest event moves the anchor (a new episode); a user who just became eligible
        # (first order) is armed from their last activity even if the arming event is older.
        key, stage = state.dormancy_key, state.dormancy_stage
        if not is_eligible:
            key, stage = None, 0
        elif newest or (stage == 0 and not was_eligible):
            key, stage = event.event_id, 1
        send_at = None
        if key == state.dormancy_key and stage == state.dormancy_stage:
            send_at = state.dormancy_send_at
        if contacts.recent or contacts.last_by_trigger:
            contacts = pruned(contacts, now, self._cap_window, self._cooldown)
        return UserState(
            state.user_id,
            seen,
            ts if newest else previous,
            prefs,
            cart,
            history,
            viewed,
            pending,
            contacts,
            key,
            stage,
            send_at,
            state.held,
            state.consent,
            state.channel_contacts,
            state.erased_at,
            state.touched_at,
        )

    def _catalog_changed(
        self, state: UserState, event: CatalogChanged, seen: bytes, now: datetime
    ) -> tuple[UserState, tuple[Record, ...]]:
        """Not activity: only remembered (the catalog triggers' hooks act on it)."""
        return replace(state, seen=seen), ()

    def _engagement(
        self, state: UserState, event: EngagementEvent, seen: bytes, now: datetime
    ) -> tuple[UserState, tuple[Record, ...]]:
        consent = after_feedback(state.consent, event)  # no activity: contract 8.3
        return replace(state, seen=seen, consent=consent), (audit_record(event),)

    def _activity_only(
        self, state: UserState, event: Event, seen: bytes, now: datetime
    ) -> tuple[UserState, tuple[Record, ...]]:
        new_state = self._finish(
            state,
            event,
            seen,
            now,
            state.prefs,
            state.cart,
            state.history,
            state.viewed,
            state.pending,
            state.contacts,
        )
        return new_state, ()

    def _product_viewed(
        self, state: UserState, event: ProductViewed, seen: bytes, now: datetime
    ) -> tuple[UserState, tuple[Record, ...]]:
        viewed, pending = browse_abandonment.after_view(
            state.viewed,
            state.pending,
            event,
            state.cart,
            latest_order_placed(state),
            self.rules.triggers.browse_abandonment,
        )
        new_state = self._finish(
            state,
            event,
            seen,
            now,
            state.prefs,
            state.cart,
            state.history,
            viewed,
            pending,
            state.contacts,
        )
        return new_state, ()

    def _cart_event(
        self, state: UserState, event: cart_abandonment.CartEvent, seen: bytes, now: datetime
    ) -> tuple[UserState, tuple[Record, ...]]:
        cart, pending = state.cart, state.pending
        latest_order = latest_order_placed(state)
        if latest_order is None or event.ts > latest_order:  # else: history, only activity
            cart = cart_abandonment.apply_event(state.cart, event)
            pending = cart_abandonment.after_cart_event(
                pending, state.cart, cart, event, self.rules.triggers.cart_abandonment
            )
            if type(event) is CartItemAdded:
                pending = browse_abandonment.after_cart_add(state.viewed, pending, event.product_id)
        new_state = self._finish(
            state,
            event,
            seen,
            now,
            state.prefs,
            cart,
            state.history,
            state.viewed,
            pending,
            state.contacts,
        )
        return new_state, ()

    def _order_placed(
        self, state: UserState, event: OrderPlaced, seen: bytes, now: datetime
    ) -> tuple[UserState, tuple[Record, ...]]:
        before = state.history
        if knows_order(before, event.order_id):  # re-sent or already cancelled order
            return self._activity_only(state, event, seen, now)
        triggers = self.rules.triggers
        after = add_order(before, event)
        cart, pending = cart_abandonment.after_order(state.cart, state.pending, event.ts)
        pending = browse_abandonment.after_order(state.viewed, pending, event.ts)
        pending = first_purchase_followup.after_order_placed(
            pending, event, before, triggers.first_purchase_followup
        )
        products = dict.fromkeys(line.product_id for line in event.items)
        pending = replenishment.after_history_change(
            pending, event.event_id, event.ts, before, after, products, triggers.replenishment
        )
        pending = lapsing.after_history_change(
            pending, event.event_id, event.ts, before, after, triggers.lapsing
        )
        contacts, conversion = attribute(state.contacts, event, self._attribution_window)
        new_state = self._finish(
            state, event, seen, now, state.prefs, cart, after, state.viewed, pending, contacts
        )
        return new_state, (conversion,) if conversion is not None else ()

    def _order_cancelled(
        self, state: UserState, event: OrderCancelled, seen: bytes, now: datetime
    ) -> tuple[UserState, tuple[Record, ...]]:
        triggers = self.rules.triggers
        before = state.history
        after, order = cancel_order(before, event.order_id)
        pending = state.pending
        if order is not None:
            pending = first_purchase_followup.after_order_cancelled(pending, order.order_id)
            pending = replenishment.after_history_change(
                pending,
                event.event_id,
                event.ts,
                before,
                after,
                order.products,
                triggers.replenishment,
            )
            pending = lapsing.after_history_change(
                pending, event.event_id, event.ts, before, after, triggers.lapsing
            )
        new_state = self._finish(
            state,
            event,
            seen,
            now,
            state.prefs,
            state.cart,
            after,
            state.viewed,
            pending,
            state.contacts,
        )
        return new_state, ()

    def _preferences_updated(
        self, state: UserState, event: PreferencesUpdated, seen: bytes, now: datetime
    ) -> tuple[UserState, tuple[Record, ...]]:
        prefs = preferences_after(state.prefs, event)
        new_state = self._finish(
            state,
            event,
            seen,
            now,
            prefs,
            state.cart,
            state.history,
            state.viewed,
            state.pending,
            state.contacts,
        )
        if event.channels:  # per-channel consent (contract 8.1)
            consent = after_answers(state.consent, event.channels, event.ts)
            new_state = replace(new_state, consent=consent)
        return new_state, ()

    def _react(self, before: UserState, after: UserState, event: Event) -> UserState:
        """The registered triggers with a ``react`` hook see the event (triggers.registry)."""
        pending = after.pending
        zone = self.rules.default_timezone
        for react, section in self._reactors:
            pending = react(before, replace(after, pending=pending), event, section, zone)
        return after if pending is after.pending else replace(after, pending=pending)

    # --- time --------------------------------------------------------------------------

    def next_due(self, state: UserState) -> datetime | None:
        """The earliest send time pending for the user, or None."""
        return next_due(self._firing, state)

    def on_time(
        self,
        state: UserState,
        now: datetime,
        facts: OutsideFacts = NO_FACTS,
        *,
        until: datetime | None = None,
    ) -> Step:
        """Fire the stages due by ``until`` (default and at most ``now``), reached at ``now``.

        ``until`` lets the live service fire, before an event with time T that it
        processes late, exactly the stages replay would fire before it: those due by T.
        """
        limit = now if until is None else min(until, now)
        earliest = next_due(self._firing, state)
        if earliest is None or earliest > limit:
            return Step(state, (), earliest, FIRED)
        new_state, records = fire_due(
            self._firing, state, now, facts.suppressed, facts.contacts, until=limit
        )
        if state.held:  # held decisions wait for their release (triggers.held)
            new_state = replace(new_state, held=state.held)
        return Step(new_state, records, next_due(self._firing, new_state), FIRED)
