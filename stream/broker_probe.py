"""Does the bootstrap address speak Kafka? A pre-flight check, before any Kafka client starts.

Kafka clients retry blindly: a host name with a typo fails only after a minute, and a
port that is not Kafka (Redis, an HTTP server) answers with bytes the client reads as a
huge frame length, so it waits for its request timeout again and again. Here each address
gets one ``ApiVersions`` request (allowed before SASL authentication); the answer tells:

- a host name that does not resolve, a TLS handshake that fails, an answer that is not
  Kafka: :class:`BrokerUnusable` at once, with the address and what was found there;
- connection refused, no answer yet: retried until the deadline (the broker may be
  starting beside us), then :class:`BrokerUnusable` with the last reason per address.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import time
from collections.abc import Mapping
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError

API_VERSIONS = 18
MAX_FRAME = 1 << 20  # an ApiVersions answer is a few hundred bytes
ATTEMPT_TIMEOUT = 3.0
RETRY_PAUSE = 0.5


class BrokerUnusable(RuntimeError):
    """No bootstrap address can be used; the message says why for each address."""


class _Fatal(Exception):
    """This address will not work however long we wait."""


class _NotYet(Exception):
    """This address may work later (refused, closed, silent)."""


class _Silent(_NotYet):
    """Connected, but no answer to the Kafka request."""


def _request(correlation_id: int) -> bytes:
    client_id = b"nudge-probe"
    body = struct.pack(">hhih", API_VERSIONS, 0, correlation_id, len(client_id)) + client_id
    # The trailing CRLF is not part of the frame: a Kafka broker answers the frame first and
    # never gets to the incomplete next one, while line-based servers (Redis, HTTP) answer
    # the line instead of waiting for its end forever.
    return struct.pack(">i", len(body)) + body + b"\r\n"


def _tls_hint(head: bytes) -> str:
    if head[:1] == b"\x15" and head[1:2] == b"\x03":  # a TLS alert record
        return " but a TLS alert: set NUDGE_KAFKA_SECURITY_PROTOCOL to SSL or SASL_SSL"
    return ""


def _printable(data: bytes) -> str:
    text = data.decode("latin-1")
    return "".join(c if c.isprintable() else "." for c in text).strip(".")[:60]


async def _answer_kind(reader: asyncio.StreamReader, correlation_id: int, timeout: float) -> None:
    """Return if the answer is a Kafka ApiVersions response, else raise."""
    try:
        head = await asyncio.wait_for(reader.readexactly(4), timeout)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise _Fatal(f"answered {_printable(exc.partial)!r}, which is not Kafka") from None
        raise _NotYet("closed the connection without answering") from None
    except TimeoutError:
        raise _Silent(
            f"accepted the connection but did not answer a Kafka request in {timeout:.0f} s "
            "(is it a Kafka listener?)"
        ) from None
    size = struct.unpack(">i", head)[0]
    if not 4 <= size <= MAX_FRAME:
        try:
            more = await asyncio.wait_for(reader.read(80), 0.3)
        except (TimeoutError, OSError):
            more = b""
        raise _Fatal(f"answered {_printable(head + more)!r}, which is not Kafka{_tls_hint(head)}")
    try:
        payload = await asyncio.wait_for(reader.readexactly(size), timeout)
    except (asyncio.IncompleteReadError, TimeoutError):
        raise _Fatal("sent a truncated answer, which is not Kafka") from None
    if struct.unpack(">i", payload[:4])[0] != correlation_id:
        raise _Fatal("answered with a wrong correlation id, which is not Kafka")


async def probe_address(
    host: str, port: int, context: ssl.SSLContext | None, timeout: float = ATTEMPT_TIMEOUT
) -> None:
    """One ApiVersions round trip; raises :class:`_Fatal` or :class:`_NotYet` with a reason."""
    loop = asyncio.get_running_loop()
    try:
        await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            raise _NotYet(f"host name {host!r} does not resolve yet ({exc.strerror})") from None
        raise _Fatal(f"host name {host!r} does not resolve ({exc.strerror})") from None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=context, server_hostname=host if context else None
            ),
            timeout,
        )
    except ssl.SSLError as exc:
        raise _Fatal(
            f"TLS handshake failed ({exc.reason or exc}); is it a TLS listener, and does "
            "NUDGE_KAFKA_SSL_CAFILE hold its CA?"
        ) from None
    except TimeoutError:
        raise _NotYet(f"no connection within {timeout:.0f} s") from None
    except OSError as exc:
        if context is not None and not isinstance(exc, ConnectionRefusedError):
            await _plaintext_instead(host, port, timeout)
        raise _NotYet(exc.strerror or str(exc) or type(exc).__name__) from None
    try:
        correlation_id = int(time.monotonic() * 1000) & 0x7FFFFFFF
        writer.write(_request(correlation_id))
        await writer.drain()
        await _answer_kind(reader, correlation_id, timeout)
    except _Silent:
        await _identify(host, port, context, timeout)
        raise
    except ssl.SSLError as exc:
        raise _Fatal(f"TLS error ({exc.reason or exc})") from None
    except (ConnectionError, OSError) as exc:
        raise _NotYet(exc.strerror or str(exc) or type(exc).__name__) from None
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def _plaintext_instead(host: str, port: int, timeout: float) -> None:
    """After a TLS handshake the server cut short: raise :class:`_Fatal` if it speaks
    Kafka without TLS (a plaintext listener closes the connection on a ClientHello)."""
    try:
        await probe_address(host, port, None, timeout)
    except (_Fatal, _NotYet):
        return
    raise _Fatal(
        "TLS handshake failed: the server closed the connection during the handshake, and "
        "it answers Kafka requests without TLS: a plaintext listener. Set "
        "NUDGE_KAFKA_SECURITY_PROTOCOL to PLAINTEXT (or SASL_PLAINTEXT), or point "
        "NUDGE_KAFKA_BOOTSTRAP at the broker's TLS listener"
    )


async def _identify(host: str, port: int, context: ssl.SSLContext | None, timeout: float) -> None:
    """Raise :class:`_Fatal` if a server silent to Kafka answers a text line (Redis, HTTP...).

    Redis waits for a newline that never comes in a Kafka frame (it stops at the first NUL
    byte). A Kafka broker reads the line as an oversized frame and closes the connection.
    """
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=context, server_hostname=host if context else None
            ),
            timeout,
        )
    except (OSError, TimeoutError):
        return
    try:
        writer.write(b"PING\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(80), timeout)
    except (OSError, TimeoutError):
        answer = b""
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
    if answer:
        raise _Fatal(
            f"does not answer Kafka requests but answered {_printable(answer)!r} to a line of "
            "text: it is not a Kafka listener"
        )


async def wait_for_broker(
    addresses: list[tuple[str, int]],
    context: ssl.SSLContext | None,
    timeout: float,
    *,
    setting: str = "NUDGE_KAFKA_BOOTSTRAP",
    auth: Mapping[str, Any] | None = None,
) -> None:
    """Return once one address answers as a Kafka broker; else :class:`BrokerUnusable`.

    Fails at once when every address is unusable for good, at ``timeout`` otherwise.
    ``auth``: the aiokafka client arguments (``stream.kafka_auth.aiokafka_kwargs``); with
    SASL, the broker that answered is asked to authenticate once, and a refusal (a wrong
    password, a rejected token) fails at once, naming the settings.
    """
    deadline = time.monotonic() + timeout
    reasons: dict[tuple[str, int], str] = {}
    while True:
        fatal = 0
        for host, port in addresses:
            left = deadline - time.monotonic()
            try:
                await probe_address(host, port, context, max(0.1, min(ATTEMPT_TIMEOUT, left)))
            except _Fatal as exc:
                reasons[host, port] = str(exc)
                fatal += 1
            except _NotYet as exc:
                reasons[host, port] = str(exc)
            else:
                if auth is not None and auth.get("sasl_mechanism"):
                    await authenticate(host, port, auth, max(1.0, left))
                return
        if fatal == len(addresses):
            raise BrokerUnusable(_explain(reasons, setting, waited=None))
        if time.monotonic() + RETRY_PAUSE >= deadline:
            raise BrokerUnusable(_explain(reasons, setting, waited=timeout))
        await asyncio.sleep(RETRY_PAUSE)


async def authenticate(host: str, port: int, auth: Mapping[str, Any], timeout: float) -> None:
    """One SASL authentication on a broker that answers Kafka; :class:`BrokerUnusable` if
    the broker refuses the credentials (retrying cannot help). Timeouts are left to the
    client that follows."""
    options = {key: value for key, value in auth.items() if key != "bootstrap_servers"}
    mechanism = options.get("sasl_mechanism")
    try:
        conn = await asyncio.wait_for(
            create_conn(host, port, request_timeout_ms=int(timeout * 1000), **options), timeout
        )
    except (TimeoutError, ConnectionError, OSError):
        return
    except KafkaError as exc:
        raise BrokerUnusable(_refused(host, port, mechanism, exc)) from None
    except Exception as exc:  # the token provider's own error (stream.oauth_token.TokenError)
        raise BrokerUnusable(
            f"cannot authenticate to Kafka at {host}:{port} with SASL {mechanism}: {exc}"
        ) from None
    conn.close()


def _refused(host: str, port: int, mechanism: object, exc: KafkaError) -> str:
    if mechanism == "OAUTHBEARER":
        check = (
            "check the token: NUDGE_KAFKA_OAUTH_TOKEN_URL / _CLIENT_ID / _CLIENT_SECRET / "
            "_SCOPE, NUDGE_KAFKA_OAUTH_TOKEN_FILE or NUDGE_KAFKA_OAUTH_TOKEN"
        )
    else:
        check = "check NUDGE_KAFKA_SASL_USERNAME and NUDGE_KAFKA_SASL_PASSWORD"
    detail = str(exc.args[0]) if exc.args else type(exc).__name__
    return (
        f"Kafka at {host}:{port} refused SASL {mechanism} authentication "
        f"({type(exc).__name__}: {detail}): {check} (NUDGE_KAFKA_SASL_MECHANISM="
        f"{mechanism}, NUDGE_KAFKA_SECURITY_PROTOCOL)"
    )


def _explain(reasons: dict[tuple[str, int], str], setting: str, waited: float | None) -> str:
    found = "; ".join(f"{host}:{port} {reason}" for (host, port), reason in reasons.items())
    when = f" after {waited:.0f} s" if waited is not None else ""
    # A reason that names the setting to change is the hint; else the address is suspect.
    hint = "" if "NUDGE_KAFKA_SECURITY_PROTOCOL" in found else f". Check {setting}"
    return f"cannot reach Kafka{when}: {found}{hint}"
