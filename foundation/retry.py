"""Retry with exponential back-off, on an injected clock: the one retry loop of ingest and TF Serving.

>>> class Recorder:  # a clock that records its waits instead of sleeping
...     slept: list[float] = []
...     def sleep(self, seconds): self.slept.append(seconds)
>>> calls = []
>>> def flaky():
...     calls.append(1)
...     if len(calls) < 3:
...         raise TimeoutError("slow listing")
...     return "ok"
>>> clock = Recorder()
>>> Retry(attempts=4, base_s=0.5).call(flaky, clock, transient=(TimeoutError,), what="list")
'ok'
>>> clock.slept
[0.5, 1.0]
>>> Retry(base_s=2.0, max_s=60.0).delay(5000)  # a day of failed polls does not overflow
60.0
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from foundation.clock import Clock

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retry:
    """``attempts`` tries, waiting ``base_s``, ``base_s*factor``, … (at most ``max_s``) between them.

    No jitter: one ingest daemon per source polls, so there is no herd to spread.
    """

    attempts: int = 4
    base_s: float = 1.0
    factor: float = 2.0
    max_s: float = 30.0

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th consecutive failure (1-based)."""
        exponent = min(max(failures - 1, 0), 64)  # capped: a day-long outage must not overflow
        return float(min(self.max_s, self.base_s * self.factor**exponent))

    def call(
        self,
        fn: Callable[[], T],
        clock: Clock,
        *,
        transient: tuple[type[BaseException], ...],
        what: str,
    ) -> T:
        """Call ``fn`` until it succeeds; re-raise the last transient error after ``attempts`` tries."""
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except transient as exc:
                if attempt == self.attempts:
                    raise
                wait = self.delay(attempt)
                log.warning("%s failed (try %d of %d): %s; again in %.1f s", what, attempt, self.attempts, exc, wait)
                clock.sleep(wait)
        msg = f"Retry.attempts must be >= 1, got {self.attempts}"
        raise ValueError(msg)
