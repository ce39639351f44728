"""Shared fixtures: real Kafka and Redis for integration tests.

Where the services come from, in order:
1. ``NUDGE_KAFKA_BOOTSTRAP`` / ``NUDGE_REDIS_URL`` when set (CI and ``./dev test``);
2. a Docker engine, if one answers: testcontainers starts them (a user's laptop);
3. otherwise the project's own scripts start a real broker and server on free
   loopback ports for this test session and stop them at the end.
Never a mock, never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _docker_engine_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    return probe.returncode == 0


def _script_service(script: str, env_name: str, port_var: str, dir_var: str) -> Iterator[str]:
    workdir = tempfile.mkdtemp(prefix=f"nudge-{script}-")
    env = {**os.environ, port_var: "auto", dir_var: workdir}
    path = str(ROOT / "scripts" / f"{script}.sh")
    out = subprocess.run([path, "start"], env=env, capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith(f"{env_name}="))
    try:
        yield line.split("=", 1)[1]
    finally:
        subprocess.run([path, "stop"], env=env, check=False)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    if value := os.environ.get("NUDGE_KAFKA_BOOTSTRAP"):
        yield value
    elif _docker_engine_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
    else:
        yield from _script_service("kafka", "NUDGE_KAFKA_BOOTSTRAP", "KAFKA_PORT", "KAFKA_DIR")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if value := os.environ.get("NUDGE_REDIS_URL"):
        yield value
    elif _docker_engine_available():
        from testcontainers.redis import RedisContainer

        with RedisContainer() as redis:
            host, port = redis.get_container_host_ip(), redis.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0"
    else:
        yield from _script_service("redis", "NUDGE_REDIS_URL", "REDIS_PORT", "REDIS_DIR")


@pytest.fixture(autouse=True)
def cpu_hog(request: pytest.FixtureRequest) -> Iterator[None]:
    """``TEST_CPU_HOG=N``: N busy-loop processes run beside every test on real services.

    Exactness must hold on a busy machine, not only an idle one: the fault suites are run
    with ``TEST_CPU_HOG=2`` on a 2-core machine (docs/reliability.md). Off by default.
    """
    count = int(os.environ.get("TEST_CPU_HOG", "0") or 0)
    if count <= 0 or request.node.get_closest_marker("integration") is None:
        yield
        return
    hogs = [subprocess.Popen(["python3", "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
