"""Fixtures for the deploy tests: Debian's promtool and Prometheus server (never skipped)."""

from __future__ import annotations

import pytest

from tests.deploy.deploy_support import require_binary


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_binary("promtool")


@pytest.fixture(scope="session")
def prometheus_server() -> str:
    return require_binary("prometheus")
