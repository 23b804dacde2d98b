"""Extra grid sinks (Redis) fed on a thread of their own: retried until they take the grid, back-filled after a wipe.

The file store is a grid's home: the worker writes it there, commits the frame,
and hands the grid to each extra sink through a :class:`SinkFeed`, which never
blocks the worker and never loses the grid:

* **Retried.** A put that fails (Redis down, a time-out, anything) stays at the
  head of the queue and is tried again after a back-off (1 s doubling to 30 s)
  until it succeeds; a grid the sink refuses as such (a ``ValueError``) is left
  out and counted. The queue is bounded (``max_queue`` grids; beyond that the oldest
  are dropped, counted, and come back with the next back-fill).
* **Back-filled.** A sink that can say which grids it lacks
  (:meth:`~serve.stores.redis_grids.RedisGridStore.missing`) is reconciled with the
  file store: when the feed starts (grids a stopped worker had not delivered),
  after every recovery from failures, and whenever the sink says it is a new
  instance (:meth:`Redis's run id <serve.stores.redis_grids.RedisGridStore.instance>`,
  asked every ``check_s``: a restart without persistence, as ltgcast runs
  Redis, forgets every grid). Every grid within ``backfill`` of each sector's
  newest scan (the sink's history window, 6 hours of scan time for Redis) that
  the sink lacks is put back from its file, in scan order. Puts are
  idempotent, so two workers back-filling one Redis, or a grid put twice,
  change nothing.
* Only the latest few grids travel in memory; the others (and every back-filled
  grid) are read back from their file when their turn comes.

Metrics: ``ltgcast_sink_errors_total`` (each failed put, retried),
``ltgcast_sink_queue`` (grids waiting), ``ltgcast_sink_backfilled_total`` and
``ltgcast_sink_dropped_total``.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from foundation.clock import Clock
from foundation.errors import LtgcastError
from foundation.retry import Retry
from ingest.events import SECTORS
from ingest.geometry import FixedGrid
from serve import metrics
from serve.stores.files import FileGridStore
from serve.stores.gridfile import GridMeta, load_grid

log = logging.getLogger(__name__)

IN_MEMORY = 4  # grids whose arrays wait in memory; the rest are read back from their files


class GridSink(Protocol):
    """Somewhere else a stored grid goes (Redis): same call as :meth:`FileGridStore.put`."""

    def put(self, probability: NDArray[np.floating[Any]], grid: FixedGrid, meta: GridMeta, *,
            encoding: str = "uint8") -> object:  # fmt: skip
        """Write (or rewrite) the grid of ``meta``."""
        ...


@dataclass
class _Item:
    path: Path
    grid_id: str
    arrays: tuple[NDArray[np.float32], FixedGrid, GridMeta] | None


class SinkFeed:
    """One extra sink behind a bounded, retried queue on its own thread.

    Parameters
    ----------
    sink
        The sink; if it has ``instance() -> str``, a change of answer triggers a back-fill.
    store
        The file store, read for grids not held in memory and for back-fills.
    clock
        For waits (an interruptible clock stops them at shutdown).
    backfill
        How far behind the clock a back-fill reaches (the sink's own history window).
    """

    def __init__(self, sink: GridSink, store: FileGridStore, clock: Clock, *, encoding: str = "uint8",
                 backfill: timedelta = timedelta(hours=6), max_queue: int = 2000, check_s: float = 30.0,
                 first_retry_s: float = 1.0, max_retry_s: float = 30.0) -> None:  # fmt: skip
        self.sink = sink
        self.store = store
        self.clock = clock
        self.encoding = encoding
        self.backfill = backfill
        self.max_queue = max_queue
        self.check_s = check_s
        self.backoff = Retry(base_s=first_retry_s, max_s=max_retry_s)  # only its delays: this loop never gives up
        self.delivered = 0
        self.failures = 0
        self.backfills = 0
        self._queue: deque[_Item] = deque()
        self._changed = threading.Condition()
        self._stop = False
        self._instance: str | None = None
        self._next_check = 0.0
        self._reconcile_due = True  # at start: grids a stopped worker did not deliver
        self._thread = threading.Thread(target=self._run, name="ltgcast-sink", daemon=True)
        self._instance_of: Callable[[], str] | None = getattr(sink, "instance", None)
        self._missing_of: Callable[[list[str]], list[str]] | None = getattr(sink, "missing", None)

    def start(self) -> SinkFeed:
        """Start the feeding thread."""
        self._thread.start()
        return self

    def __len__(self) -> int:
        with self._changed:
            return len(self._queue)

    def put(self, path: Path, probability: NDArray[np.float32], grid: FixedGrid, meta: GridMeta) -> None:
        """Queue a stored grid (its arrays kept in memory while few grids wait)."""
        self._enqueue([_Item(path, meta.grid_id, (probability, grid, meta))])

    def _enqueue(self, items: Iterable[_Item]) -> None:
        with self._changed:
            for item in items:
                self._queue.append(item)
            while len(self._queue) > self.max_queue:
                dropped = self._queue.popleft()
                metrics.SINK_DROPPED.inc()
                log.warning("sink %s: queue full, %s left out until the next back-fill", self.sink, dropped.grid_id)
            for item in list(self._queue)[:-IN_MEMORY]:
                item.arrays = None  # read back from the file when its turn comes
            metrics.SINK_QUEUE.set(len(self._queue))
            self._changed.notify_all()

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued for up to ``timeout_s``, then stop the thread (the next start reconciles the rest)."""
        with self._changed:
            deadline = self.clock.monotonic() + timeout_s
            while self._queue and self._thread.is_alive() and self.clock.monotonic() < deadline:
                self._changed.wait(0.1)
            self._stop = True
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._queue:
            log.warning("sink %s: %d grid(s) not delivered at shutdown (the next start puts them back)",
                        self.sink, len(self._queue))  # fmt: skip

    def alive(self) -> bool:
        """Whether the feeding thread runs (readiness)."""
        return self._thread.is_alive()

    def wait_empty(self, timeout_s: float) -> bool:
        """Wait until every queued grid was delivered (tests); ``False`` on time-out."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._queue, timeout=timeout_s)

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._stop or bool(self._queue) or self._reconcile_due,
                                       timeout=self.check_s)  # fmt: skip
                if self._stop:
                    return
                item = self._queue[0] if self._queue else None
            try:
                self._check_instance()
                if self._reconcile_due:
                    self._reconcile()
                if item is not None:
                    self._deliver(item)
            except Exception as exc:  # Redis away, or anything else: this thread must never die (it would stop feeding)
                failures += 1
                self.failures += 1
                metrics.SINK_ERRORS.inc()
                wait = self.backoff.delay(failures)
                log.warning("sink %s; trying again in %.0f s (%d queued)", _named(self.sink, exc), wait, len(self))
                with self._changed:
                    self._changed.wait_for(lambda: self._stop, timeout=wait)
                continue
            if failures:
                log.info("sink %s: delivering again after %d failed attempt(s)", self.sink, failures)
                self._reconcile_due = True  # what failed meanwhile may include grids dropped from a full queue
            failures = 0

    def _deliver(self, item: _Item) -> None:
        arrays = item.arrays  # once: the worker thread may drop them meanwhile
        try:
            probability, grid, meta = arrays if arrays is not None else load_grid(item.path)
        except (OSError, ValueError) as exc:  # the file went (pruned, replaced): nothing to deliver
            log.warning("sink %s: cannot read %s back (%s); left out", self.sink, item.path, exc)
            self._pop(item)
            return
        try:
            self.sink.put(probability, grid, meta, encoding=self.encoding)
        except ValueError as exc:
            if isinstance(exc, LtgcastError):
                raise
            metrics.SINK_DROPPED.inc()  # the sink refuses this grid itself: trying again cannot help
            log.error("sink %s refused %s: %s; left out", self.sink, item.grid_id, exc)
        else:
            self.delivered += 1
        self._pop(item)

    def _pop(self, item: _Item) -> None:
        with self._changed:
            if self._queue and self._queue[0] is item:
                self._queue.popleft()
            metrics.SINK_QUEUE.set(len(self._queue))
            self._changed.notify_all()

    def _check_instance(self) -> None:
        """Ask the sink who it is every ``check_s``; a new instance (a restart) forgot its grids: reconcile."""
        if self._instance_of is None or self.clock.monotonic() < self._next_check:
            return
        instance = self._instance_of()
        self._next_check = self.clock.monotonic() + self.check_s
        if self._instance is not None and instance != self._instance:
            log.warning("sink %s restarted (a new instance): putting back the grids it lost", self.sink)
            self._reconcile_due = True
        self._instance = instance

    def _reconcile(self) -> None:
        """Queue the file store's grids the sink lacks, within ``backfill`` of their sector's newest scan.

        Only grids written within ``backfill`` of now (the sink's own lifetime for them): a sector that stopped
        long ago is not brought back.
        """
        if self._missing_of is None:
            self._reconcile_due = False
            return
        grids, written_since = [], self.clock.now().timestamp() - self.backfill.total_seconds()
        for sector in SECTORS:
            newest = self.store.latest(sector)
            if newest is not None:
                grids += [g for g in self.store.grids_between(sector, newest.scan_start - self.backfill)
                          if _mtime(g.path) >= written_since]  # fmt: skip
        grids.sort(key=lambda g: g.grid.order)
        with self._changed:
            queued = {item.grid_id for item in self._queue}
        lacking = set(self._missing_of([g.grid_id for g in grids if g.grid_id not in queued]))
        fresh = [_Item(g.path, g.grid_id, None) for g in grids if g.grid_id in lacking]
        self._reconcile_due = False
        if not fresh:
            return
        self.backfills += 1
        metrics.SINK_BACKFILLED.inc(len(fresh))
        log.warning("sink %s lacks %d grid(s) of the file store %s: putting them back", self.sink, len(fresh),
                    self.store.root)  # fmt: skip
        with self._changed:
            self._queue.extendleft(reversed(fresh))  # before the live grids, in scan order
            metrics.SINK_QUEUE.set(len(self._queue))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _named(sink: object, exc: Exception) -> str:
    """``exc`` after the sink's name, once: a store's own errors already start with it (``Redis at …: …``)."""
    said, name = str(exc), str(sink)
    return said if said.startswith(name) else f"{name}: {said}"
