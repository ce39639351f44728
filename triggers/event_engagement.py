"""Engagement feedback and erasure as input (contract 8.3, 8.5): wire models.

Delivery providers write ``message_*`` events to ``marketing.engagement``: the common
fields of section 1 plus ``trigger_id`` (the decision's, or any the shop has) and
``channel`` (required, any name: one the rules do not know is kept and ignored).
``message_bounced`` needs ``bounce`` (``hard`` | ``soft``); ``message_clicked`` may
carry ``url``. ``user_erased`` (``shop.prefs``, no extra fields) erases the user.

They are user events like the shop's (:data:`triggers.events.Event`, read by
``parse_event``), but no shop activity: the engine re-arms nothing on them.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from msgspec import Meta

from triggers.event_base import UserEvent
from triggers.event_fields import Id, Label
from triggers.records import Engagement

ENGAGEMENT_TOPIC = "marketing.engagement"
ERASURE_TOPIC = "shop.prefs"
MAX_URL_CHARS = 4096

Url = Annotated[str, Meta(min_length=1, max_length=MAX_URL_CHARS)]


class EngagementEvent(UserEvent, frozen=True, gc=False):
    """What a delivery provider reports about one message (topic marketing.engagement)."""

    trigger_id: Id
    channel: Label
    #: True: the channel's consent becomes false from ``ts`` (contract 8.3).
    withdraws_consent: ClassVar[bool] = False


class MessageDelivered(EngagementEvent, frozen=True, gc=False, tag="message_delivered"):
    type: ClassVar[str] = "message_delivered"
    test: bool | None = False


class MessageOpened(EngagementEvent, frozen=True, gc=False, tag="message_opened"):
    type: ClassVar[str] = "message_opened"
    test: bool | None = False


class MessageClicked(EngagementEvent, frozen=True, gc=False, tag="message_clicked"):
    type: ClassVar[str] = "message_clicked"
    url: Url | None = None
    test: bool | None = False


class MessageBounced(EngagementEvent, frozen=True, gc=False, tag="message_bounced"):
    """``hard``: the address does not exist, consent on the channel becomes false."""

    type: ClassVar[str] = "message_bounced"
    bounce: Literal["hard", "soft"]
    test: bool | None = False


class MessageUnsubscribed(EngagementEvent, frozen=True, gc=False, tag="message_unsubscribed"):
    type: ClassVar[str] = "message_unsubscribed"
    withdraws_consent: ClassVar[bool] = True
    test: bool | None = False


class MessageComplained(EngagementEvent, frozen=True, gc=False, tag="message_complained"):
    type: ClassVar[str] = "message_complained"
    withdraws_consent: ClassVar[bool] = True
    test: bool | None = False


class UserErased(UserEvent, frozen=True, gc=False, tag="user_erased"):
    """Forget everything about the user (contract 8.5, topic shop.prefs)."""

    type: ClassVar[str] = "user_erased"
    test: bool | None = False
    channel: Label | None = None


ENGAGEMENT_CLASSES: tuple[type[EngagementEvent], ...] = (
    MessageDelivered,
    MessageOpened,
    MessageClicked,
    MessageBounced,
    MessageUnsubscribed,
    MessageComplained,
)
ENGAGEMENT_TYPES: tuple[str, ...] = tuple(cls.type for cls in ENGAGEMENT_CLASSES)


def withdraws_consent(event: EngagementEvent) -> bool:
    """Does this feedback set the channel's consent to false (a hard bounce, an
    unsubscribe, a complaint)?"""
    if type(event) is MessageBounced:
        return event.bounce == "hard"
    return event.withdraws_consent


def audit_record(event: EngagementEvent) -> Engagement:
    """The event's ``engagement`` audit record (contract 8.3, 8.7)."""
    return Engagement(
        event.type,
        event.trigger_id,
        event.channel,
        event.user_id,
        event.ts,
        getattr(event, "url", None),
        getattr(event, "bounce", None),
    )
