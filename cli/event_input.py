"""Opening an events file for ``nudge replay``: plain or gzip, and refusing binary data.

Gzip is recognised by its magic bytes (``1f 8b``), not the file name, so ``-``
(stdin) and renamed files work too. The first 64 KiB (after decompression) must
look like text: no NUL byte, valid UTF-8 (a multi-byte character cut at the end
of the sample is fine). Anything else is refused with :class:`NotEventText`
before a single line is replayed, instead of reporting every line as invalid.
"""

from __future__ import annotations

import codecs
import gzip
import io
import os
from dataclasses import dataclass
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
SAMPLE = 64 * 1024
BUFFER = 1024 * 1024


class NotEventText(ValueError):
    """The input is not JSON Lines text (binary, or another encoding than UTF-8)."""


class _Prefixed(io.RawIOBase):
    """``head`` followed by the rest of ``stream``: puts back bytes already read."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = memoryview(head)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


@dataclass(slots=True)
class EventInput:
    """The lines to read, and where the underlying file is (for progress)."""

    lines: BinaryIO
    raw: BinaryIO  # the file as opened: its position, for the share read
    size: int | None  # bytes of the file as opened (compressed size for gzip), if known
    compressed: bool

    def position(self) -> int | None:
        try:
            return self.raw.tell()
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        self.lines.close()
        self.raw.close()


def open_events(path: str, stdin: BinaryIO) -> EventInput:
    """Open ``path`` (``-`` for ``stdin``). Raises OSError or NotEventText."""
    raw = stdin if path == "-" else open(path, "rb")  # noqa: SIM115 - closed by EventInput
    try:
        return _wrap(path, raw)
    except BaseException:
        if raw is not stdin:
            raw.close()
        raise


def _wrap(path: str, raw: BinaryIO) -> EventInput:
    size = _size_of(raw)
    rewind = _seekable(raw)  # a regular file: read the samples, then start again
    start = raw.tell() if rewind else 0
    magic = _read_exactly(raw, len(GZIP_MAGIC))
    if rewind:
        raw.seek(start)
    stream = raw if rewind else _replayed(magic, raw)
    compressed = magic == GZIP_MAGIC
    if compressed:
        stream = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[assignment]
    try:
        sample = _read_exactly(stream, SAMPLE)
        if rewind:
            stream.seek(0)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise NotEventText(f"{path} is not readable gzip data ({exc})") from None
    _check_text(path, sample, compressed)
    return EventInput(stream if rewind else _replayed(sample, stream), raw, size, compressed)


def _seekable(raw: BinaryIO) -> bool:
    try:
        return raw.seekable()
    except (OSError, ValueError):
        return False


def _replayed(head: bytes, stream: BinaryIO) -> BinaryIO:
    if not head:
        return stream
    return io.BufferedReader(_Prefixed(head, stream), buffer_size=BUFFER)  # type: ignore[return-value]


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes; fewer only at the end of the stream (pipes return what they have)."""
    parts: list[bytes] = []
    left = n
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _check_text(path: str, sample: bytes, compressed: bool) -> None:
    what = "decompressed data" if compressed else "file"
    if b"\x00" in sample:
        raise NotEventText(
            f"{path} is binary data, not JSON Lines (its {what} holds NUL bytes); "
            "replay reads one JSON event per line, plain or gzip-compressed"
        )
    try:
        # A character cut by the end of the sample is fine, not at the end of the input.
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=len(sample) < SAMPLE)
    except UnicodeDecodeError as exc:
        raise NotEventText(
            f"{path} is not UTF-8 text (byte {exc.start} of its {what}); "
            "replay reads one JSON event per line in UTF-8, plain or gzip-compressed"
        ) from None


def _size_of(raw: BinaryIO) -> int | None:
    try:
        size = os.fstat(raw.fileno()).st_size
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    return size or None
