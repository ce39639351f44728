"""Starting a Kafka client for a command (``nudge simulate``, ``nudge tail``).

One deadline for reaching Kafka (``NUDGE_KAFKA_STARTUP_TIMEOUT_SECONDS``), a stop
request (SIGINT, SIGTERM) honoured while waiting, and one readable reason when the
broker cannot be used, instead of a client library's traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Protocol

from aiokafka.errors import KafkaConnectionError, KafkaError

from stream.broker_probe import BrokerUnusable, wait_for_broker
from stream.kafka_auth import aiokafka_kwargs, ssl_context
from stream.settings import Settings, bootstrap_addresses


class KafkaUnavailable(RuntimeError):
    """Kafka could not be reached or used; the message says where and what to check."""


class _Client(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


#: The stop signals received since the last stop_on_signals(): after SIGINT (Ctrl-C),
#: ``nudge`` exits 130.
received: list[signal.Signals] = []


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (call inside the running loop)."""
    received.clear()
    stop = asyncio.Event()
    quiet_client_logs()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stop, stop, sig)
    return stop


def _stop(stop: asyncio.Event, sig: signal.Signals) -> None:
    received.append(sig)
    stop.set()


def quiet_client_logs() -> None:
    """The command reports Kafka problems itself, once: no aiokafka log lines besides."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def unreachable(settings: Settings, reason: str | BaseException) -> KafkaUnavailable:
    if isinstance(reason, KafkaConnectionError):
        text = "no broker accepts connections there"
    elif isinstance(reason, BaseException):
        text = str(reason.args[0]) if reason.args else type(reason).__name__
    else:
        text = reason
    return KafkaUnavailable(
        f"cannot use Kafka at {settings.kafka_bootstrap}: {text}. "
        "Is the broker running? Check NUDGE_KAFKA_BOOTSTRAP"
    )


async def sleep_or_stop(seconds: float, stop: asyncio.Event) -> bool:
    """Sleep ``seconds`` unless a stop is requested first; True if it was."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def start_client(client: _Client, settings: Settings, stop: asyncio.Event) -> bool:
    """Start ``client``; False if a stop was requested first. Raises KafkaUnavailable."""
    timeout = settings.kafka_startup_timeout_seconds
    try:
        answered = await _tls_answers(settings, stop)
    except KafkaUnavailable:
        await _stop_quietly(client)
        raise
    if not answered:
        await _stop_quietly(client)
        return False
    starting = asyncio.ensure_future(client.start())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, timeout=timeout, return_when="FIRST_COMPLETED")
    finally:
        stopping.cancel()
    if starting.done() and not starting.cancelled():
        error = starting.exception()
        if error is None:
            return True
        await _stop_quietly(client)
        if isinstance(error, KafkaError | OSError):
            raise unreachable(settings, error) from None
        raise error
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await starting
    await _stop_quietly(client)
    if stop.is_set():
        return False
    raise unreachable(settings, f"no answer within {timeout:g} s")


async def _tls_answers(settings: Settings, stop: asyncio.Event) -> bool:
    """With TLS or SASL on, a handshake that cannot succeed (a plaintext listener, an unknown
    CA, a refused password or token) is named at once, where the client would retry until
    the deadline. False on a stop."""
    context = ssl_context(settings)
    sasl = settings.kafka_security_protocol.startswith("SASL")
    if context is None and not sasl:
        return True
    addresses = bootstrap_addresses(settings.kafka_bootstrap)
    probing = asyncio.ensure_future(
        wait_for_broker(
            addresses,
            context,
            settings.kafka_startup_timeout_seconds,
            auth=aiokafka_kwargs(settings) if sasl else None,
        )
    )
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({probing, stopping}, return_when="FIRST_COMPLETED")
    finally:
        stopping.cancel()
    if not probing.done():
        probing.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await probing
        return False
    error = probing.exception()
    if isinstance(error, BrokerUnusable):
        raise KafkaUnavailable(str(error)) from None
    if error is not None:
        raise error
    return True


async def _stop_quietly(client: _Client) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.stop(), 5.0)
