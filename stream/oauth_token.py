"""SASL OAUTHBEARER tokens for aiokafka and Faust (``NUDGE_KAFKA_SASL_MECHANISM=OAUTHBEARER``).

Three sources, chosen by the settings that are set:

- ``NUDGE_KAFKA_OAUTH_TOKEN``: one static token (tests, short-lived jobs);
- ``NUDGE_KAFKA_OAUTH_TOKEN_FILE``: a file re-read at every new connection, so a sidecar
  (Kubernetes projected token, a cron job) can renew it;
- ``NUDGE_KAFKA_OAUTH_TOKEN_URL`` with ``_CLIENT_ID``, ``_CLIENT_SECRET`` and optional
  ``_SCOPE``: an OAuth 2 client-credentials grant (Confluent Cloud, Azure Event Hubs, Okta,
  Keycloak), the token cached until shortly before ``expires_in``.

Tokens and client secrets are never logged; errors name the settings, not their values.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import aiohttp
import aiokafka.conn
from aiokafka.abc import AbstractTokenProvider

if TYPE_CHECKING:
    from stream.settings import Settings

#: A fetched token is renewed this long before it expires (or at 80 % of a short lifetime).
REFRESH_MARGIN_SECONDS = 60.0
HTTP_TIMEOUT_SECONDS = 10.0


class TokenError(RuntimeError):
    """No token could be obtained; the message names the settings to check."""


def oauth_settings_problem(settings: Settings) -> str | None:
    """Why the OAUTHBEARER settings cannot work, or None."""
    sources = [
        name
        for name, value in (
            ("NUDGE_KAFKA_OAUTH_TOKEN", settings.kafka_oauth_token),
            ("NUDGE_KAFKA_OAUTH_TOKEN_FILE", settings.kafka_oauth_token_file),
            ("NUDGE_KAFKA_OAUTH_TOKEN_URL", settings.kafka_oauth_token_url),
        )
        if value
    ]
    if not sources:
        return (
            "NUDGE_KAFKA_SASL_MECHANISM=OAUTHBEARER needs a token source: "
            "NUDGE_KAFKA_OAUTH_TOKEN_URL with NUDGE_KAFKA_OAUTH_CLIENT_ID and "
            "NUDGE_KAFKA_OAUTH_CLIENT_SECRET (client credentials), or "
            "NUDGE_KAFKA_OAUTH_TOKEN_FILE, or NUDGE_KAFKA_OAUTH_TOKEN"
        )
    if len(sources) > 1:
        return f"NUDGE_KAFKA_SASL_MECHANISM=OAUTHBEARER takes one token source, not {sources}"
    if settings.kafka_oauth_extensions:
        try:
            extensions(settings.kafka_oauth_extensions)
        except ValueError as exc:
            return f"NUDGE_KAFKA_OAUTH_EXTENSIONS {exc}"
    if settings.kafka_oauth_token_url:
        if not settings.kafka_oauth_token_url.lower().startswith(("https://", "http://")):
            return "NUDGE_KAFKA_OAUTH_TOKEN_URL is not an http(s):// URL"
        missing = [
            name
            for name, value in (
                ("NUDGE_KAFKA_OAUTH_CLIENT_ID", settings.kafka_oauth_client_id),
                ("NUDGE_KAFKA_OAUTH_CLIENT_SECRET", settings.kafka_oauth_client_secret),
            )
            if not value
        ]
        if missing:
            return f"NUDGE_KAFKA_OAUTH_TOKEN_URL needs {' and '.join(missing)}"
    return None


def extensions(text: str) -> dict[str, str]:
    """``"logicalCluster=lkc-1,identityPoolId=pool-2"`` -> a dict; ValueError names a bad pair."""
    pairs: dict[str, str] = {}
    for entry in (part.strip() for part in text.split(",") if part.strip()):
        key, sep, value = entry.partition("=")
        if not sep or not key.strip() or key.strip() == "auth":
            raise ValueError(f"{entry!r} is not KEY=VALUE (e.g. logicalCluster=lkc-1)")
        pairs[key.strip()] = value.strip()
    return pairs


class _Provider(AbstractTokenProvider):
    """A token source and the SASL extensions sent with its tokens (``extensions()``)."""

    sent_extensions: Mapping[str, str] = MappingProxyType({})

    def extensions(self) -> dict[str, str]:
        return dict(self.sent_extensions)


class StaticTokenProvider(_Provider):
    """The token of ``NUDGE_KAFKA_OAUTH_TOKEN``."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token


