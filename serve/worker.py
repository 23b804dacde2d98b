"""The nowcast worker: ``FrameEvent`` in, probability grid stored and ``GridEvent`` out.

Each poll:

1. Every message is parsed. GLM granules go into an index by time. ABI frames
   that are not the model's band, not a wanted sector, or older than
   ``max_age_s`` are counted and let go; a broken event is counted and
   dead-lettered. A frame already scored in this process is a duplicate.
2. A band-13 frame waits until the GLM granules of its satellite cover its
   ``ltg`` window (the 15 minutes before the scan), or until ``glm_deadline_s``
   after it arrived; then it is scored with what there is, and the grid records
   the granules used and how many 20-second granules were missing.
3. Ready frames are scored in scan order: read, featurize, score, store (the
   grid id makes a replay rewrite the same grid), announce a ``GridEvent``.
   A frame that cannot be read or scored is counted and dead-lettered; the
   worker goes on.
4. Offsets are committed per partition only up to the first message not yet
   done, so a frame still waiting for GLM (or a crash) never lets a later
   commit skip it: uncommitted messages come again after a restart.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from featurize.examples import Flashes
from ingest.abi import AbiImage
from ingest.bus import Bus, Message
from ingest.clock import Clock
from ingest.errors import EventError, FrameDecodeError, IngestError
from ingest.events import DEADLETTER_TOPIC, FRAMES_TOPIC, GRIDS_TOPIC, DeadLetterEvent, FrameEvent, GridEvent
from ingest.glm import MIN_COVERAGE, GlmGranule, span_coverage
from ingest.ncio import iso_utc, parse_utc
from ingest.readers import read_product
from serve.gridfile import GridMeta
from serve.nowcast import IR_BAND, nowcast_frame
from serve.scoring import Scorer
from serve.store import FileGridStore

log = logging.getLogger(__name__)

GRANULE_S = 20.0  # a GLM LCFA file spans 20 s


@dataclass(frozen=True)
class WorkerSettings:
    """What the worker scores and how long it waits."""

    sectors: frozenset[str] = frozenset({"C", "F", "M1", "M2"})
    glm_deadline_s: float = 90.0
    max_age_s: float = 3600.0
    horizon: timedelta = timedelta(minutes=30)
    encoding: str = "uint8"
    group: str = "ltgcast-worker"
    poll_timeout_s: float = 1.0


@dataclass
class _Pending:
    message: Message
    event: FrameEvent
    scan_start: datetime
    arrived: datetime


@dataclass
class _Ledger:
    """Messages of one partition in offset order, with whether each is done."""

    entries: list[list[Any]] = field(default_factory=list)  # [offset, done, message]


class NowcastWorker:
    """Consumes frame events from ``bus``; stores grids in ``store``; announces them on ``bus``."""

    def __init__(self, bus: Bus, scorer: Scorer, store: FileGridStore, clock: Clock,
                 settings: WorkerSettings | None = None) -> None:  # fmt: skip
        self.bus, self.scorer, self.store, self.clock = bus, scorer, store, clock
        self.settings = settings or WorkerSettings()
        self.subscription = bus.subscribe([FRAMES_TOPIC], self.settings.group)
        self.glm: dict[str, tuple[datetime, datetime, FrameEvent]] = {}
        self.pending: list[_Pending] = []
        self.scored: set[tuple[str, str, datetime]] = set()
        self.newest: dict[str, datetime] = {}
        self.ledgers: dict[tuple[str, int], _Ledger] = {}
        self.outcomes: Counter[str] = Counter()
        self.grids: list[GridEvent] = []

    # -- one poll ---------------------------------------------------------------------------------------------------
    def step(self, timeout_s: float | None = None) -> int:
        """Poll once, handle what came and what is ready; return the number of messages received."""
        messages = self.subscription.poll(self.settings.poll_timeout_s if timeout_s is None else timeout_s)
        for message in messages:
            self.ledgers.setdefault((message.topic, message.partition), _Ledger()).entries.append(
                [message.offset, False, message]
            )
            self._receive(message)
        self._score_ready()
        self._commit()
        self._prune()
        return len(messages)

    def idle(self) -> bool:
        """Nothing is waiting for GLM."""
        return not self.pending

    def close(self) -> None:
        """Leave the consumer group (uncommitted messages will come again)."""
        self.subscription.close()

    # -- receiving --------------------------------------------------------------------------------------------------
    def _done(self, message: Message, outcome: str) -> None:
        self.outcomes[outcome] += 1
        for entry in self.ledgers[(message.topic, message.partition)].entries:
            if entry[0] == message.offset:
                entry[1] = True

    def _receive(self, message: Message) -> None:
        try:
            event = FrameEvent.from_json(message.value)
        except EventError as exc:
            log.warning("worker: a broken event at %s/%d@%d: %s", message.topic, message.partition, message.offset, exc)
            self._dead_letter(f"offset {message.offset}", message.key, "event", str(exc))
            self._done(message, "bad_event")
            return
        s = self.settings
        start = parse_utc(event.scan_start)
        if event.family.startswith("GLM"):
            self.glm[event.name] = (start, parse_utc(event.scan_end), event)
            self._done(message, "glm")
            return
        if event.band != IR_BAND:
            self._done(message, "other_band")
        elif event.sector not in s.sectors:
            self._done(message, "other_sector")
        elif (self.clock.now() - start).total_seconds() > s.max_age_s:
            self._done(message, "too_old")
        elif (event.satellite, str(event.sector), start) in self.scored | {
            (f.event.satellite, str(f.event.sector), f.scan_start) for f in self.pending
        }:
            self._done(message, "duplicate")
        else:
            self.pending.append(_Pending(message, event, start, self.clock.now()))

    # -- scoring ----------------------------------------------------------------------------------------------------
    def _window(self, frame: _Pending) -> tuple[datetime, datetime]:
        return frame.scan_start - timedelta(minutes=self.scorer.feature_set.window_minutes), frame.scan_start

    def _granules(self, frame: _Pending) -> tuple[list[FrameEvent], float]:
        """Granules of the frame's satellite overlapping its window, and the fraction of the window they cover."""
        lo, hi = self._window(frame)
        chosen = sorted(
            (g for g in self.glm.values() if g[2].satellite == frame.event.satellite and g[1] > lo and g[0] < hi),
            key=lambda g: g[0],
        )
        return [g[2] for g in chosen], span_coverage([(g[0], g[1]) for g in chosen], lo, hi)

    def _score_ready(self) -> None:
        now = self.clock.now()
        waiting = []
        for frame in sorted(self.pending, key=lambda f: f.scan_start):
            granules, coverage = self._granules(frame)
            late = (now - frame.arrived).total_seconds() >= self.settings.glm_deadline_s
            if coverage >= MIN_COVERAGE or late:
                self._score(frame, granules, coverage)
            else:
                waiting.append(frame)
        self.pending = waiting

    def _score(self, frame: _Pending, granules: list[FrameEvent], coverage: float) -> None:
        event = frame.event
        try:
            image = read_product(event.uri)
            if not isinstance(image, AbiImage):
                raise FrameDecodeError(event.uri, "expected an ABI image")
            flashes, used, unreadable = _read_flashes(granules)
            window_s = self.scorer.feature_set.window_minutes * 60.0
            missing = int(round((1.0 - coverage) * window_s / GRANULE_S)) + unreadable
            result = nowcast_frame(image, flashes, self.scorer)
            meta = GridMeta(
                satellite=event.satellite, sector=str(event.sector), scan_start=frame.scan_start,
                valid_time=frame.scan_start + self.settings.horizon, model_name=self.scorer.name,
                model_version=self.scorer.version, abi_file=event.name, glm_files=tuple(used), glm_missing=missing,
                extra={"filled": result.filled, "seconds": result.seconds},
            )  # fmt: skip
            stored = self.store.put(result.probability, image.grid, meta, encoding=self.settings.encoding)
        except (FrameDecodeError, IngestError, OSError, ValueError) as exc:
            log.warning("worker: could not score %s: %s", event.name, exc)
            self._dead_letter(event.name, event.key, "score", str(exc), event.source_uri)
            self._done(frame.message, "failed")
            return
        grid = GridEvent(
            grid_id=meta.grid_id, satellite=meta.satellite, sector=meta.sector, scan_start=iso_utc(frame.scan_start),
            valid_time=iso_utc(meta.valid_time), model_name=meta.model_name, model_version=meta.model_version,
            uri=str(stored.path), frame=event.name, glm_used=len(used), glm_missing=missing,
            created=iso_utc(self.clock.now()),
        )  # fmt: skip
        self.bus.publish(GRIDS_TOPIC, grid.key, grid.to_json())
        self.grids.append(grid)
        key = (event.satellite, str(event.sector), frame.scan_start)
        self.scored.add(key)
        newest = self.newest.get(key[1])
        outcome = "scored_out_of_order" if newest is not None and frame.scan_start < newest else "scored"
        self.newest[key[1]] = max(frame.scan_start, newest or frame.scan_start)
        self._done(frame.message, outcome)

    def _dead_letter(self, name: str, key: str, stage: str, reason: str, source: str = "") -> None:
        letter = DeadLetterEvent(name, key, stage, reason, source, None, iso_utc(self.clock.now()))
        self.bus.publish(DEADLETTER_TOPIC, key, letter.to_json())

    # -- bookkeeping ------------------------------------------------------------------------------------------------
    def _commit(self) -> None:
        for ledger in self.ledgers.values():
            last = None
            while ledger.entries and ledger.entries[0][1]:
                last = ledger.entries.pop(0)[2]
            if last is not None:
                self.subscription.commit(last)

    def _prune(self) -> None:
        horizon = self.clock.now() - timedelta(seconds=self.settings.max_age_s + 3600.0)
        self.glm = {name: g for name, g in self.glm.items() if g[1] >= horizon}
        self.scored = {k for k in self.scored if k[2] >= horizon}


def _read_flashes(granules: list[FrameEvent]) -> tuple[Flashes, list[str], int]:
    """Flashes of the readable granules, their names, and how many could not be read."""
    parts, used = [], []
    unreadable = 0
    for event in granules:
        try:
            granule = read_product(Path(event.uri))
        except (FrameDecodeError, IngestError, OSError) as exc:
            log.warning("worker: leaving out GLM granule %s: %s", event.name, exc)
            unreadable += 1
            continue
        if isinstance(granule, GlmGranule):
            parts.append(granule.flashes)
            used.append(event.name)
    return Flashes.concat(parts), used, unreadable
