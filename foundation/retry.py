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

A caller that talks to a server may also pass ``retryable`` (which of the
``transient`` errors are worth another try: the others are the server's answer,
re-raised at once) and a :class:`Breaker`, asked before each try and told how
each ended (``serve.scoring.tfserving.breaker.CircuitBreaker`` is one).

>>> Retry(attempts=3, base_s=0.5).call(
...     lambda: int("x"), clock, transient=(ValueError,), what="parse", retryable=lambda exc: False
... )
Traceback (most recent call last):
ValueError: invalid literal for int() with base 10: 'x'
>>> clock.slept  # the answer is not retried: no new waits
[0.5, 1.0]
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from foundation.errors import CircuitOpen
from foundation.settings import check_numbers

T = TypeVar("T")
log = logging.getLogger(__name__)


class Sleeper(Protocol):
    """What :meth:`Retry.call` asks of a clock (``foundation.clock.Clock`` is one)."""

    def sleep(self, seconds: float, /) -> None:
        """Wait ``seconds`` (a fake clock only moves)."""
        ...


class Breaker(Protocol):
    """A circuit breaker as :meth:`Retry.call` uses it.

    Before each try :meth:`allow` (``False``: the try is not made, and
    :class:`~foundation.errors.CircuitOpen` is raised, not retried); after it
    :meth:`success` when the call returned or the server answered with an error
    that is not ``retryable``, :meth:`failure` when it failed otherwise.
    """

    failures: int  # the consecutive failures that open it (named in the CircuitOpen message)

    def allow(self) -> bool:
        """Whether a try may go now."""
        ...

    def success(self) -> None:
        """The far side answered."""
        ...

    def failure(self) -> None:
        """The try failed: no answer, or one worth retrying."""
        ...


class _NoBreaker:
    failures = 0

    def allow(self) -> bool:
        return True

    def success(self) -> None:
        pass

    def failure(self) -> None:
        pass


@dataclass(frozen=True)
class Retry:
    """``attempts`` tries, waiting ``base_s``, ``base_s*factor``, … (at most ``max_s``) between them.

    No jitter: one ingest daemon per source polls, so there is no herd to spread; TF Serving's retries are
    few and short, and its circuit breaker, not the back-off, stops a storm.
    """

    attempts: int = 4
    base_s: float = 1.0
    factor: float = 2.0
    max_s: float = 30.0

    def __post_init__(self) -> None:
        check_numbers(self, counts=("attempts",), non_negative=("base_s", "max_s"), positive=("factor",))

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th consecutive failure (1-based)."""
        exponent = min(max(failures - 1, 0), 64)  # capped: a day-long outage must not overflow
        return float(min(self.max_s, self.base_s * self.factor**exponent))

    def call(
        self,
        fn: Callable[[], T],
        clock: Sleeper,
        *,
        transient: tuple[type[BaseException], ...],
        what: str,
        retryable: Callable[[BaseException], bool] | None = None,
        breaker: Breaker | None = None,
        describe: Callable[[BaseException], str] = str,
    ) -> T:
        """Call ``fn`` until it succeeds; re-raise the last transient error after ``attempts`` tries.

        ``retryable`` picks the transient errors worth another try (default: all of them); ``breaker``
        gates each try and hears its outcome (see :class:`Breaker`); ``describe`` words an error for the log.
        """
        gate = breaker if breaker is not None else _NoBreaker()
        for attempt in range(1, self.attempts + 1):
            if not gate.allow():
                msg = f"circuit breaker open ({gate.failures} consecutive failures); {what} not sent"
                raise CircuitOpen(msg)
            try:
                result = fn()
            except transient as exc:
                if retryable is not None and not retryable(exc):
                    gate.success()  # the far side is up and answered: the same request would get the same answer
                    raise
                gate.failure()
                if attempt == self.attempts:
                    raise
                wait = self.delay(attempt)
                log.warning(
                    "%s failed (try %d of %d): %s; again in %.3g s", what, attempt, self.attempts, describe(exc), wait
                )
                clock.sleep(wait)
            except BaseException:
                # Anything else (a closed channel's ValueError, an interrupt) is a failure too: the call ends
                # here, and a half-open breaker must never wait forever for the outcome of its trial call.
                gate.failure()
                raise
            else:
                gate.success()
                return result
        raise AssertionError  # unreachable: the last try returns or raises
