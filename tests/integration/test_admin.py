"""The admin endpoint on a live worker: off by default, bearer token, no user data elsewhere."""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from tests.integration.harness import WorkerGroup, produce, wait_for

pytestmark = pytest.mark.integration

TOKEN = "s3cret-admin-token-for-tests"


def get(port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_admin_endpoint_needs_the_token_and_is_off_by_default(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("default_timezone: UTC\ntriggers:\n  cart_abandonment: {stages: [1s]}\n")
    group = WorkerGroup(
        kafka_bootstrap, redis_url, rules, tmp_path, extra_env={"NUDGE_ADMIN_TOKEN": TOKEN}
    )
    off = WorkerGroup(kafka_bootstrap, redis_url, rules, tmp_path / "off")
    (tmp_path / "off").mkdir()
    try:
        worker = group.start()
        at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        event = {
            "event_id": "adm-1",
            "type": "cart_item_added",
            "user_id": "shopper-7",
            "ts": at,
            "product_id": "p-1",
            "unit_price": 9.5,
        }
        await produce(group, [event])
        await wait_for(group, "triggers", lambda rs: len(rs) >= 1)
        path = "/admin/users/shopper-7"
        assert get(worker.port, path)[0] == 401
        assert get(worker.port, path, "wrong-token-wrong-token")[0] == 401
        status, body = get(worker.port, path, TOKEN)
        assert status == 200, body
        assert b"shopper-7" in body and orjson.loads(body)
        assert get(worker.port, "/admin/users/nobody", TOKEN)[0] == 404
        for public in ("/metrics", "/healthz", "/readyz"):
            assert b"shopper-7" not in get(worker.port, public)[1]

        quiet = off.start()
        assert get(quiet.port, path, TOKEN)[0] == 404  # no endpoint without the setting
    finally:
        group.stop_all()
        off.stop_all()
