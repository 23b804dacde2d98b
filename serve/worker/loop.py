"""The nowcast worker: ``FrameEvent`` in, probability grid stored and ``GridEvent`` out.

Named parts, each testable alone: the lightning context (:class:`~serve.worker.glm.GlmIndex`,
fed from the GLM topic every worker reads whole), the offset ledger
(:class:`~serve.worker.ledger.OffsetLedger`), the scoring step
(:class:`~serve.worker.step.ScoringStep`), the follow-ups off the frame's path
(:class:`~serve.worker.followups.VerificationQueue`, :class:`~serve.worker.followups.DriftQueue`)
and the extra sinks (:class:`~serve.worker.sinks.SinkFeed`). This module is the
loop that drives them.

Each :meth:`NowcastWorker.step`:

1. Reads what is new on ``ltgcast.glm.v1`` (a :meth:`broadcast <ingest.bus.Bus.broadcast>`
   reader that starts ``glm_lookback_s`` back, so a restarted or new worker
   rebuilds the lightning context its frames need) into the GLM index. A broken
   or impossible GLM event is dead-lettered (with its ``origin``) and skipped.
2. Polls ``ltgcast.frames.v1`` as a member of the consumer group; a rebalance
   listener notes the partitions taken away, and their frames (waiting,
   unannounced or done-but-uncommitted) are let go before the new messages are
   handled: the new owner reads them again from the committed offset. Each
   message is decoded in one place (:func:`ingest.events.decode_event`); any
   decode failure is dead-lettered and marked done, so one bad event never
   wedges a partition. A frame event whose scan starts more than
   ``future_tolerance_s`` after the clock (a forged or mislabelled file: the
   bus is a trust boundary) is counted as ``future``, dead-lettered (stage
   ``future``) with its ``origin`` and let go; the GLM index refuses a granule
   event from the future like any broken GLM event (step 1). ABI
   frames that are not the model's band, not a wanted
   sector, or older than ``max_age_s`` are counted and let go; a frame already
   scored and announced here is a duplicate. A second copy of a frame still in
   hand waits beside the first and is let go as a duplicate once the first is
   announced, or scored if the first fails (an event naming a real frame with
   a bogus URI never hides the real one).
3. A band-13 frame waits until its ``ltg`` window (the 15 minutes before the
   scan) is complete (:class:`~serve.worker.glm.Window`: covered, and the GLM
   stream has passed its end) and the GLM reader has caught up with what the
   topic held at start, or until ``glm_deadline_s`` after it arrived; then it is
   scored with what there is, and the grid records the granules used and how
   many 20-second granules were missing.
4. Ready frames are scored in scan order, for at most ``step_budget_s`` per
   step (then the worker polls again: it stays in the group, and a rebalance,
   which waits for every member to poll, is not held up by a backlog): read, featurize,
   score, store (the grid id makes a replay rewrite the same grid). A transient
   failure (the store cannot be written, the scorer is unreachable) puts the
   frame back to be tried again after a back-off (1 s doubling to
   ``retry_max_s``), uncommitted, for as long as it takes; a file that cannot
   be read for an I/O reason (a shared volume's hiccup) is tried ``read_tries``
   times; anything else (a broken file, a refused input) is counted and
   dead-lettered. Side work that fails (a sink, drift, the shadow) is logged
   and never holds a stored grid back. A stored grid goes to the extra sinks, the drift
   and verification queues and the shadow model, and its ``GridEvent`` is
   announced; an announcement that fails is retried alone (the grid is not
   scored again) and its frame stays uncommitted until it succeeds.
5. Offsets are committed per partition up to the first message not yet done
   (:class:`~serve.worker.ledger.OffsetLedger`). A commit refused after a
   rebalance is logged and changes nothing.
6. At most every ``lag_interval_s`` the subscription's lag goes to
   ``ltgcast_consumer_lag_messages{topic, partition}``; partitions no longer
   read are withdrawn. Beyond ``max_pending`` frames in hand the worker stops
   fetching (it still polls, so it stays in the group) until it catches up.

Temporal models (``ir_trend``, stable or shadow) get the band-13 frame 15
minutes before each frame on the same grid (:mod:`serve.worker.trend`): from
the frames this worker read (kept per satellite and sector, 20 minutes and
``trend_cache_mib`` at most), else from the file named by that frame's event;
while such a model is served the worker reads the frame topic whole for those
events (a broadcast reader beside its group subscription: the predecessor of a
frame is usually on another partition) and a frame also waits for that reader
to catch up. Without a predecessor the frame is scored with ``ir_trend`` 0
("no change"), never dead-lettered; its grid says ``"trend": "missing"``.

Memory is bounded for a run of months: the GLM index and the set of scored
frames keep ``glm_lookback_s`` behind the clock (with no age limit, a replay:
two hours behind the newest granule), the flash cache ``flash_cache`` granules,
the recent grid events 1000, verification ``max_awaiting`` grids, the previous
frames of temporal models ``trend_cache_mib`` and 20 minutes per sector, the frame
events indexed for them 1024 per sector and ``glm_lookback_s``.

Models: one :class:`~serve.scoring.hotswap.ServingModels` snapshot per frame, so a
hot-swap lands between two frames and a grid is never made by two versions.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from featurize.examples import LabelRule
from foundation.clock import Clock, too_far_ahead
from foundation.errors import FrameFailed, LtgcastError, RebalancedError
from foundation.retry import Retry
from foundation.utc import iso_utc, parse_utc
from ingest.bus import Bus, Message, Reader, TopicPartition
from ingest.events import (
    DEADLETTER_TOPIC,
    FRAMES_TOPIC,
    GLM_TOPIC,
    GRIDS_TOPIC,
    SECTORS,
    DeadLetterEvent,
    FrameEvent,
    GridEvent,
)
from ingest.readers import read_product
from monitor import metrics as monitoring
from monitor.drift import DriftMonitor, scene_of
from monitor.quality import record_age, record_prediction
from serve import metrics
from serve.scoring import Scorer
from serve.scoring.hotswap import ServingModels
from serve.stores.files import FileGridStore
from serve.worker.followups import Awaiting, DriftQueue, VerificationQueue
from serve.worker.glm import GlmIndex
from serve.worker.ledger import OffsetLedger
from serve.worker.nowcast import IR_BAND
from serve.worker.settings import WorkerSettings
from serve.worker.sinks import GridSink, SinkFeed
from serve.worker.step import Scored, ScoringStep
from serve.worker.trend import PreviousFrames

log = logging.getLogger(__name__)

RECENT_GRIDS = 1000
REPLAY_GLM_KEEP = timedelta(hours=2)  # with no age limit: GLM kept behind the newest granule


@runtime_checkable
class ModelSource(Protocol):
    """Where the worker gets the models for the next frame (:class:`serve.scoring.hotswap.ModelSlot`)."""

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
    attempts: int = 0
    retry_at: float = 0.0  # monotonic time before which a transiently failed frame is not tried again

    @property
    def partition(self) -> TopicPartition:
        return (self.message.topic, self.message.partition)

    @property
    def key(self) -> tuple[str, str, datetime]:
        return (self.event.satellite, str(self.event.sector), self.scan_start)


@dataclass
class _Unannounced:
    frame: _Pending
    grid: GridEvent


class NowcastWorker:
    """Consumes frame events from ``bus``; stores grids in ``store``; announces them on ``bus``."""

    def __init__(self, bus: Bus, models: Scorer | ModelSource, store: FileGridStore, clock: Clock,
                 settings: WorkerSettings | None = None, *, sinks: Sequence[GridSink] = (),
                 shadow_store: FileGridStore | None = None, drift: DriftMonitor | None = None,
                 read: Callable[[Path], Any] = read_product) -> None:  # fmt: skip
        self.bus, self.store, self.clock = bus, store, clock
        self.settings = s = settings or WorkerSettings()
        self.models: ModelSource = models if isinstance(models, ModelSource) else FixedModels(models)
        self.shadow_store = shadow_store or FileGridStore(store.root / "shadow", now=store.now,
                                                          future_tolerance_s=store.future_tolerance_s)  # fmt: skip
        self.glm = GlmIndex(read, s.flash_cache, now=clock.now, future_tolerance_s=s.future_tolerance_s)
        previous = PreviousFrames(read, max_bytes=int(s.trend_cache_mib * 2**20))
        self.scoring = ScoringStep(store, self.glm, read, clock.monotonic, horizon=s.horizon, encoding=s.encoding,
                                   previous=previous)  # fmt: skip
        self.verification = VerificationQueue(self.glm, clock, window=s.verify_window, max_awaiting=s.max_awaiting,
                                              deadline_s=s.verify_deadline_s)  # fmt: skip
        self.drift = DriftQueue(drift or DriftMonitor(), clock)
        self.sinks = [SinkFeed(sink, store, clock, encoding=s.encoding).start() for sink in sinks]
        self.ledger = OffsetLedger()
        self._frame_backoff = Retry(base_s=s.retry_first_s, max_s=s.retry_max_s)  # its delays: frames never give up
        self._revoked: list[TopicPartition] = []
        self._revoked_lock = threading.Lock()
        self.assignment: set[TopicPartition] = set()  # the frame partitions this worker reads (Kafka; empty in-process)
        self._dropped: set[TopicPartition] = set()  # partitions let go after a rebalance (re-read if given back)
        self.subscription = bus.subscribe([FRAMES_TOPIC], s.group, listener=self)
        self.glm_reader = bus.broadcast(GLM_TOPIC, lookback_s=s.lookback_s())
        self.frames_reader: Reader | None = None  # the frame topic whole, while a temporal model is served
        self.pending: list[_Pending] = []
        self.unannounced: list[_Unannounced] = []
        self.scored: dict[tuple[str, str, datetime], datetime] = {}  # frame key -> when it was scored
        self.newest: dict[str, datetime] = {}
        self.outcomes: Counter[str] = Counter()
        self.grids: deque[GridEvent] = deque(maxlen=RECENT_GRIDS)  # the last grids announced (bounded: runs for months)
        self.grids_made = 0
        self.last_step = clock.monotonic()
        self._next_lag = clock.monotonic()  # the first step reads the lag
        self._lag_labels: set[tuple[str, str]] = set()  # (topic, partition) this worker last exported
        self.lag_errors = 0  # lag reads that raised (logged)
        self._paused = False

    # -- the rebalance listener (called inside subscription.poll) ----------------------------------------------------
    def revoked(self, partitions: Sequence[TopicPartition]) -> None:
        """Note the partitions taken away; :meth:`step` lets their frames go right after the poll."""
        with self._revoked_lock:
            self._revoked.extend(partitions)
            self.assignment = self.assignment - set(partitions)
            metrics.ASSIGNED.set(len(self.assignment))

    def assigned(self, partitions: Sequence[TopicPartition]) -> None:
        """Partitions given to this worker: their messages come from the group's committed offsets."""
        with self._revoked_lock:
            self.assignment = self.assignment | set(partitions)
            metrics.ASSIGNED.set(len(self.assignment))
        log.info("worker: now reading %d partition(s) of %s", len(self.assignment), FRAMES_TOPIC)

    # -- one step ---------------------------------------------------------------------------------------------------
    def step(self, timeout_s: float | None = None) -> int:
        """Poll once, handle what came and what is ready; return the number of frame and GLM messages received."""
        received = self._read_glm() + self._read_frame_index()
        poll_s = self.settings.poll_timeout_s if timeout_s is None else timeout_s
        messages = self.subscription.poll(poll_s if not received else 0.0, self.settings.poll_records)
        rewound = self._release_revoked()
        for message in messages:
            if (message.topic, message.partition) in rewound:
                continue  # read again from the committed offset: this copy may lie past frames let go
            if self.ledger.track(message):
                self._receive(message)
        self._announce_waiting()
        self._score_ready()
        self.verification.run()
        self._commit()
        self._report_lag()
        self._prune()
        self._backpressure()
        metrics.PENDING.set(len(self.pending))
        self.last_step = self.clock.monotonic()
        return received + len(messages)

    def idle(self) -> bool:
        """Nothing is waiting for GLM, a retry or an announcement."""
        return not self.pending and not self.unannounced

    def drain(self) -> None:
        """Score every frame still waiting with what there is, announce, and commit (before a shutdown)."""
        self._score_ready(force=True)
        self._announce_waiting()
        self._commit()

    def close(self) -> None:
        """Leave the consumer group now (uncommitted messages go to the others); finish the queued side work."""
        try:
            self.subscription.close()
        finally:
            self.glm_reader.close()
            if self.frames_reader is not None:
                self.frames_reader.close()
            self.drift.close()
            for feed in self.sinks:
                feed.close()

    def wait_monitoring(self, timeout_s: float | None = None) -> None:
        """Wait until the drift monitor has taken every queued frame (tests, shutdown)."""
        self.drift.wait(timeout_s)

    @property
    def awaiting(self) -> list[Awaiting]:
        """Grids waiting for their verification window."""
        return self.verification.awaiting

    @property
    def live(self) -> Any:
        """The rolling live scores."""
        return self.verification.live

    # -- GLM ----------------------------------------------------------------------------------------------------
    def _read_glm(self, rounds: int = 20) -> int:
        """Everything new on the GLM topic (bounded per step), into the index."""
        received = 0
        for _ in range(rounds):
            messages = self.glm_reader.poll(0.0, 500)
            for message in messages:
                self._receive_glm(message)
            received += len(messages)
            if len(messages) < 500:
                break
        return received

    def _receive_glm(self, message: Message) -> None:
        try:
            event = FrameEvent.from_json(message.value)
            fresh = self.glm.add(event)
        except Exception as exc:  # EventError or anything a hostile event provokes: skip this one, never the rest
            metrics.BAD_GLM.inc()
            log.warning("worker: a broken GLM event at %s: %s", message.origin, exc)
            self._dead_letter(f"message {message.origin}", message.key or "GLM", "event", str(exc),
                              origin=message.origin)  # fmt: skip
            return
        if fresh:
            self.outcomes["glm"] += 1
            monitoring.GLM_RECEIVED.labels(event.satellite).inc()
            self.verification.glm_arrived()

    # -- the frame index of temporal models ----------------------------------------------------------------------
    def _read_frame_index(self, rounds: int = 20) -> int:
        """While a temporal model is served: what is new on the frame topic (every partition) into the frame index.

        The index names the file of a frame's predecessor when this worker did not score it (another partition,
        another worker, or before a restart). Opened when a temporal model comes, closed when none is left.
        """
        models = self.models.current()
        if not any(_temporal(m) for m in (models.stable, models.shadow)):
            if self.frames_reader is not None:
                self.frames_reader.close()
                self.frames_reader = None
            return 0
        if self.frames_reader is None:
            self.frames_reader = self.bus.broadcast(FRAMES_TOPIC, lookback_s=self.settings.lookback_s())
        received = 0
        for _ in range(rounds):
            messages = self.frames_reader.poll(0.0, 500)
            for message in messages:
                self._index_frame(message)
            received += len(messages)
            if len(messages) < 500:
                break
        return received

    def _index_frame(self, message: Message) -> None:
        try:
            event = FrameEvent.from_json(message.value)
        except Exception:  # its partition's owner dead-letters it; here it names no frame
            return
        if not event.is_glm and event.band == IR_BAND and event.sector in self.settings.sectors:
            self.scoring.previous.index.add(event)

    # -- frames ----------------------------------------------------------------------------------------------------
    def _done(self, message: Message, outcome: str, sector: str | None = None) -> None:
        self.outcomes[outcome] += 1
        if outcome != "glm_on_frames":  # ltgcast_frames_total counts frames; granules have their own counter
            monitoring.FRAMES.labels(sector if sector in SECTORS else "other", outcome).inc()
        self.ledger.done(message)

    def _receive(self, message: Message) -> None:
        try:
            event = FrameEvent.from_json(message.value)
        except Exception as exc:  # EventError, or anything else: the message ends as done, never wedges its partition
            log.warning("worker: a broken event at %s: %s", message.origin, exc)
            self._dead_letter(f"message {message.origin}", "unknown", "event", str(exc), origin=message.origin)
            self._done(message, "bad_event")
            return
        try:
            self._admit(message, event)
        except Exception as exc:  # whatever an event holds, its message must end as done
            log.exception("worker: unexpected failure on the event at %s", message.origin)
            self._dead_letter(event.name, event.label, "event", f"unexpected {type(exc).__name__}: {exc}",
                              event.source_uri, origin=message.origin)  # fmt: skip
            self._done(message, "bad_event")

    def _from_the_future(self, message: Message, event: FrameEvent) -> bool:
        """Let a frame event from the future go (counted, dead-lettered with its origin); ``False`` for any other."""
        ahead = too_far_ahead(event.start, self.clock.now(), self.settings.future_tolerance_s)
        if ahead is None:
            return False
        log.warning("worker: %s at %s is from the future: %s", event.name, message.origin, ahead)
        self._dead_letter(event.name, event.label, "future", ahead, event.source_uri, origin=message.origin)
        self._done(message, "future", str(event.sector))
        return True

    def _admit(self, message: Message, event: FrameEvent) -> None:
        if self._from_the_future(message, event):
            return
        if event.is_glm:  # on the frame topic: an older ingest daemon (before ltgcast.glm.v1)
            if self.glm.add(event):
                self.verification.glm_arrived()
            self._done(message, "glm_on_frames")
            return
        s, start, sector = self.settings, event.start, str(event.sector)
        if event.band == IR_BAND and event.sector in s.sectors:
            record_age(sector, "ingest", start, parse_utc(event.ingest_time))
            self.scoring.previous.index.add(event)  # a predecessor for the frames 15 minutes later (ir_trend)
        if event.band != IR_BAND:
            self._done(message, "other_band", sector)
        elif event.sector not in s.sectors:
            self._done(message, "other_sector", sector)
        elif s.max_age_s > 0 and (self.clock.now() - start).total_seconds() > s.max_age_s:
            self._done(message, "too_old", sector)
        elif (event.satellite, sector, start) in self.scored:
            self._done(message, "duplicate", sector)
        else:  # a second copy of a frame in hand waits too: if the first fails (a bad URI), this one is scored
            self.pending.append(_Pending(message, event, start, self.clock.now()))

    def _release_revoked(self) -> set[TopicPartition]:
        """After a rebalance: let go of the frames of partitions read by another worker now; re-read regained ones.

        Rebalances are eager: every partition is revoked, then the new share assigned, and the join may span
        several polls (then the assignment is empty in between and everything is let go). A partition let go
        and given back is read again from the committed offset: the consumer may keep its old position, past
        the frames that were dropped. Returns the partitions rewound (or still to be, if the rewind failed):
        their messages in the batch just polled are skipped, as they may lie past frames let go.
        """
        with self._revoked_lock:
            revoked, self._revoked = set(self._revoked), []
            assignment = set(self.assignment)
        lost = revoked - assignment
        if lost:
            self._let_go(lost)
        regained = self._dropped & assignment
        if regained:
            try:
                self.subscription.rewind(sorted(regained))
            except LtgcastError as exc:  # tried again next step; until then nothing of theirs is handled
                log.warning("worker: could not rewind %d regained partition(s): %s", len(regained), exc)
            else:
                self._dropped -= regained
        return regained

    def _let_go(self, lost: set[TopicPartition]) -> None:
        self._dropped |= lost
        released = [f for f in self.pending if f.partition in lost]
        released += [u.frame for u in self.unannounced if u.frame.partition in lost]
        self.pending = [f for f in self.pending if f.partition not in lost]
        self.unannounced = [u for u in self.unannounced if u.frame.partition not in lost]
        self.ledger.drop(lost)
        if released:
            metrics.RELEASED.inc(len(released))
            log.info("worker: let %d unfinished frame(s) go with their partitions to the next owner: %s",
                     len(released), ", ".join(f.event.name for f in released))  # fmt: skip

    # -- scoring ----------------------------------------------------------------------------------------------------
    def _score_ready(self, *, force: bool = False) -> None:
        """Score ready frames in scan order, within ``step_budget_s`` (every waiting frame with ``force``)."""
        now, began = self.clock.now(), self.clock.monotonic()
        caught_up = self.glm_reader.caught_up() and (self.frames_reader is None or self.frames_reader.caught_up())
        for frame in sorted(self.pending, key=lambda f: f.scan_start):
            if not force and self.clock.monotonic() - began > self.settings.step_budget_s:
                break
            if not force and self.clock.monotonic() < frame.retry_at:
                continue
            models = self.models.current()  # one snapshot per frame: a hot-swap lands between frames, never inside
            lo = frame.scan_start - timedelta(minutes=models.stable.feature_set.window_minutes)
            window = self.glm.window(frame.event.satellite, lo, frame.scan_start)
            late = (now - frame.arrived).total_seconds() >= self.settings.glm_deadline_s
            if not (force or late or (window.complete and caught_up)):
                continue
            if frame.key in self.scored:  # another copy was scored and announced meanwhile
                self.pending.remove(frame)
                self._done(frame.message, "duplicate", str(frame.event.sector))
            elif not any(u.frame.key == frame.key for u in self.unannounced):  # else: wait for its announcement
                self.pending.remove(frame)  # before scoring: a frame is never scored twice
                self._score(frame, models, window)

    def _score(self, frame: _Pending, models: ServingModels, window: Any) -> None:
        """Score one frame; whatever goes wrong is counted, retried or dead-lettered, never raised to the loop."""
        began = self.clock.monotonic()
        try:
            scored = self.scoring.run(frame.event, frame.scan_start, models, window, attempt=frame.attempts,
                                      read_tries=self.settings.read_tries)  # fmt: skip
        except FrameFailed as failure:
            if failure.transient and not (failure.kind == "read" and frame.attempts + 1 >= self.settings.read_tries):
                self._retry_later(frame, failure)
            else:
                log.warning("worker: could not score %s: %s", frame.event.name, failure.reason)
                self._failed(frame, failure.reason)
            return
        except Exception as exc:  # the last boundary: a frame must end as scored, retried or failed
            log.exception("worker: unexpected failure on %s", frame.event.name)
            self._failed(frame, f"unexpected {type(exc).__name__}: {exc}")
            return
        self._log_stored(frame, scored, self.clock.monotonic() - began)
        self._after_store(frame, models, scored)

    def _log_stored(self, frame: _Pending, scored: Scored, seconds: float) -> None:
        """One INFO line per stored grid: sector, scan time, age, model and the seconds spent scoring and storing.

        The age is the frame's since its scan start; with no age limit (a replay of old files) it is counted from
        the frame's arrival instead, which is what the replay's operator can act on.
        """
        meta, now = scored.meta, self.clock.now()
        if self.settings.max_age_s > 0:
            age = f"age {(now - frame.scan_start).total_seconds():.1f} s"
        else:
            age = f"replayed, {(now - frame.arrived).total_seconds():.1f} s after arrival"
        log.info("worker: stored grid %s: sector %s, scan %s, %s, model %s v%d, %.2f s", meta.grid_id, meta.sector,
                 f"{frame.scan_start:%Y-%m-%dT%H:%M:%SZ}", age, meta.model_name, meta.model_version,
                 seconds)  # fmt: skip

    def _retry_later(self, frame: _Pending, failure: FrameFailed) -> None:
        frame.attempts += 1
        wait = self._frame_backoff.delay(frame.attempts)
        frame.retry_at = self.clock.monotonic() + wait
        metrics.STORE_RETRIES.labels(failure.kind).inc()
        log.warning("worker: %s failed (%s, attempt %d); trying again in %.0f s", frame.event.name, failure.reason,
                    frame.attempts, wait)  # fmt: skip
        self.pending.append(frame)

    def _failed(self, frame: _Pending, reason: str) -> None:
        event = frame.event
        self._dead_letter(event.name, event.label, "score", reason, event.source_uri, origin=frame.message.origin)
        self._done(frame.message, "failed", str(event.sector))

    def _after_store(self, frame: _Pending, models: ServingModels, scored: Scored) -> None:
        """A grid is in the file store: feed the sinks and the side work (whose failures never hold it), announce."""
        try:
            self._side_work(frame, models, scored)
        except Exception:  # monitoring, sinks and the shadow must never keep a stored grid from being announced
            log.exception("worker: side work failed for %s; announcing the grid all the same", scored.meta.grid_id)
        meta = scored.meta
        grid = GridEvent.of(meta.key, valid_time=meta.valid_time, uri=str(scored.path), frame=frame.event.name,
                            glm_used=len(scored.used), glm_missing=scored.missing, created=self.clock.now(),
                            scan_start=frame.scan_start)  # fmt: skip
        self.unannounced.append(_Unannounced(frame, grid))
        self._announce_waiting()

    def _side_work(self, frame: _Pending, models: ServingModels, scored: Scored) -> None:
        meta, result = scored.meta, scored.result
        monitoring.GLM_MISSING.labels(meta.satellite).inc(scored.missing)
        record_prediction(meta.sector, meta.model_version, result.probability)
        for feed in self.sinks:
            feed.put(scored.path, result.probability, scored.image.grid, meta)
        card = getattr(models.stable, "card", {})
        channels = result.channels
        if scored.trend_missing:  # ir_trend 0 everywhere stands for "no predecessor", not for the weather
            channels = {name: c for name, c in channels.items() if name != "ir_trend"}
        self.drift.submit(meta, card, channels, scene_of(scored.image.grid))
        if self.settings.verify:
            self.verification.add(Awaiting(meta.satellite, meta.sector, frame.scan_start, frame.arrived,
                                           scored.image.grid, result.probability,
                                           LabelRule.of(card.get("label_rule"))))  # fmt: skip
        if models.shadow is not None:
            self._shadow(frame, models.shadow, scored)

    def _shadow(self, frame: _Pending, scorer: Scorer, scored: Scored) -> None:
        try:
            self.scoring.shadow(scored, scorer, self.shadow_store, frame.scan_start, frame.event)
        except Exception as exc:  # a candidate never disturbs the stable path
            log.warning("worker: shadow model %s v%d failed on %s: %s", scorer.name, scorer.version,
                        frame.event.name, exc)  # fmt: skip
            return
        metrics.SHADOW_GRIDS.inc()

    def _announce_waiting(self) -> None:
        """Publish the grid events not yet acknowledged, in order; the first failure waits for the next step."""
        while self.unannounced:
            waiting = self.unannounced[0]
            try:
                self.bus.publish(GRIDS_TOPIC, waiting.grid.key, waiting.grid.to_json())
            except LtgcastError as exc:  # the grid is stored; only its announcement is tried again
                log.warning("worker: grid %s stored but not announced yet (%d waiting): %s", waiting.grid.grid_id,
                            len(self.unannounced), exc)  # fmt: skip
                return
            self.unannounced.pop(0)
            self._announced(waiting.frame, waiting.grid)

    def _announced(self, frame: _Pending, grid: GridEvent) -> None:
        self.grids.append(grid)
        self.grids_made += 1
        self.scored[frame.key] = frame.scan_start
        sector = grid.sector
        newest = self.newest.get(sector)
        outcome = "scored_out_of_order" if newest is not None and frame.scan_start < newest else "scored"
        self.newest[sector] = max(frame.scan_start, newest or frame.scan_start)
        now = self.clock.now()
        metrics.LAST_GRID.labels(sector).set(self.newest[sector].timestamp())
        metrics.GRID_LATENCY.labels(sector).observe((now - frame.arrived).total_seconds())
        record_age(sector, "publish", frame.scan_start, now)
        self._done(frame.message, outcome, sector)

    def _dead_letter(self, name: str, key: str, stage: str, reason: str, source: str = "", *,
                     origin: str | None = None) -> None:  # fmt: skip
        letter = DeadLetterEvent(name=name, key=key, stage=stage, reason=reason, source_uri=source,
                                 quarantine_uri=None, ingest_time=iso_utc(self.clock.now()), origin=origin)  # fmt: skip
        try:
            self.bus.publish(DEADLETTER_TOPIC, key, letter.to_json())
        except LtgcastError as exc:  # the reason is in the log; the message is done either way
            log.error("worker: could not dead-letter %s (%s): %s", name, reason, exc)

    # -- bookkeeping ------------------------------------------------------------------------------------------------
    def _commit(self) -> None:
        """Commit each partition's done prefix; a failed commit stays committable for the next step."""
        for message in self.ledger.committable():
            try:
                self.subscription.commit(message)
            except RebalancedError as exc:  # the partition moved: its new owner commits from now on
                log.info("worker: commit of %s refused after a rebalance: %s", message.origin, exc)
            except LtgcastError as exc:  # the broker is away: the next step commits it
                log.warning("worker: commit of %s failed, trying again next step: %s", message.origin, exc)
            else:
                self.ledger.committed(message)

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
        """Bound the GLM index and the scored set: by the clock, or (no age limit) behind the newest granule."""
        if self.settings.max_age_s > 0:
            horizon = self.clock.now() - timedelta(seconds=self.settings.lookback_s())
        else:
            newest = self.glm.newest()
            if newest is None:
                return
            horizon = newest - REPLAY_GLM_KEEP
        self.glm.prune(horizon)
        self.scoring.previous.index.prune(horizon)
        self.scored = {k: v for k, v in self.scored.items() if v >= horizon}

    def _backpressure(self) -> None:
        """Pause fetching while ``max_pending`` frames are in hand; resume below half of it."""
        held = len(self.pending) + len(self.unannounced)
        pause = held >= self.settings.max_pending or (self._paused and held > self.settings.max_pending // 2)
        if pause and self._paused:  # again each step: partitions assigned since were not paused yet
            try:
                self.subscription.pause(True)
            except LtgcastError as exc:
                log.warning("worker: could not pause fetching: %s", exc)
            return
        if pause != self._paused:
            try:
                self.subscription.pause(pause)
            except LtgcastError as exc:
                log.warning("worker: could not %s fetching: %s", "pause" if pause else "resume", exc)
                return
            self._paused = pause
            log.info("worker: %s fetching frames (%d in hand)", "paused" if pause else "resumed", held)


def _temporal(scorer: Scorer | None) -> bool:
    """Whether ``scorer``'s feature set needs the previous frame (``ir_trend``)."""
    return bool(getattr(getattr(scorer, "feature_set", None), "temporal", False))
