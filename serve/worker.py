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
5. At most every ``lag_interval_s`` (10 s, on the injected clock; on Kafka it
   asks the brokers), the subscription's lag goes to
   ``ltgcast_consumer_lag_messages{topic, partition}``: the messages after the
   group's committed offset, so a frame waiting for GLM and the messages behind
   it count as lag until it is done. Partitions this worker no longer reads are
   dropped from the gauge, all of them on an empty answer (no partitions: a
   rebalance, or more workers than partitions); a read that fails is logged and
   counted (``ltgcast_consumer_lag_errors_total``), and the gauge keeps its
   last values.

Scorer errors are counted by the scorers themselves
(``ltgcast_scorer_errors_total``, see :mod:`serve.scoring`): the worker sees a
failed frame after featurizing and scoring together and cannot tell which failed.

Models: the worker takes one :class:`~serve.hotswap.ServingModels` snapshot per
frame (``models.current()``), so a hot-swap lands between two frames and a grid
is never made by two versions; every grid records the name and version that made
it. When a shadow model is set, it scores the same input after the stable grid
is stored, into ``shadow_store`` (its metadata says ``role: shadow``); a
shadow failure is logged and never affects the stable grid.

Sinks: the file store is the grid's home (its path is the event's URI); every
extra sink (Redis) gets the grid after it, and a sink that fails is logged and
counted but never loses the grid or stops the worker.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from concurrent import futures
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from featurize.examples import Flashes, LabelRule, frame_labels
from ingest.abi import AbiImage
from ingest.bus import Bus, Message
from ingest.clock import Clock
from ingest.errors import EventError, FrameDecodeError, IngestError, LtgcastError, ScoringError
from ingest.events import (
    DEADLETTER_TOPIC,
    FRAMES_TOPIC,
    GRIDS_TOPIC,
    DeadLetterEvent,
    FrameEvent,
    GridEvent,
    local_path,
)
from ingest.geometry import FixedGrid
from ingest.glm import MIN_COVERAGE, GlmGranule, span_coverage
from ingest.glm import Flashes as GlmFlashes
from ingest.ncio import iso_utc, parse_utc
from ingest.readers import read_product
from monitor import metrics as monitoring
from monitor.drift import DriftMonitor, scene_of
from monitor.quality import InputQuality, record_age, record_input, record_prediction
from monitor.verify import LiveSkill, score_grid
from serve import metrics
from serve.gridfile import GridMeta
from serve.hotswap import ServingModels
from serve.nowcast import IR_BAND, Nowcast, nowcast_frame
from serve.scoring import Scorer
from serve.store import FileGridStore

log = logging.getLogger(__name__)

GRANULE_S = 20.0  # a GLM LCFA file spans 20 s
RECENT_GRIDS = 1000
MAX_DRIFT_QUEUE = 8  # frames waiting for the drift monitor's thread
SECTOR_LABELS = frozenset({"C", "F", "M1", "M2"})


@dataclass(frozen=True)
class WorkerSettings:
    """What the worker scores and how long it waits."""

    sectors: frozenset[str] = frozenset({"C", "F", "M1", "M2"})
    glm_deadline_s: float = 90.0
    max_age_s: float = 3600.0  # frames older than this on arrival are let go; inf: no limit (replays)
    horizon: timedelta = timedelta(minutes=30)
    encoding: str = "uint8"
    group: str = "ltgcast-worker"
    poll_timeout_s: float = 1.0
    verify: bool = True  # score each grid against the flashes of its 30 minutes once they are in
    verify_deadline_s: float = 600.0  # after the label window (or arrival, on replays) GLM may still complete it
    verify_window: int = 12  # grids per sector in the rolling live scores
    max_awaiting: int = 128  # grids held in memory for verification; the oldest beyond are dropped (counted)
    lag_interval_s: float = 10.0  # seconds between two reads of the consumer lag (a broker round trip on Kafka)


