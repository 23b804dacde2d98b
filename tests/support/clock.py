"""In-memory twins of the ingest seams, for unit tests of logic.

The real implementations (spool on a file system, S3 endpoint, Kafka broker) are
exercised by integration tests; these twins only make the logic around them
testable without servers or sleeping.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class FakeClock:
    """A clock that moves only when :meth:`advance` or :meth:`sleep` is called.

    >>> clock = FakeClock(datetime(2024, 6, 15, 18, 0, tzinfo=UTC))
    >>> clock.sleep(90)
    >>> clock.now().isoformat()
    '2024-06-15T18:01:30+00:00'
    >>> clock.slept
    [90]
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            msg = "FakeClock needs a timezone-aware start time, got a naive one"
            raise ValueError(msg)
        self._now = start.astimezone(UTC)
        self._monotonic = 0.0
        self.slept: list[float] = []

    def now(self) -> datetime:
        """The fake wall time."""
        return self._now

    def monotonic(self) -> float:
        """Seconds advanced since creation."""
        return self._monotonic

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds

    def sleep(self, seconds: float) -> None:
        """Record the wait and advance by it."""
        self.slept.append(seconds)
        self.advance(max(seconds, 0.0))

    def wait_for(self, event: threading.Event, seconds: float) -> bool:
        """Whether ``event`` is set now; if not, record the wait and advance by it (nothing can set it meanwhile)."""
        if event.is_set():
            return True
        self.sleep(seconds)
        return event.is_set()

    def set(self, when: datetime) -> None:
        """Jump the wall clock (never backwards)."""
        if when < self._now:
            msg = f"FakeClock cannot go back from {self._now.isoformat()} to {when.isoformat()}"
            raise ValueError(msg)
        self.advance((when - self._now).total_seconds())
