"""Settings validated up front: readable errors naming the variable, did-you-mean warnings."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from stream.settings import (
    SettingsError,
    bootstrap_addresses,
    load_settings,
    setting_names,
    unknown_setting_warnings,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No NUDGE_* variable from the caller's shell, no .env file in the working directory."""
    for name in list(os.environ):
        if name.upper().startswith("NUDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_load_without_warnings() -> None:
    settings, warnings = load_settings()
    assert warnings == []
    assert settings.kafka_startup_timeout_seconds == 30.0
    assert settings.log_level == "INFO"


def test_a_misspelt_name_is_warned_with_the_closest_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NUDGE_TOPC_CART", "shop.carts")
    monkeypatch.setenv("NUDGE_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    _, warnings = load_settings()
    assert warnings == [
        "NUDGE_KAFKA_BOOTSTRAP_SERVERS is not a Nudge setting and is ignored "
        "(did you mean NUDGE_KAFKA_BOOTSTRAP?)",
        "NUDGE_TOPC_CART is not a Nudge setting and is ignored (did you mean NUDGE_TOPIC_CART?)",
    ]


def test_names_without_a_close_setting_get_no_suggestion() -> None:
    assert unknown_setting_warnings(["NUDGE_ZZZ", "HOME", "NUDGE_WEB_PORT", "nudge_web_port"]) == [
        "NUDGE_ZZZ is not a Nudge setting and is ignored"
    ]


def test_names_in_the_env_file_are_checked_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("NUDGE_REDIS_UR=redis://r:6379/0\nNUDGE_APP_ID=shop\n")
    settings, warnings = load_settings()
    assert settings.app_id == "shop"
    assert warnings == [
        "NUDGE_REDIS_UR is not a Nudge setting and is ignored (did you mean NUDGE_REDIS_URL?)"
    ]


def test_a_bad_value_is_one_readable_message_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NUDGE_PARTITIONS", "abc")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value) == (
        "NUDGE_PARTITIONS='abc': Input should be a valid integer, "
        "unable to parse string as an integer"
    )


def test_every_bad_value_is_named_and_warnings_travel_with_the_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NUDGE_WEB_PORT", "70000")
    monkeypatch.setenv("NUDGE_KAFKA_STARTUP_TIMEOUT_SECONDS", "0")
    monkeypatch.setenv("NUDGE_KAFKA_SECURITY_PROTOCOL", "TLS")
    monkeypatch.setenv("NUDGE_LOG_LEVLE", "debug")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "NUDGE_WEB_PORT='70000': Input should be less than or equal to 65535" in message
    assert "NUDGE_KAFKA_STARTUP_TIMEOUT_SECONDS='0': Input should be greater than 0" in message
    assert "NUDGE_KAFKA_SECURITY_PROTOCOL='TLS': Input should be 'PLAINTEXT'" in message
    assert "\n" not in message
    assert caught.value.warnings == [
        "NUDGE_LOG_LEVLE is not a Nudge setting and is ignored (did you mean NUDGE_LOG_LEVEL?)"
    ]


@pytest.mark.parametrize(("given", "level"), [("debug", "DEBUG"), (" Warning ", "WARNING")])
def test_log_levels_are_accepted_in_any_case(
    monkeypatch: pytest.MonkeyPatch, given: str, level: str
) -> None:
    monkeypatch.setenv("NUDGE_LOG_LEVEL", given)
    assert load_settings()[0].log_level == level


def test_an_unknown_log_level_is_refused_before_anything_connects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NUDGE_LOG_LEVEL", "verbose")
    with pytest.raises(SettingsError, match=r"NUDGE_LOG_LEVEL='verbose': must be one of DEBUG"):
        load_settings()


def test_bootstrap_addresses_are_parsed() -> None:
    assert bootstrap_addresses("kafka-1:9092, kafka-2:9093") == [
        ("kafka-1", 9092),
        ("kafka-2", 9093),
    ]
    assert bootstrap_addresses("[::1]:9092") == [("::1", 9092)]


@pytest.mark.parametrize("bad", ["kafka", "kafka:", ":9092", "kafka:0", "kafka:70000", "a:1,,b:2"])
def test_a_bootstrap_that_is_not_host_port_is_refused(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("NUDGE_KAFKA_BOOTSTRAP", bad)
    with pytest.raises(SettingsError, match=r"NUDGE_KAFKA_BOOTSTRAP=.* is not HOST:PORT"):
        load_settings()


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### Configuration", 1)[1].split("\n#", 1)[0]
    listed = set(re.findall(r"`(NUDGE_[A-Z_]+)`", table))
    assert sorted(set(setting_names()) - listed) == []
    assert sorted(listed - set(setting_names())) == []
