"""The worker's lightning context: GLM granule events by satellite and time, and their flashes.

Every worker reads the whole GLM topic (``ltgcast.glm.v1``, :meth:`ingest.bus.Bus.broadcast`),
so each holds the same index whatever partitions of the frame topic it owns. A
frame's ``ltg`` window (the 15 minutes before its scan) is **complete** when the
granules cover at least :data:`~ingest.glm.MIN_COVERAGE` of it *and* the
satellite's GLM stream has reached the window's end (a granule ending at or
after the scan start has arrived). Granules are announced in time order, so
once the stream has passed the window nothing more will come for it (a real
gap in NOAA's feed stays a gap): two workers that score the same frame, before
and after a crash or a rebalance, use the same granules and make the same grid.

A granule event whose scan starts more than ``future_tolerance_s`` after the
clock is refused (:func:`foundation.clock.too_far_ahead`): it would mark the
satellite's stream as having "reached" every window up to 2099, so frames
would be scored before their real GLM arrived.

Flashes are read from a granule's file when a frame first needs them and kept
in a bounded least-recently-used cache (successive frames share 14 of their 15
minutes). Granules older than the prune horizon are forgotten.
"""

from __future__ import annotations

import bisect
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from featurize.examples import Flashes
from foundation.clock import FUTURE_TOLERANCE_S, too_far_ahead
from foundation.errors import EventError, FrameDecodeError, IngestError
from ingest.events import FrameEvent, local_path
from ingest.glm import MIN_COVERAGE, GlmGranule, span_coverage

log = logging.getLogger(__name__)

#: A GLM LCFA file spans 20 s; an event claiming more than this is refused (it would "cover" whole windows).
MAX_GRANULE_S = 60.0


class GranuleFlashes(NamedTuple):
    """The flashes of some granules, the granules they came from, and those that could not be read."""

    flashes: Flashes
    used: list[str]
    unreadable: int
    io_errors: int  # of the unreadable: an I/O error (trying again may help), not a broken file


@dataclass(frozen=True)
class Window:
    """The granules of one satellite overlapping a time window, and how complete they are."""

    granules: tuple[FrameEvent, ...]
    coverage: float  # fraction of the window the granules cover
    reached: bool  # the satellite's GLM stream has reached the window's end

    @property
    def complete(self) -> bool:
        """Covered (up to real gaps) and nothing more to wait for."""
        return self.reached and self.coverage >= MIN_COVERAGE


class GlmIndex:
    """GLM granule events by satellite and scan start, with a bounded cache of their flashes.

    Parameters
    ----------
    cache_granules
        How many granules' flashes are kept in memory (least recently used go first).
    read
        Reads a granule file (``ingest.readers.read_product``); a seam for tests.
    now
        The clock (the worker's ``clock.now``; system time by default).
    future_tolerance_s
        How far a granule's scan start may lie ahead of ``now()`` before it is refused.
    """

    def __init__(self, read: Callable[[Path], Any], cache_granules: int = 400, *,
                 now: Callable[[], datetime] | None = None,
                 future_tolerance_s: float = FUTURE_TOLERANCE_S) -> None:  # fmt: skip
        self._read = read
        self._cache_size = cache_granules
        self._now = now or (lambda: datetime.now(UTC))
        self._future_tolerance_s = future_tolerance_s
        self._starts: dict[str, list[tuple[datetime, str]]] = {}  # satellite -> sorted (start, name)
        self._events: dict[str, FrameEvent] = {}
        self._reached: dict[str, datetime] = {}  # satellite -> latest granule end seen
        self._flashes: OrderedDict[str, Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self._events)

    def add(self, event: FrameEvent) -> bool:
        """Index a granule; ``False`` when it was already known.

        ``EventError`` for one that is not a granule, spans more than :data:`MAX_GRANULE_S`, or starts more than
        ``future_tolerance_s`` after the clock.
        """
        if not event.is_glm:
            msg = f"expected a GLM granule event, found {event.family} {event.name}"
            raise EventError(msg)
        start, end = event.start, event.end
        if not 0.0 < (end - start).total_seconds() <= MAX_GRANULE_S:
            msg = f"a GLM granule spans up to {MAX_GRANULE_S:g} s; {event.name} claims {start}..{end}"
            raise EventError(msg)
        ahead = too_far_ahead(start, self._now(), self._future_tolerance_s)
        if ahead is not None:
            msg = f"GLM granule {event.name} is from the future: {ahead}"
            raise EventError(msg)
        if event.name in self._events:
            return False
        self._events[event.name] = event
        bisect.insort(self._starts.setdefault(event.satellite, []), (start, event.name))
        self._reached[event.satellite] = max(end, self._reached.get(event.satellite, end))
        return True

    def newest(self) -> datetime | None:
        """The latest granule end over every satellite, or ``None`` when the index is empty."""
        return max(self._reached.values(), default=None)

    def window(self, satellite: str, lo: datetime, hi: datetime) -> Window:
        """The satellite's granules overlapping ``[lo, hi]`` (by start), their coverage, whether GLM reached ``hi``."""
        starts = self._starts.get(satellite, [])
        first = bisect.bisect_left(starts, (lo - timedelta(seconds=MAX_GRANULE_S), ""))
        chosen = []
        for start, name in starts[first:]:
            if start >= hi:
                break
            event = self._events[name]
            if event.end > lo:
                chosen.append(event)
        coverage = span_coverage([(e.start, e.end) for e in chosen], lo, hi)
        reached = self._reached.get(satellite)
        return Window(tuple(chosen), coverage, reached is not None and reached >= hi)

    def prune(self, horizon: datetime) -> int:
        """Forget granules that ended before ``horizon`` (and their flashes); return how many."""
        gone = [name for name, event in self._events.items() if event.end < horizon]
        for name in gone:
            event = self._events.pop(name)
            self._starts[event.satellite].remove((event.start, name))
            self._flashes.pop(name, None)
        return len(gone)

    def flashes(self, granules: Iterable[FrameEvent]) -> GranuleFlashes:
        """Flashes of the readable granules, their names, how many could not be read (and of those, by I/O)."""
        parts, used = [], []
        unreadable = io_errors = 0
        for event in granules:
            cached = self._flashes.get(event.name)
            if cached is None:
                try:
                    granule = self._read(local_path(event.uri))
                except (FrameDecodeError, IngestError, EventError, OSError) as exc:
                    log.warning("worker: leaving out GLM granule %s: %s", event.name, exc)
                    unreadable += 1
                    io_errors += isinstance(exc, OSError)  # a shared volume's hiccup may pass
                    continue
                if not isinstance(granule, GlmGranule) or granule.name.name != event.name:
                    log.warning("worker: leaving out %s: %s holds no such GLM granule", event.name, event.uri)
                    unreadable += 1
                    continue
                cached = granule.flashes
                self._flashes[event.name] = cached
                while len(self._flashes) > self._cache_size:
                    self._flashes.popitem(last=False)
            else:
                self._flashes.move_to_end(event.name)
            parts.append(cached)
            used.append(event.name)
        return GranuleFlashes(Flashes.concat(parts), used, unreadable, io_errors)

    @property
    def cached(self) -> int:
        """Granules whose flashes are in memory."""
        return len(self._flashes)
