"""Can the worker make progress? When Kafka last answered it, for readiness.

Faust's own readiness (assigned, recovered, not rebalancing) stays true while the broker
is away: the consumer keeps its assignment and retries. Here the consumer group's
coordinator is asked for the group's committed offsets every few seconds, by a client of
the worker's own: its answer means the broker is reachable with the worker's credentials
and the group can commit (Faust's commit hook cannot tell: it runs after a failed or empty
commit too).

No contact for ``NUDGE_KAFKA_PROGRESS_TIMEOUT_SECONDS``: ``/readyz`` 503 and ``nudge_ready``
0, with one warning; the next contact makes the worker ready again, with one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient

from stream.kafka_auth import aiokafka_kwargs
from stream.metrics import NudgeMetrics
from stream.settings import Settings

log = logging.getLogger("nudge.progress")

#: The coordinator is asked at most this often (more often when the timeout is short).
PROBE_INTERVAL = 5.0


class KafkaProgress:
    """The time of the last contact with Kafka, and whether it is too long ago."""

    def __init__(
        self, timeout: float, where: str = "", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.timeout = timeout
        self._where = where
        self._clock = clock
        self._last = clock()  # the start-up checks just reached Kafka
        self._reported = False

    def mark(self) -> None:
        if self._reported:
            log.info("Kafka answers the worker again after %.0f s", self.silence())
            self._reported = False
        self._last = self._clock()

    def silence(self) -> float:
        return self._clock() - self._last

    def stalled(self) -> bool:
        stalled = self.silence() > self.timeout
        if stalled and not self._reported:
            self._reported = True
            # Once per stall, so never held back as a repeat (stream.logs.RepeatFilter).
            message = (
                f"Kafka has not answered the worker for {self.silence():.0f} s: it cannot make "
                f"progress, /readyz answers 503 until it does (NUDGE_KAFKA_BOOTSTRAP "
                f"{self._where}; NUDGE_KAFKA_PROGRESS_TIMEOUT_SECONDS)"
            )
            log.warning(message.replace("%", "%%"))
        return stalled


class CoordinatorProbe:
    """Asks the group's coordinator for the group's offsets; a client kept for the worker's life."""

    def __init__(self, settings: Settings, group: str, timeout: float) -> None:
        self._settings = settings
        self._group = group
        self._timeout = timeout
        self._admin: AIOKafkaAdminClient | None = None

    async def answered(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                if self._admin is None:
                    admin = AIOKafkaAdminClient(
                        **aiokafka_kwargs(self._settings),
                        client_id=f"{self._settings.app_id}-progress",
                        request_timeout_ms=int(self._timeout * 1000),
                        retry_backoff_ms=1000,
                    )
                    try:
                        await admin.start()
                    except BaseException:
                        await self._close(admin)
                        raise
                    self._admin = admin
                await self._admin.list_consumer_group_offsets(self._group)
        except Exception as exc:
            log.debug("the group coordinator did not answer: %r", exc)
            return False
        return True

    async def close(self) -> None:
        if self._admin is not None:
            await self._close(self._admin)
            self._admin = None

    @staticmethod
    async def _close(admin: AIOKafkaAdminClient) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 5.0)


def watch_kafka(app: faust.App, settings: Settings, metrics: NudgeMetrics) -> KafkaProgress:
    """Progress marked by the coordinator's answers (a timer of ``app``)."""
    timeout = settings.kafka_progress_timeout_seconds
    progress = KafkaProgress(timeout, settings.kafka_bootstrap)
    interval = max(0.5, min(PROBE_INTERVAL, timeout / 3))
    probe = CoordinatorProbe(settings, settings.app_id, max(1.0, min(interval * 2, timeout)))

    @app.timer(interval=interval)
    async def ask_coordinator() -> None:
        if await probe.answered():
            progress.mark()
        metrics.kafka_silence.set(progress.silence())
        progress.stalled()  # the warning, once, even with nobody asking /readyz

    @app.on_before_shutdown.connect
    async def close_probe(app: faust.App, **_: Any) -> None:
        await probe.close()

    return progress