class FileTokenProvider(_Provider):
    """The token in a file, read again at each connection (the file may be renewed)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    async def token(self) -> str:
        try:
            text = await asyncio.to_thread(self._path.read_text)
        except OSError as exc:
            raise TokenError(
                f"cannot read NUDGE_KAFKA_OAUTH_TOKEN_FILE {self._path}: {exc.strerror}"
            ) from None
        token = text.strip()
        if not token:
            raise TokenError(f"NUDGE_KAFKA_OAUTH_TOKEN_FILE {self._path} is empty")
        return token


class ClientCredentialsTokenProvider(_Provider):
    """OAuth 2 client-credentials grant (RFC 6749 4.4), the token reused until near expiry."""

    def __init__(self, url: str, client_id: str, client_secret: str, scope: str | None) -> None:
        self._url = url
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:  # connections opened together share one request
            if self._token is None or time.monotonic() >= self._renew_at:
                self._token, lifetime = await self._fetch()
                margin = min(REFRESH_MARGIN_SECONDS, lifetime * 0.2)
                self._renew_at = time.monotonic() + lifetime - margin
            return self._token

    async def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        auth = aiohttp.BasicAuth(self._client_id, self._client_secret)
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_SECONDS)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self._url, data=form, auth=auth) as response,
            ):
                status = response.status
                body = await response.json(content_type=None) if status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TokenError(
                f"the token endpoint NUDGE_KAFKA_OAUTH_TOKEN_URL={self._url} did not answer "
                f"usably ({type(exc).__name__})"
            ) from None
        if status != 200:
            raise TokenError(
                f"the token endpoint NUDGE_KAFKA_OAUTH_TOKEN_URL={self._url} refused the client "
                f"credentials (HTTP {status}): check NUDGE_KAFKA_OAUTH_CLIENT_ID, "
                "NUDGE_KAFKA_OAUTH_CLIENT_SECRET and NUDGE_KAFKA_OAUTH_SCOPE"
            )
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise TokenError(
                f"the token endpoint NUDGE_KAFKA_OAUTH_TOKEN_URL={self._url} answered without "
                "an access_token"
            )
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 3600.0
        return token, max(lifetime, 1.0)


class _OAuthAuthenticator(aiokafka.conn.OAuthAuthenticator):
    """aiokafka 0.14's OAUTHBEARER exchange, finished as RFC 7628 (3.2.2) says.

    A broker that rejects the token answers with a JSON error and waits for the client's
    ``%x01``; aiokafka stops there and takes the connection as authenticated, so a bad
    token surfaced as empty metadata. Sending the ``%x01`` makes the broker answer with
    ``SaslAuthenticationFailed``, which every client reports like a wrong password.
    """

    _acknowledged = False

    async def step(self, payload: bytes | None) -> tuple[bytes, bool] | None:
        if self._token_sent and payload and not self._acknowledged:
            self._acknowledged = True
            return b"\x01", True
        result: tuple[bytes, bool] | None = await super().step(payload)
        return result


aiokafka.conn.OAuthAuthenticator = _OAuthAuthenticator  # type: ignore[misc]


def token_provider(settings: Settings) -> AbstractTokenProvider:
    """The provider the OAUTHBEARER settings describe (validated by the settings already)."""
    provider = _source(settings)
    if settings.kafka_oauth_extensions:
        provider.sent_extensions = extensions(settings.kafka_oauth_extensions)
    return provider


def _source(settings: Settings) -> _Provider:
    if settings.kafka_oauth_token is not None:
        return StaticTokenProvider(settings.kafka_oauth_token.get_secret_value())
    if settings.kafka_oauth_token_file is not None:
        return FileTokenProvider(settings.kafka_oauth_token_file)
    if settings.kafka_oauth_token_url and settings.kafka_oauth_client_secret:
        return ClientCredentialsTokenProvider(
            settings.kafka_oauth_token_url,
            settings.kafka_oauth_client_id or "",
            settings.kafka_oauth_client_secret.get_secret_value(),
            settings.kafka_oauth_scope,
        )
    raise TokenError(oauth_settings_problem(settings) or "no OAUTHBEARER token source")
