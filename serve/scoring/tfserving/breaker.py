"""The ``tfserving`` scorer's circuit breaker, one per transport, and the gauge that shows its state.

``ltgcast_scorer_circuit_state{backend="tfserving", transport}`` is 0 closed,
1 half-open, 2 open (see the package docstring for when it is set).
:class:`CircuitBreaker` is a :class:`foundation.retry.Breaker`:
:meth:`foundation.retry.Retry.call` asks it before each try and tells it how the try ended.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from monitor.metrics import SCORER_CIRCUIT
from serve.scoring.tfserving.errors import TFSERVING

log = logging.getLogger(__name__)

#: Breaker state → the value of ``ltgcast_scorer_circuit_state``.
CIRCUIT_STATES = {"closed": 0, "half-open": 1, "open": 2}


class CircuitBreaker:
    """Consecutive failures open it; after a cool-down one trial call decides (thread-safe).

    ``on_change`` hears the state when the breaker is built and each time a call
    (:meth:`allow`, :meth:`success`, :meth:`failure`) finds it changed; it is
    called under the breaker's lock, so in order, and must not call the breaker.

    >>> now, seen = [0.0], []
    >>> breaker = CircuitBreaker(failures=2, cooldown_s=10.0, clock=lambda: now[0], on_change=seen.append)
    >>> breaker.failure(); breaker.failure(); breaker.state
    'open'
    >>> breaker.allow()
    False
    >>> now[0] = 10.0; breaker.state, breaker.allow(), breaker.allow()
    ('half-open', True, False)
    >>> breaker.success(); breaker.state
    'closed'
    >>> seen
    ['closed', 'open', 'half-open', 'closed']
    """

    def __init__(
        self,
        failures: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial = False
        self._told = ""
        with self._lock:
            self._tell()

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "open" if self._clock() - self._opened_at < self.cooldown_s else "half-open"

    def _tell(self) -> None:
        """Pass the state to ``on_change`` if it is not the one told last (hold the lock)."""
        state = self._state()
        if state != self._told:
            self._told = state
            if self._on_change is not None:
                self._on_change(state)

    def allow(self) -> bool:
        """Whether a call may go now (half-open: the one trial call only)."""
        with self._lock:
            state = self._state()
            allowed = state == "closed" or (state == "half-open" and not self._trial)
            if state == "half-open" and allowed:
                self._trial = True
            self._tell()
            return allowed

    def success(self) -> None:
        """The server answered: close."""
        with self._lock:
            self._consecutive, self._opened_at, self._trial = 0, None, False
            self._tell()

    def failure(self) -> None:
        """A retryable failure: count it; open at the limit, or at once after a failed trial."""
        with self._lock:
            self._consecutive += 1  # only a success resets it, so a failed trial re-opens at once
            if self._consecutive >= self.failures:
                if self._opened_at is None or self._trial:
                    log.warning("circuit breaker opens after %d consecutive failures", self._consecutive)
                self._opened_at, self._trial = self._clock(), False
            self._tell()


def circuit_gauge(transport: str) -> Callable[[str], None]:
    """An ``on_change`` that exports a breaker's state as ``ltgcast_scorer_circuit_state{tfserving, transport}``."""
    gauge = SCORER_CIRCUIT.labels(TFSERVING, transport)
    return lambda state: gauge.set(CIRCUIT_STATES[state])
