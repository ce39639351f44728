"""scripts/kafka.sh never reports someone else's broker as its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import ROOT

pytestmark = pytest.mark.integration

PORT_CHECK = [sys.executable, str(ROOT / "scripts" / "port_check.py")]


def test_start_on_a_port_in_use_fails_with_the_fix(kafka_bootstrap: str, tmp_path: Path) -> None:
    port = kafka_bootstrap.rsplit(":", 1)[1]  # the session's broker: already there
    env = {**os.environ, "KAFKA_PORT": port, "KAFKA_DIR": str(tmp_path / "kafka")}

    run = subprocess.run(
        [str(ROOT / "scripts" / "kafka.sh"), "start"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert run.returncode == 1
    assert "NUDGE_KAFKA_BOOTSTRAP" not in run.stdout
    assert f"kafka.sh: port {port} on 127.0.0.1 is already in use" in run.stderr
    assert "KAFKA_PORT=auto" in run.stderr
    assert "broker ready" not in run.stderr


def test_the_owner_of_a_port_is_the_process_listening_on_it() -> None:
    listener = subprocess.Popen([sys.executable, "-c", LISTEN], stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout is not None
        port = listener.stdout.readline().strip()
        assert subprocess.run([*PORT_CHECK, "owns", str(listener.pid), port]).returncode == 0
        assert subprocess.run([*PORT_CHECK, "owns", str(os.getpid()), port]).returncode == 1
        assert subprocess.run([*PORT_CHECK, "free", port]).returncode == 1
    finally:
        listener.kill()
        listener.wait()
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", int(port)))  # free once its owner is gone
    assert subprocess.run([*PORT_CHECK, "free", port]).returncode == 0


LISTEN = """
import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(60)
"""
