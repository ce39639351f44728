"""Start-up checks of this machine, before anything connects: the data directory and the web port.

Each failure is one :class:`PreflightError` whose message names the setting and the fix,
instead of a RocksDB ``LOCK`` traceback half a minute later or an ``OSError(98)`` from
the web server.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path
from typing import IO

LOCK_NAME = "nudge.lock"

#: The lock file of this process's data directory, open (and locked) until it exits.
_held: list[IO[str]] = []


class PreflightError(RuntimeError):
    """This machine cannot run the worker as configured; the message says what to change."""


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Lock ``data_dir`` for this process's lifetime (``fcntl.flock`` on ``nudge.lock``).

    Raises :class:`PreflightError` when another worker holds it. The lock goes with the
    process (a crash or ``kill -9`` included): no stale lock to clean up.
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = (data_dir / LOCK_NAME).open("a+")
    except OSError as exc:
        raise PreflightError(
            f"cannot use NUDGE_DATA_DIR={data_dir}: {exc.strerror or exc} "
            "(it must be a directory this user may write)"
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise PreflightError(
            f"NUDGE_DATA_DIR={data_dir} is in use by another Nudge worker{who}: each worker "
            "needs its own data directory. Give this one another NUDGE_DATA_DIR (and "
            "NUDGE_WEB_PORT), or stop the other worker first"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _held.append(handle)
    return handle


def check_web_port(host: str, port: int) -> None:
    """Raise :class:`PreflightError` if the web server could not listen on ``host:port``."""
    if port == 0:
        return  # any free port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PreflightError(_bind_failure(host, port, exc)) from None


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"the web port {where} is already in use by another process (NUDGE_WEB_PORT={port}): "
            "stop that process, or set NUDGE_WEB_PORT to a free port (each worker on a machine "
            "needs its own)"
        )
    if exc.errno == errno.EACCES:
        return (
            f"not allowed to listen on {where} (NUDGE_WEB_PORT={port}): ports below 1024 need "
            "privileges; use a port above 1023"
        )
    if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(exc, socket.gaierror):
        return (
            f"cannot listen on {where}: {host} is not an address of this machine "
            "(NUDGE_WEB_HOST; 0.0.0.0 listens on every address)"
        )
    return f"cannot listen on {where} (NUDGE_WEB_HOST, NUDGE_WEB_PORT): {exc.strerror or exc}"