class GridSink(Protocol):
    """Somewhere else a stored grid goes (Redis): same call as :meth:`FileGridStore.put`."""

    def put(self, probability: NDArray[np.floating[Any]], grid: FixedGrid, meta: GridMeta, *,
            encoding: str = "uint8") -> object:  # fmt: skip
        """Write (or rewrite) the grid of ``meta``."""
        ...


@runtime_checkable
class ModelSource(Protocol):
    """Where the worker gets the models for the next frame (:class:`serve.hotswap.ModelSlot`)."""

    def current(self) -> ServingModels:
        """The stable model (and shadow) to use for one whole frame."""
        ...


class FixedModels:
    """One scorer for the worker's whole life (no hot-swap)."""

    def __init__(self, scorer: Scorer) -> None:
        self._models = ServingModels(stable=scorer)

    def current(self) -> ServingModels:
        """Always the same scorer."""
        return self._models


@dataclass
class _Pending:
    message: Message
    event: FrameEvent
    scan_start: datetime
    arrived: datetime


@dataclass
class _Awaiting:
    """A stored grid waiting for the flashes of its label window."""

    frame: _Pending
    grid: FixedGrid
    probability: NDArray[np.float32]
    rule: LabelRule  # the model card's, as in training

    @property
    def sector(self) -> str:
        return str(self.frame.event.sector)


@dataclass
class _Ledger:
    """Messages of one partition in offset order, with whether each is done."""

    entries: list[list[Any]] = field(default_factory=list)  # [offset, done, message]


