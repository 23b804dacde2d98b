"""What the worker does after a grid is stored, off the frame's path: live verification and drift.

:class:`VerificationQueue` keeps each stored grid (bounded, ``max_awaiting``)
until GLM covers its label window (the 30 minutes after the scan), then labels
it with the training rule and adds it to the rolling live scores
(:class:`monitor.verify.LiveSkill`); a grid whose window GLM never completes is
given up ``deadline_s`` after the window (counted). Coverage changes only when a
granule arrives, so a pass runs then, after a grid is added, or every 30 s to give up on grids.

:class:`DriftQueue` hands each grid's channels to the drift monitor on its own
thread (its dense-feature pass takes about a second for a CONUS frame on two
cores and must not hold up the next frame); beyond ``MAX_DRIFT_QUEUE`` frames
waiting, a frame is left out (counted; the window then spans a gap).

Neither ever raises into the worker: monitoring must never cost a grid.
"""

from __future__ import annotations

import logging
from concurrent import futures
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featurize.examples import LabelRule, frame_labels
from foundation.clock import Clock
from ingest.geometry import FixedGrid
from ingest.glm import MIN_COVERAGE
from monitor import metrics as monitoring
from monitor.drift import DriftMonitor
from monitor.verify import LiveSkill, score_grid
from serve.stores.gridfile import GridMeta
from serve.worker.glm import GlmIndex

log = logging.getLogger(__name__)

MAX_DRIFT_QUEUE = 8  # frames waiting for the drift monitor's thread
GIVE_UP_CHECK_S = 30.0


@dataclass
class Awaiting:
    """A stored grid waiting for the flashes of its label window."""

    satellite: str
    sector: str
    scan_start: datetime
    arrived: datetime
    grid: FixedGrid
    probability: NDArray[np.float32]
    rule: LabelRule  # the model card's, as in training


class VerificationQueue:
    """Grids waiting for their label window's GLM; verified into :attr:`live` once it is complete."""

    def __init__(self, glm: GlmIndex, clock: Clock, *, window: int = 12, max_awaiting: int = 128,
                 deadline_s: float = 600.0) -> None:  # fmt: skip
        self.glm = glm
        self.clock = clock
        self.max_awaiting = max_awaiting
        self.deadline_s = deadline_s
        self.live = LiveSkill(window)
        self.awaiting: list[Awaiting] = []
        self._glm_arrived = False
        self._next_pass = 0.0

    def __len__(self) -> int:
        return len(self.awaiting)

    def add(self, entry: Awaiting) -> None:
        """Hold a grid until its window is covered; the oldest beyond ``max_awaiting`` are dropped (counted)."""
        self.awaiting.append(entry)
        self._glm_arrived = True  # its window may be complete already (a replay, a backlog)
        while len(self.awaiting) > self.max_awaiting:
            dropped = self.awaiting.pop(0)
            monitoring.LIVE_SKIPPED.labels(dropped.sector, "too_many").inc()

    def glm_arrived(self) -> None:
        """A granule came in: the next :meth:`run` looks at every grid."""
        self._glm_arrived = True

    def run(self) -> None:
        """Verify the grids whose label window GLM now covers; give up on those it never will."""
        if not self.awaiting or not (self._glm_arrived or self.clock.monotonic() >= self._next_pass):
            return
        self._glm_arrived, self._next_pass = False, self.clock.monotonic() + GIVE_UP_CHECK_S
        now, waiting = self.clock.now(), []
        for entry in self.awaiting:
            lo, hi = entry.scan_start, entry.scan_start + timedelta(seconds=entry.rule.window_s)
            window = self.glm.window(entry.satellite, lo, hi)
            if window.coverage >= MIN_COVERAGE:  # as offline evaluation: a replay's last window may end early
                self._verify(entry, window.granules)
            elif (now - max(hi, entry.arrived)).total_seconds() > self.deadline_s:
                monitoring.LIVE_SKIPPED.labels(entry.sector, "glm_incomplete").inc()
            else:
                waiting.append(entry)
        self.awaiting = waiting

    def _verify(self, entry: Awaiting, granules: Any) -> None:
        try:
            flashes = self.glm.flashes(granules).flashes
            labels = frame_labels(entry.grid, flashes.lat, flashes.lon, flashes.time, entry.scan_start.timestamp(),
                                  entry.rule)  # fmt: skip
            self.live.add(entry.sector, score_grid(entry.probability, labels))
        except Exception:  # monitoring must never stop the worker
            log.exception("worker: live verification failed for a %s grid of %s", entry.sector, entry.scan_start)


class DriftQueue:
    """Frames for the drift monitor, observed on one thread of their own (which alone touches the monitor)."""

    def __init__(self, monitor: DriftMonitor, clock: Clock) -> None:
        self.monitor = monitor
        self.clock = clock
        self._thread = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ltgcast-drift")
        self._jobs: list[futures.Future[None]] = []

    def submit(self, meta: GridMeta, card: dict[str, Any], channels: dict[str, NDArray[np.float32]],
               scene: tuple[Any, ...]) -> None:  # fmt: skip
        """Queue one frame; a model without a drift reference withdraws the sector's drift series instead."""
        self._jobs = [job for job in self._jobs if not job.done()]
        if not card.get("drift_reference"):
            self._jobs.append(self._thread.submit(self.monitor.forget, meta.sector))
            return
        if len(self._jobs) >= MAX_DRIFT_QUEUE:
            monitoring.DRIFT_SKIPPED.labels(meta.sector).inc()
            return
        self._jobs.append(self._thread.submit(self._observe, meta, card, channels, scene))

    def _observe(self, meta: GridMeta, card: dict[str, Any], channels: dict[str, NDArray[np.float32]],
                 scene: tuple[Any, ...]) -> None:  # fmt: skip
        began = self.clock.monotonic()
        try:
            self.monitor.observe(meta.sector, meta.model_version, card, channels, meta.scan_start.timestamp(), scene)
        except Exception:  # monitoring must never cost a grid
            monitoring.DRIFT_ERRORS.labels(meta.sector).inc()
            log.exception("worker: drift monitoring failed on %s", meta.grid_id)
        monitoring.STAGE_LATENCY.labels("drift").observe(self.clock.monotonic() - began)

    def wait(self, timeout_s: float | None = None) -> None:
        """Wait until the monitor has taken every queued frame (tests, shutdown)."""
        futures.wait(self._jobs, timeout=timeout_s)

    def close(self) -> None:
        """Finish the queued frames and stop the thread."""
        self._thread.shutdown(wait=True)
