"""Start-up checks of settings and of this machine: one readable line with the fix."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from stream.preflight import PreflightError, check_web_port, lock_data_dir
from stream.settings import Settings, SettingsError, load_settings
from stream.topics import default_replication


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()[0]


@pytest.mark.parametrize("url", ["redis://r:6379/0", "rediss://r:6380/1", "unix:///tmp/r.sock"])
def test_redis_urls_are_accepted(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    assert load(monkeypatch, NUDGE_REDIS_URL=url).redis_url == url


def test_a_redis_url_of_another_scheme_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match=r"NUDGE_REDIS_URL='http://x': is not a Redis URL"):
        load(monkeypatch, NUDGE_REDIS_URL="http://x")


def test_only_the_supported_stores(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load(monkeypatch, NUDGE_STORE="memory://").store == "memory://"
    with pytest.raises(SettingsError, match=r"NUDGE_STORE='postgres://'.*rocksdb:// or memory://"):
        load(monkeypatch, NUDGE_STORE="postgres://")


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT"])
def test_sasl_without_credentials_names_the_settings(
    monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load(monkeypatch, NUDGE_KAFKA_SECURITY_PROTOCOL=protocol, NUDGE_KAFKA_SASL_PASSWORD="pw")
    assert str(caught.value) == (
        f"NUDGE_KAFKA_SECURITY_PROTOCOL={protocol} needs NUDGE_KAFKA_SASL_USERNAME "
        "(mechanism NUDGE_KAFKA_SASL_MECHANISM=PLAIN); without SASL use SSL or PLAINTEXT"
    )
    settings = load(monkeypatch, NUDGE_KAFKA_SASL_USERNAME="shop")
    assert settings.kafka_sasl_username == "shop"


def test_replication_defaults_to_three_at_most() -> None:
    assert [default_replication(Settings(), brokers) for brokers in (1, 2, 3, 5)] == [1, 2, 3, 3]
    assert default_replication(Settings(replication_factor=2), 5) == 2


def test_a_port_in_use_is_named_with_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            PreflightError, match=rf"127.0.0.1:{port} is already in use.*NUDGE_WEB_PORT"
        ):
            check_web_port("127.0.0.1", port)
    check_web_port("127.0.0.1", port)  # free again


def test_a_host_not_of_this_machine_is_named() -> None:
    with pytest.raises(PreflightError, match=r"192\.0\.2\.1 is not an address of this machine"):
        check_web_port("192.0.2.1", 6066)


HOLD = """
import sys, time
from pathlib import Path
from stream.preflight import lock_data_dir
lock_data_dir(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(60)
"""


def test_a_data_dir_locked_by_another_process_is_refused_until_it_exits(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(PreflightError) as caught:
            lock_data_dir(tmp_path)
        assert (
            f"NUDGE_DATA_DIR={tmp_path} is in use by another Nudge worker (pid {holder.pid})"
            in str(caught.value)
        )
    finally:
        holder.kill()
        holder.wait()
    handle = lock_data_dir(tmp_path)  # the lock went with the process
    handle.close()
