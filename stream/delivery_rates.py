"""The demo delivery provider's model: what feedback one sent decision gets, and when.

``nudge simulate --provider`` (:mod:`stream.delivery_provider`) answers each sent decision
of ``marketing.triggers`` the way a shop's email, push or SMS provider would, with the
``message_*`` events of contract 8.3. This module decides them, with no I/O:

- Per channel, :class:`ChannelRates` (all probabilities): ``hard_bounce`` and
  ``soft_bounce`` of sent; ``delivered`` of sent and not bounced (the rest get no receipt);
  ``opened``, ``clicked``, ``unsubscribed``, ``complained`` of delivered, as benchmarks
  publish them. A click needs an open where opens are tracked (``opened > 0``: clicks are
  drawn among openers, ``clicked / opened`` of them); ``opened == 0`` means the channel has
  no open receipt (SMS), and clicks are drawn among the delivered. Unsubscribes and
  complaints are drawn among the delivered, whether they opened or not.
- The defaults (:data:`DEFAULT_RATES`) are published industry averages; the sources are
  in the README ("Demo traffic"). A channel the table does not name gets the email rates.
- Delays: each step comes an exponentially distributed time after the one before it
  (means in :data:`DELAY_MEANS`, capped at :data:`DELAY_CAP` means), times ``delay_scale``:
  seconds instead of the hours real mail takes, so a demo shows its funnel in minutes.
- Deterministic: the draws of a decision come from ``(seed, trigger_id)`` alone, all of
  them always drawn in one order, so the same decision gets the same feedback (and the
  same event ids: a re-answered decision is a duplicate the engine ignores) whatever
  order decisions are read in, and changing one rate changes only the steps it governs.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from triggers.timestamps import TimestampError, format_timestamp, parse_timestamp

#: The rates' names, as ``--rates`` takes them.
RATE_NAMES = (
    "delivered",
    "hard_bounce",
    "soft_bounce",
    "opened",
    "clicked",
    "unsubscribed",
    "complained",
)


@dataclass(frozen=True)
class ChannelRates:
    delivered: float
    hard_bounce: float
    soft_bounce: float
    opened: float
    clicked: float
    unsubscribed: float
    complained: float

    def check(self, channel: str) -> None:
        """Raise ValueError unless these rates can all hold at once."""
        for name in RATE_NAMES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{channel}.{name} must be between 0 and 1, got {value:g}")
        if self.hard_bounce + self.soft_bounce > 1.0:
            raise ValueError(f"{channel}: hard_bounce + soft_bounce is more than 1")
        if 0.0 < self.opened < self.clicked:
            raise ValueError(
                f"{channel}.clicked ({self.clicked:g}) is more than {channel}.opened "
                f"({self.opened:g}): a click needs an open (opened=0: opens are not tracked)"
            )


#: Published averages (README, "Demo traffic", has the sources): Mailchimp's email
#: benchmarks over all industries; push direct-open rates of Leanplum and Braze; Klaviyo's
#: SMS campaign benchmarks. ``_other`` channels are answered like email.
DEFAULT_RATES: Mapping[str, ChannelRates] = {
    "email": ChannelRates(
        delivered=1.0,
        hard_bounce=0.0040,
        soft_bounce=0.0058,
        opened=0.2133,
        clicked=0.0262,
        unsubscribed=0.0026,
        complained=0.0002,
    ),
    "push": ChannelRates(
        delivered=1.0,
        hard_bounce=0.01,
        soft_bounce=0.0,
        opened=0.04,
        clicked=0.04,
        unsubscribed=0.001,
        complained=0.0,
    ),
    "sms": ChannelRates(
        delivered=1.0,
        hard_bounce=0.02,
        soft_bounce=0.01,
        opened=0.0,
        clicked=0.10,
        unsubscribed=0.008,
        complained=0.0005,
    ),
}
FALLBACK_PROFILE = "email"
#: What a decision without a channel (rules without ``channels``) is answered on.
NO_CHANNEL = "email"

#: Mean seconds from the step before to each step: delivery (or bounce) after the decision
#: fired; open, unsubscribe and complaint after delivery; click after the open (or after
#: delivery on a channel without open receipts).
DELAY_MEANS: Mapping[str, float] = {
    "message_delivered": 2.0,
    "message_bounced": 2.0,
    "message_opened": 20.0,
    "message_clicked": 8.0,
    "message_unsubscribed": 15.0,
    "message_complained": 30.0,
}
DELAY_CAP = 4.0  # a delay is at most this many times its mean


def parse_rates(
    text: str, base: Mapping[str, ChannelRates] = DEFAULT_RATES
) -> dict[str, ChannelRates]:
    """``--rates``: ``[CHANNEL.]NAME=P,...`` over ``base`` (no channel: every channel's).

    ``opened=0.3,sms.clicked=0.12`` sets every channel's open rate and SMS's click rate.
    A channel the base does not name starts from the email rates. Raises ValueError."""
    rates = dict(base)
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        channel, dot, name = key.strip().rpartition(".")
        if not sep or name not in RATE_NAMES:
            raise ValueError(
                f"{item!r}: expected [CHANNEL.]NAME=P with NAME one of {', '.join(RATE_NAMES)}"
            )
        try:
            probability = float(value)
        except ValueError:
            raise ValueError(f"{item!r}: {value.strip()!r} is not a number") from None
        targets = [channel] if dot else list(rates)
        for target in targets:
            start = rates.get(target, base.get(FALLBACK_PROFILE, DEFAULT_RATES[FALLBACK_PROFILE]))
            rates[target] = replace(start, **{name: probability})
    for channel, channel_rates in rates.items():
        channel_rates.check(channel)
    return rates


def rates_for(rates: Mapping[str, ChannelRates], channel: str) -> ChannelRates:
    return rates.get(channel) or rates.get(FALLBACK_PROFILE) or DEFAULT_RATES[FALLBACK_PROFILE]


@dataclass(frozen=True)
class Feedback:
    """One event to produce: at ``at`` (its ``ts``), keyed by ``key``."""

    at: datetime
    key: bytes
    value: dict[str, Any]


class NotASentDecision(ValueError):
    """A record of the triggers topic that is not a sent decision Nudge could answer."""


def plan_feedback(
    decision: Mapping[str, Any],
    rates: Mapping[str, ChannelRates],
    *,
    seed: int,
    delay_scale: float = 1.0,
) -> list[Feedback]:
    """The feedback events for one decision record of ``marketing.triggers``, in time order.

    Raises NotASentDecision for anything but a ``sent`` decision with a trigger id, a
    user id and a ``fired_at`` time."""
    try:
        if decision.get("kind") != "decision" or decision.get("status") != "sent":
            raise NotASentDecision("not a sent decision")
        trigger_id, user_id = decision["trigger_id"], decision["user_id"]
        if not (isinstance(trigger_id, str) and isinstance(user_id, str)):
            raise NotASentDecision("trigger_id and user_id must be strings")
        fired_at = parse_timestamp(decision["fired_at"])
    except (KeyError, TimestampError, AttributeError) as exc:
        raise NotASentDecision(f"not a decision record: {exc}") from None
    channel = decision.get("channel") or NO_CHANNEL
    r = rates_for(rates, channel)
    rng = random.Random(f"{seed}:{trigger_id}")
    # Every draw, always, in this order: one rate's change moves only its own steps.
    u_bounce, u_delivered, u_open, u_click, u_unsub, u_complaint = (rng.random() for _ in range(6))
    delays = {name: _delay(rng, mean, delay_scale) for name, mean in DELAY_MEANS.items()}

    events: list[tuple[datetime, str, dict[str, Any]]] = []
    first = fired_at + delays["message_delivered"]
    if u_bounce < r.hard_bounce + r.soft_bounce:
        bounce = "hard" if u_bounce < r.hard_bounce else "soft"
        return _finish(
            decision,
            channel,
            [(fired_at + delays["message_bounced"], "message_bounced", {"bounce": bounce})],
        )
    if u_delivered >= r.delivered:
        return []
    events.append((first, "message_delivered", {}))
    # Opens and clicks share one draw: the clickers are the lowest ``clicked`` of it, the
    # openers the lowest ``opened`` (a superset), so P(click | open) = clicked / opened.
    tracked = r.opened > 0
    opened_at = first + delays["message_opened"] if tracked and u_open < r.opened else None
    if opened_at is not None:
        events.append((opened_at, "message_opened", {}))
    if (u_open if tracked else u_click) < r.clicked:
        url = f"https://shop.example/r/{decision.get('trigger', 'nudge')}?t={trigger_id}"
        clicked_at = (opened_at or first) + delays["message_clicked"]
        events.append((clicked_at, "message_clicked", {"url": url}))
    if u_unsub < r.unsubscribed:
        events.append((first + delays["message_unsubscribed"], "message_unsubscribed", {}))
    if u_complaint < r.complained:
        events.append((first + delays["message_complained"], "message_complained", {}))
    return _finish(decision, channel, events)


def _delay(rng: random.Random, mean: float, scale: float) -> timedelta:
    seconds = min(rng.expovariate(1.0 / mean), DELAY_CAP * mean) * scale
    return timedelta(milliseconds=round(seconds * 1000))


def _finish(
    decision: Mapping[str, Any], channel: str, events: list[tuple[datetime, str, dict[str, Any]]]
) -> list[Feedback]:
    trigger_id, user_id = decision["trigger_id"], decision["user_id"]
    out = []
    for at, kind, extra in sorted(events, key=lambda item: item[0]):
        digest = hashlib.sha256(f"{trigger_id}\x00{kind}".encode()).hexdigest()[:32]
        value = {
            "event_id": f"fb-{digest}",
            "type": kind,
            "user_id": user_id,
            "ts": format_timestamp(at),
            "trigger_id": trigger_id,
            "channel": channel,
            **extra,
        }
        out.append(Feedback(at, user_id.encode(), value))
    return out


def rates_table(rates: Mapping[str, ChannelRates]) -> str:
    """The rates in force, one line per channel (``nudge simulate --provider`` prints it)."""
    return "\n".join(
        f"{channel}: " + ", ".join(f"{f.name}={getattr(r, f.name):g}" for f in fields(r))
        for channel, r in rates.items()
    )
