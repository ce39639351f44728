"""Progress of a long ``nudge replay``: events, rate and, when the size is known, ETA.

Printed to stderr every few seconds whether or not it is a terminal (a job's log
shows a replay is alive): on a terminal one line is rewritten in place, elsewhere
each report is a line of its own. The clock is injected (tests pass their own).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

CHECK_EVERY = 1024  # lines between two looks at the clock


class Progress:
    def __init__(
        self,
        stream: TextIO,
        *,
        size: int | None,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        terminal: bool | None = None,
    ) -> None:
        self.stream = stream
        self.size = size
        self.every = every
        self.clock = clock
        self.terminal = stream.isatty() if terminal is None else terminal
        self.started = clock()
        self._next = self.started + every
        self._shown = False

    def due(self) -> bool:
        return self.clock() >= self._next

    def show(self, events: int, position: int | None) -> None:
        """Report ``events`` lines read, ``position`` bytes into the input (None: unknown)."""
        now = self.clock()
        self._next = now + self.every
        self.stream.write(("\r" if self.terminal else "") + self.line(events, position, now))
        self.stream.write("\x1b[K" if self.terminal else "\n")
        self.stream.flush()
        self._shown = True

    def line(self, events: int, position: int | None, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = events / elapsed
        text = f"replay: {events:,} events, {rate:,.0f} events/s, {_clock(elapsed)} elapsed"
        if self.size and position is not None:
            share = min(position / self.size, 1.0)
            text += f", {100 * share:.0f}%"
            if share > 0:
                text += f", ETA {_clock(elapsed * (1 - share) / share)}"
        return text

    def done(self) -> None:
        """Clear the rewritten line on a terminal (the summary follows)."""
        if self.terminal and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _clock(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
