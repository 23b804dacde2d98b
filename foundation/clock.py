"""The clock seam: every daemon asks an injected :class:`Clock` for the time.

Production code uses :class:`SystemClock`; tests use
:class:`tests.support.clock.FakeClock`, which moves only when told to, so polling,
settling, back-off and lag are tested without sleeping.

:func:`too_far_ahead` is the one rule for input from the future: a file or an
event whose scan starts more than a tolerance (``--future-tolerance-s``,
default :data:`FUTURE_TOLERANCE_S`) after the clock is refused by the ingest
daemon, the worker and the GLM index, and ignored by the grid store, so one
mislabelled or forged file can neither take over "latest" nor make real files
look old.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

T = TypeVar("T")

#: How far (seconds) a scan start may lie ahead of the clock before the input is refused as from the future.
FUTURE_TOLERANCE_S = 300.0
#: How often :meth:`SystemClock.wait_for` looks at the interrupt while it waits for another event.
INTERRUPT_CHECK_S = 0.1


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

    def wait_for(self, event: threading.Event, seconds: float) -> bool:
        """Wait until ``event`` is set or ``seconds`` pass; whether it was set (a fake clock advances instead)."""
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

    def wait_for(self, event: threading.Event, seconds: float) -> bool:
        """Wait until ``event`` is set, ``seconds`` pass or the interrupt is set; whether ``event`` was set."""
        if self.interrupt is None:
            return event.wait(max(seconds, 0.0))
        end = time.monotonic() + seconds
        while not self.interrupt.is_set():
            left = end - time.monotonic()
            if left <= 0:
                break
            if event.wait(min(left, INTERRUPT_CHECK_S)):
                return True
        return event.is_set()


def too_far_ahead(scan_start: datetime, now: datetime, tolerance_s: float) -> str | None:
    """Why a scan starting at ``scan_start`` is refused as from the future at ``now``, or ``None``.

    >>> from datetime import timedelta
    >>> now = datetime(2024, 6, 15, 18, 0, tzinfo=UTC)
    >>> too_far_ahead(now + timedelta(seconds=300), now, 300.0) is None
    True
    >>> print(too_far_ahead(now + timedelta(seconds=301), now, 300.0))  # doctest: +NORMALIZE_WHITESPACE
    scan start 2024-06-15T18:05:01Z is 301 s ahead of the clock (2024-06-15T18:00:00Z);
    expected at most 300 s ahead (--future-tolerance-s)
    """
    ahead = (scan_start - now).total_seconds()
    if ahead <= tolerance_s:
        return None
    return (
        f"scan start {scan_start:%Y-%m-%dT%H:%M:%SZ} is {ahead:.0f} s ahead of the clock ({now:%Y-%m-%dT%H:%M:%SZ}); "
        f"expected at most {tolerance_s:g} s ahead (--future-tolerance-s)"
    )


def wait_until(condition: Callable[[], T | None], what: str, limit_s: float = 60.0, every_s: float = 0.1) -> T:
    """Poll ``condition`` until it returns something truthy, and return that; :class:`TimeoutError` naming ``what``.

    For benchmarks and tests that wait on real processes: ``limit_s`` is a liveness bound, never a timing
    assertion. ``condition`` may raise to stop early (a process it watches has exited).

    >>> calls = []
    >>> wait_until(lambda: calls.append(1) or len(calls) >= 3 and "ready", "three calls", every_s=0.0)
    'ready'
    >>> wait_until(lambda: None, "a miracle", limit_s=0.0)
    Traceback (most recent call last):
    ...
    TimeoutError: not within 0 s: a miracle
    """
    deadline = time.monotonic() + limit_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            msg = f"not within {limit_s:.0f} s: {what}"
            raise TimeoutError(msg)
        time.sleep(every_s)
