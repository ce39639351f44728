"""OAUTHBEARER settings: one token source, readable errors, what the clients receive."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import faust.auth
import pytest

from stream.kafka_auth import aiokafka_kwargs, faust_credentials
from stream.oauth_token import FileTokenProvider, TokenError
from stream.settings import SettingsError, load_settings

pytestmark = pytest.mark.unit

OAUTH = {"NUDGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "NUDGE_KAFKA_SASL_MECHANISM": "OAUTHBEARER"}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("NUDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in {**OAUTH, **env}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    return str(caught.value)


def test_oauthbearer_needs_one_token_source(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "needs a token source: NUDGE_KAFKA_OAUTH_TOKEN_URL" in load(monkeypatch)
    both = load(monkeypatch, NUDGE_KAFKA_OAUTH_TOKEN="t", NUDGE_KAFKA_OAUTH_TOKEN_FILE="/t")
    assert "takes one token source" in both


def test_a_token_url_needs_the_client_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    message = load(monkeypatch, NUDGE_KAFKA_OAUTH_TOKEN_URL="https://idp.example/token")
    assert "NUDGE_KAFKA_OAUTH_CLIENT_ID and NUDGE_KAFKA_OAUTH_CLIENT_SECRET" in message
    assert "not an http(s):// URL" in load(monkeypatch, NUDGE_KAFKA_OAUTH_TOKEN_URL="idp/token")


def test_bad_extensions_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    message = load(monkeypatch, NUDGE_KAFKA_OAUTH_TOKEN="t", NUDGE_KAFKA_OAUTH_EXTENSIONS="lkc")
    assert "NUDGE_KAFKA_OAUTH_EXTENSIONS 'lkc' is not KEY=VALUE" in message


def test_the_token_and_extensions_reach_aiokafka_and_faust(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("tok-1\n")
    for name, value in {
        **OAUTH,
        "NUDGE_KAFKA_OAUTH_TOKEN_FILE": str(token),
        "NUDGE_KAFKA_OAUTH_EXTENSIONS": "logicalCluster=lkc-1,identityPoolId=pool-2",
    }.items():
        monkeypatch.setenv(name, value)
    settings, _ = load_settings()
    kwargs = aiokafka_kwargs(settings)
    assert kwargs["sasl_mechanism"] == "OAUTHBEARER" and "sasl_plain_password" not in kwargs
    provider = kwargs["sasl_oauth_token_provider"]
    assert asyncio.run(provider.token()) == "tok-1"
    token.write_text("tok-2")  # renewed by a sidecar: read again at the next connection
    assert asyncio.run(provider.token()) == "tok-2"
    assert provider.extensions() == {"logicalCluster": "lkc-1", "identityPoolId": "pool-2"}
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.auth.OAuthCredentials)
    assert credentials.protocol.value == "SASL_SSL" and credentials.ssl_context is not None


def test_an_unreadable_token_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(TokenError, match="cannot read NUDGE_KAFKA_OAUTH_TOKEN_FILE"):
        asyncio.run(FileTokenProvider(tmp_path / "missing").token())
