"""The clock seam: every daemon asks an injected :class:`Clock` for the time.

Production code uses :class:`SystemClock`; tests use
:class:`ingest.testing.FakeClock`, which moves only when told to, so polling,
settling, back-off and lag are tested without sleeping.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Wall time (aware UTC), a monotonic counter and a way to wait."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for durations)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a fake clock advances instead)."""
        ...


class SystemClock:
    """The machine's clocks; :meth:`sleep` returns early once ``interrupt`` is set."""

    def __init__(self, interrupt: threading.Event | None = None) -> None:
        self.interrupt = interrupt

    def now(self) -> datetime:
        """``datetime.now(UTC)``."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Wait, or return as soon as the interrupt event is set."""
        if seconds <= 0:
            return
        if self.interrupt is None:
            time.sleep(seconds)
        else:
            self.interrupt.wait(seconds)
