"""The admin endpoint: ``GET /admin/users/{user_id}``, one shopper's state as ``nudge inspect``
shows it (:func:`triggers.state_view.describe_state`, as of the worker's wall clock).

Off by default: it is registered only when ``NUDGE_ADMIN_TOKEN`` is set (16 characters
or more), and it answers only requests carrying ``Authorization: Bearer <token>``
(compared in constant time); anything else gets 401 before the user is even looked
up, so without the token nobody learns whether a user exists. No other endpoint of
the worker serves user data (``/metrics``, ``/healthz``, ``/readyz`` are aggregates).

A user's state lives on the worker that holds the user's partition: with several
workers, ask each one (a 404 says the user is not on this worker). The user id is
one path segment, percent-encoded (``nudge inspect --url`` does it).

:func:`admin_response` is the whole decision, a pure function of the request;
:func:`admin_handler` serves it through aiohttp (what Faust's web server runs), and
:func:`register_admin` adds it to the Faust app.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from stream.settings import Settings
from triggers.rules import Rules
from triggers.state import UserState
from triggers.state_view import describe_state

log = logging.getLogger(__name__)

ADMIN_PATH = "/admin/users/{user_id}"
Lookup = Callable[[str], UserState | None]
Clock = Callable[[], datetime]
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="nudge-admin"'}


@dataclass(frozen=True, slots=True)
class AdminResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def authorized(token: str, authorization: str | None) -> bool:
    """True if the header is ``Bearer <token>`` (scheme in any case, constant-time compare)."""
    if not token or authorization is None:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def admin_response(
    token: str,
    authorization: str | None,
    user_id: str,
    lookup: Lookup,
    rules: Rules,
    now: datetime,
) -> AdminResponse:
    """The answer to ``GET /admin/users/{user_id}`` with the given Authorization header."""
    if not authorized(token, authorization):
        return AdminResponse(401, {"error": "missing or wrong bearer token"}, dict(_CHALLENGE))
    no_store = {"Cache-Control": "no-store"}
    try:
        state = lookup(user_id)
    except Exception:  # a corrupt row: logged, the body says nothing about it
        log.exception("admin: could not read the state of a user")
        return AdminResponse(500, {"error": "the user's state could not be read"}, no_store)
    if state is None:
        return AdminResponse(
            404,
            {
                "error": f"no state for user {user_id!r} on this worker (unknown, or on a "
                "partition another worker holds)"
            },
            no_store,
        )
    return AdminResponse(200, describe_state(state, rules, now), no_store)


def admin_handler(
    token: str, lookup: Lookup, rules: Rules, clock: Clock | None = None
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler for :data:`ADMIN_PATH` (the clock: wall time, UTC, by default)."""
    now = clock or (lambda: datetime.now(UTC))

    async def handle(request: web.Request) -> web.Response:
        answer = admin_response(
            token,
            request.headers.get("Authorization"),
            request.match_info["user_id"],
            lookup,
            rules,
            now(),
        )
        return web.Response(
            body=orjson.dumps(answer.body),
            status=answer.status,
            headers=answer.headers,
            content_type="application/json",
        )

    return handle


def register_admin(app: Any, settings: Settings, lookup: Lookup, rules: Rules) -> bool:
    """Serve :data:`ADMIN_PATH` on the Faust app if ``NUDGE_ADMIN_TOKEN`` is set; True if so."""
    if settings.admin_token is None:
        return False
    handle = admin_handler(settings.admin_token.get_secret_value(), lookup, rules)

    @app.page(ADMIN_PATH)
    async def admin_user(self: Any, request: web.Request, user_id: str) -> web.Response:
        return await handle(request)

    log.info("admin endpoint on: GET %s (bearer token)", ADMIN_PATH)
    return True