class NowcastWorker:
    """Consumes frame events from ``bus``; stores grids in ``store``; announces them on ``bus``."""

    def __init__(self, bus: Bus, models: Scorer | ModelSource, store: FileGridStore, clock: Clock,
                 settings: WorkerSettings | None = None, *, sinks: tuple[GridSink, ...] = (),
                 shadow_store: FileGridStore | None = None, drift: DriftMonitor | None = None) -> None:  # fmt: skip
        self.bus, self.store, self.clock = bus, store, clock
        self.models: ModelSource = models if isinstance(models, ModelSource) else FixedModels(models)
        self.sinks = sinks
        self.drift = drift or DriftMonitor()
        self._drift_thread = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ltgcast-drift")
        self._drift_jobs: list[futures.Future[None]] = []
        self.shadow_store = shadow_store or FileGridStore(store.root / "shadow")
        self.settings = settings or WorkerSettings()
        self.subscription = bus.subscribe([FRAMES_TOPIC], self.settings.group)
        self.glm: dict[str, tuple[datetime, datetime, FrameEvent]] = {}
        self.pending: list[_Pending] = []
        self.scored: set[tuple[str, str, datetime]] = set()
        self.newest: dict[str, datetime] = {}
        self.ledgers: dict[tuple[str, int], _Ledger] = {}
        self.outcomes: Counter[str] = Counter()
        self.grids: deque[GridEvent] = deque(maxlen=RECENT_GRIDS)  # the last grids announced (bounded: runs for months)
        self.grids_made = 0
        self.last_step = clock.monotonic()
        self.flash_cache: dict[str, GlmFlashes] = {}  # granule name -> its flashes (windows of frames overlap)
        self.awaiting: list[_Awaiting] = []
        self._glm_arrived = False  # since the last verification pass
        self._next_verify = 0.0  # monotonic time of the next pass even without new GLM (to give up on grids)
        self.live = LiveSkill(self.settings.verify_window)
        self._next_lag = clock.monotonic()  # the first step reads the lag
        self._lag_labels: set[tuple[str, str]] = set()  # (topic, partition) this worker last exported
        self.lag_errors = 0  # lag reads that raised (logged)

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
        self._verify_ready()
        self._commit()
        self._report_lag()
        self._prune()
        metrics.PENDING.set(len(self.pending))
        self.last_step = self.clock.monotonic()
        return len(messages)

    def idle(self) -> bool:
        """Nothing is waiting for GLM."""
        return not self.pending

    def close(self) -> None:
        """Leave the consumer group (uncommitted messages will come again); finish the queued drift work."""
        self.subscription.close()
        self._drift_thread.shutdown(wait=True)

    # -- receiving --------------------------------------------------------------------------------------------------
    def _done(self, message: Message, outcome: str) -> None:
        self.outcomes[outcome] += 1
        if outcome != "glm":
            sector = message.key if message.key in SECTOR_LABELS else "other"  # bounded, whatever a bad event says
            monitoring.FRAMES.labels(sector, outcome).inc()
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
            self._glm_arrived = True
            monitoring.GLM_RECEIVED.labels(event.satellite).inc()
            self._done(message, "glm")
            return
        if event.band == IR_BAND and event.sector in s.sectors:
            record_age(str(event.sector), "ingest", start, parse_utc(event.ingest_time))
        if event.band != IR_BAND:
            self._done(message, "other_band")
        elif event.sector not in s.sectors:
            self._done(message, "other_sector")
        elif (self.clock.now() - start).total_seconds() > s.max_age_s:
            self._done(message, "too_old")
        elif self._known((event.satellite, str(event.sector), start)):
            self._done(message, "duplicate")
        else:
            self.pending.append(_Pending(message, event, start, self.clock.now()))

    def _known(self, key: tuple[str, str, datetime]) -> bool:
        """Scored already, or waiting to be."""
        return key in self.scored or any(
            (f.event.satellite, str(f.event.sector), f.scan_start) == key for f in self.pending
        )

    # -- scoring ----------------------------------------------------------------------------------------------------
    def _glm_between(self, satellite: str, lo: datetime, hi: datetime) -> list[tuple[datetime, datetime, FrameEvent]]:
        """The satellite's granules overlapping ``[lo, hi]``, by start."""
        return sorted((g for g in self.glm.values() if g[2].satellite == satellite and g[1] > lo and g[0] < hi),
                      key=lambda g: g[0])  # fmt: skip

    def _granules(self, frame: _Pending, scorer: Scorer) -> tuple[list[FrameEvent], float]:
        """Granules of the frame's satellite overlapping its window, and the fraction of the window they cover."""
        lo, hi = frame.scan_start - timedelta(minutes=scorer.feature_set.window_minutes), frame.scan_start
        chosen = self._glm_between(frame.event.satellite, lo, hi)
        return [g[2] for g in chosen], span_coverage([(g[0], g[1]) for g in chosen], lo, hi)

    def _score_ready(self, *, force: bool = False) -> None:
        """Score the frames whose GLM window is covered or whose deadline passed (every frame with ``force``)."""
        now = self.clock.now()
        ready: list[tuple[_Pending, ServingModels, list[FrameEvent], float]] = []
        waiting: list[_Pending] = []
        for frame in sorted(self.pending, key=lambda f: f.scan_start):
            models = self.models.current()  # one snapshot per frame: a hot-swap lands between frames, never inside
            granules, coverage = self._granules(frame, models.stable)
            late = (now - frame.arrived).total_seconds() >= self.settings.glm_deadline_s
            if force or late or coverage >= MIN_COVERAGE:
                ready.append((frame, models, granules, coverage))
            else:
                waiting.append(frame)
        self.pending = waiting  # before scoring: a frame is never scored twice
        for frame, models, granules, coverage in ready:
            self._score(frame, models, granules, coverage)

    def drain(self) -> None:
        """Score every frame still waiting for GLM with what there is, and commit (before a shutdown)."""
        self._score_ready(force=True)
        self._commit()

    def _score(self, frame: _Pending, models: ServingModels, granules: list[FrameEvent], coverage: float) -> None:
        """Score one frame; whatever goes wrong is counted and dead-lettered, never raised to the loop."""
        try:
            self._score_frame(frame, models, granules, coverage)
        except Exception as exc:  # the last boundary: a frame must end as scored or failed, whatever broke
            log.exception("worker: unexpected failure on %s", frame.event.name)
            self._failed(frame, f"unexpected {type(exc).__name__}: {exc}")

    def _failed(self, frame: _Pending, reason: str) -> None:
        event = frame.event
        self._dead_letter(event.name, event.key, "score", reason, event.source_uri)
        self._done(frame.message, "failed")

    def _score_frame(self, frame: _Pending, models: ServingModels, granules: list[FrameEvent], coverage: float) -> None:
        event = frame.event
        try:
            began = self.clock.monotonic()
            image = read_product(local_path(event.uri))
            if not isinstance(image, AbiImage):
                raise FrameDecodeError(event.uri, "expected an ABI image")
            flashes, used, unreadable = self._read_flashes(granules)
            monitoring.STAGE_LATENCY.labels("read").observe(self.clock.monotonic() - began)
            record_input(event.satellite, str(event.sector), image.band, InputQuality.of(image.accounting))
            window_s = models.stable.feature_set.window_minutes * 60.0
            missing = int(round((1.0 - coverage) * window_s / GRANULE_S)) + unreadable
            result = nowcast_frame(image, flashes, models.stable)
            meta = self._meta(frame, models.stable, result, tuple(used), missing)
            began = self.clock.monotonic()
            stored = self.store.put(result.probability, image.grid, meta, encoding=self.settings.encoding,
                                    flashes=flashes)  # fmt: skip
            monitoring.STAGE_LATENCY.labels("store").observe(self.clock.monotonic() - began)
        except (FrameDecodeError, IngestError, ScoringError, OSError, ValueError) as exc:
            log.warning("worker: could not score %s: %s", event.name, exc)
            self._failed(frame, str(exc))
            return
        for name, seconds in result.seconds.items():
            monitoring.STAGE_LATENCY.labels(name).observe(seconds)
        monitoring.GLM_MISSING.labels(event.satellite).inc(missing)
        record_prediction(meta.sector, meta.model_version, result.probability)
        self._to_sinks(result, image.grid, meta)
        try:
            self._announce(frame, meta, str(stored.path), len(used))
        except LtgcastError as exc:  # the grid is stored; announce it again next step (a replay rewrites the same grid)
            log.warning("worker: grid %s stored but not announced, trying again: %s", meta.grid_id, exc)
            self.pending.append(frame)
            return
        self._observe_drift(meta, models.stable, result, scene_of(image.grid))
        self._await_verification(frame, models.stable, image.grid, result)
        if models.shadow is not None:
            self._shadow(image, flashes, models.shadow, frame, tuple(used), missing)

    def _meta(self, frame: _Pending, scorer: Scorer, result: Nowcast, used: tuple[str, ...], missing: int,
              **extra: Any) -> GridMeta:  # fmt: skip
        event = frame.event
        return GridMeta(
            satellite=event.satellite, sector=str(event.sector), scan_start=frame.scan_start,
            valid_time=frame.scan_start + self.settings.horizon, model_name=scorer.name,
            model_version=scorer.version, abi_file=event.name, glm_files=used, glm_missing=missing,
            extra={"filled": result.filled, "seconds": result.seconds, **extra},
        )  # fmt: skip

    def _to_sinks(self, result: Nowcast, grid: FixedGrid, meta: GridMeta) -> None:
        for sink in self.sinks:
            try:
                sink.put(result.probability, grid, meta, encoding=self.settings.encoding)
            except (LtgcastError, OSError, ValueError) as exc:
                metrics.SINK_ERRORS.inc()
                log.warning("worker: grid %s is in the file store but not in %s: %s", meta.grid_id, sink, exc)

    def _announce(self, frame: _Pending, meta: GridMeta, uri: str, used: int) -> None:
        event = frame.event
        grid = GridEvent(
            grid_id=meta.grid_id, satellite=meta.satellite, sector=meta.sector, scan_start=iso_utc(frame.scan_start),
            valid_time=iso_utc(meta.valid_time), model_name=meta.model_name, model_version=meta.model_version,
            uri=uri, frame=event.name, glm_used=used, glm_missing=meta.glm_missing, created=iso_utc(self.clock.now()),
        )  # fmt: skip
        self.bus.publish(GRIDS_TOPIC, grid.key, grid.to_json())
        self.grids.append(grid)
        self.grids_made += 1
        key = (event.satellite, str(event.sector), frame.scan_start)
        self.scored.add(key)
        newest = self.newest.get(key[1])
        outcome = "scored_out_of_order" if newest is not None and frame.scan_start < newest else "scored"
        self.newest[key[1]] = max(frame.scan_start, newest or frame.scan_start)
        metrics.LAST_GRID.labels(meta.sector).set(self.newest[key[1]].timestamp())
        metrics.GRID_LATENCY.labels(meta.sector).observe((self.clock.now() - frame.arrived).total_seconds())
        record_age(meta.sector, "publish", frame.scan_start, self.clock.now())
        self._done(frame.message, outcome)

    def _await_verification(self, frame: _Pending, scorer: Scorer, grid: FixedGrid, result: Nowcast) -> None:
        if not self.settings.verify:
            return
        rule = LabelRule.of(getattr(scorer, "card", {}).get("label_rule"))
        self.awaiting.append(_Awaiting(frame, grid, result.probability, rule))
        while len(self.awaiting) > self.settings.max_awaiting:
            dropped = self.awaiting.pop(0)
            monitoring.LIVE_SKIPPED.labels(dropped.sector, "too_many").inc()

    def _verify_ready(self) -> None:
        """Verify the grids whose label window GLM now covers; give up on those it never will.

        Coverage changes only when a granule arrives, so a pass runs then, or every 30 s to give up on grids.
        """
        if not self.awaiting or not (self._glm_arrived or self.clock.monotonic() >= self._next_verify):
            return
        self._glm_arrived, self._next_verify = False, self.clock.monotonic() + 30.0
        now, waiting = self.clock.now(), []
        for entry in self.awaiting:
            lo, hi = entry.frame.scan_start, entry.frame.scan_start + timedelta(seconds=entry.rule.window_s)
            chosen = self._glm_between(entry.frame.event.satellite, lo, hi)
            if span_coverage([(g[0], g[1]) for g in chosen], lo, hi) >= MIN_COVERAGE:
                self._verify(entry, [g[2] for g in chosen])
            elif (now - max(hi, entry.frame.arrived)).total_seconds() > self.settings.verify_deadline_s:
                monitoring.LIVE_SKIPPED.labels(entry.sector, "glm_incomplete").inc()
            else:
                waiting.append(entry)
        self.awaiting = waiting

    def _verify(self, entry: _Awaiting, granules: list[FrameEvent]) -> None:
        try:
            flashes, _, _ = self._read_flashes(granules)
            frame_time = entry.frame.scan_start.timestamp()
            labels = frame_labels(entry.grid, flashes.lat, flashes.lon, flashes.time, frame_time, entry.rule)
            self.live.add(entry.sector, score_grid(entry.probability, labels))
        except Exception:  # monitoring must never stop the worker
            log.exception("worker: live verification failed for a %s grid of %s", entry.sector, entry.frame.scan_start)

    def _observe_drift(self, meta: GridMeta, scorer: Scorer, result: Nowcast, scene: tuple[Any, ...]) -> None:
        """Queue the frame for the drift monitor's own thread (which alone touches the monitor).

        Its dense-feature pass (about 1 s for a CONUS frame on 2 cores) must not hold up the next frame. Beyond
        ``MAX_DRIFT_QUEUE`` frames waiting, a frame is left out (counted; the window then spans a gap). A model
        without a drift reference withdraws the sector's drift series instead of leaving the last model's.
        """
        card = getattr(scorer, "card", {})
        self._drift_jobs = [job for job in self._drift_jobs if not job.done()]
        if not card.get("drift_reference"):
            self._drift_jobs.append(self._drift_thread.submit(self.drift.forget, meta.sector))
            return
        if len(self._drift_jobs) >= MAX_DRIFT_QUEUE:
            monitoring.DRIFT_SKIPPED.labels(meta.sector).inc()
            return
        self._drift_jobs.append(self._drift_thread.submit(self._drift, meta, card, result.channels, scene))

    def _drift(self, meta: GridMeta, card: dict[str, Any], channels: dict[str, NDArray[np.float32]],
               scene: tuple[Any, ...]) -> None:  # fmt: skip
        began = self.clock.monotonic()
        try:
            self.drift.observe(meta.sector, meta.model_version, card, channels, meta.scan_start.timestamp(), scene)
        except Exception:  # monitoring must never cost a grid
            monitoring.DRIFT_ERRORS.labels(meta.sector).inc()
            log.exception("worker: drift monitoring failed on %s", meta.grid_id)
        monitoring.STAGE_LATENCY.labels("drift").observe(self.clock.monotonic() - began)

    def wait_monitoring(self, timeout_s: float | None = None) -> None:
        """Wait until the drift monitor has taken every queued frame (tests, shutdown)."""
        futures.wait(self._drift_jobs, timeout=timeout_s)

    def _shadow(self, image: AbiImage, flashes: Flashes, scorer: Scorer, frame: _Pending, used: tuple[str, ...],
                missing: int) -> None:  # fmt: skip
        """Score the candidate on the same frame into the shadow store; it never affects the stable grid."""
        try:
            result = nowcast_frame(image, flashes, scorer)
            meta = self._meta(frame, scorer, result, used, missing, role="shadow")
            self.shadow_store.put(result.probability, image.grid, meta, encoding=self.settings.encoding)
        except Exception as exc:  # a candidate never disturbs the stable path
            log.warning("worker: shadow model %s v%d failed on %s: %s", scorer.name, scorer.version,
                        frame.event.name, exc)  # fmt: skip
            return
        metrics.SHADOW_GRIDS.inc()

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

    def _report_lag(self) -> None:
        """Export the subscription's lag if ``lag_interval_s`` has passed; a failure is logged, never raised."""
        now = self.clock.monotonic()
        if now < self._next_lag:
            return
        self._next_lag = now + self.settings.lag_interval_s
        try:
            lag = self.subscription.lag()
        except Exception as exc:  # monitoring must never stop the worker
            self.lag_errors += 1
            monitoring.CONSUMER_LAG_ERRORS.inc()
            log.warning("worker: could not read the consumer lag: %s", exc)
            return
        # No partitions (a rebalance, or more workers than partitions) withdraws every series: a partition read
        # by another member must not keep this worker's last value (it would page twice, or forever).
        labels = {(topic, str(partition)): messages for (topic, partition), messages in lag.items()}
        for label in self._lag_labels - labels.keys():  # given to another worker of the group
            monitoring.CONSUMER_LAG.remove(*label)
        for label, messages in labels.items():
            monitoring.CONSUMER_LAG.labels(*label).set(messages)
        self._lag_labels = set(labels)

    def _prune(self) -> None:
        if math.isfinite(self.settings.max_age_s):
            horizon = self.clock.now() - timedelta(seconds=self.settings.max_age_s + 3600.0)
        elif self.newest:  # no age limit (a replay): keep two hours behind the newest scan scored
            horizon = max(self.newest.values()) - timedelta(hours=2)
        else:
            return
        self.glm = {name: g for name, g in self.glm.items() if g[1] >= horizon}
        self.flash_cache = {name: f for name, f in self.flash_cache.items() if name in self.glm}
        self.scored = {k for k in self.scored if k[2] >= horizon}

    def _read_flashes(self, granules: list[FrameEvent]) -> tuple[Flashes, list[str], int]:
        """Flashes of the readable granules, their names, and how many could not be read.

        A granule is read once and kept while it is in the GLM index: the 15-minute windows of successive
        frames share most of their granules (14 of 15 minutes for a mesoscale sector).
        """
        parts, used = [], []
        unreadable = 0
        for event in granules:
            cached = self.flash_cache.get(event.name)
            if cached is None:
                try:
                    granule = read_product(local_path(event.uri))
                except (FrameDecodeError, IngestError, EventError, OSError) as exc:
                    log.warning("worker: leaving out GLM granule %s: %s", event.name, exc)
                    unreadable += 1
                    continue
                if not isinstance(granule, GlmGranule):
                    continue
                cached = self.flash_cache[event.name] = granule.flashes
            parts.append(cached)
            used.append(event.name)
        return Flashes.concat(parts), used, unreadable
