"""One frame through the model: read, featurize, score, store. Failures say whether trying again can help.

:class:`ScoringStep` is the worker's pure-ish core with its side effects named:
it reads the frame named by the event and the flashes of its granules, scores
it with one :class:`~serve.scoring.hotswap.ServingModels` snapshot and writes the grid
into the file store (atomically, under its grid id). It raises
:class:`FrameFailed`, which says whether the failure is **transient** — the grid
store could not be written (a full or read-only disk, a network volume that
went away) or the scorer could not answer now
(:class:`~foundation.errors.ScoringUnavailable`) — so the worker keeps the frame and
tries again later, or **permanent** — the file is not the product it claims to
be, the model refused the input — so the worker dead-letters it.

For a temporal model (``ir_trend``, stable or shadow) the step also finds the
frame 15 minutes earlier (:class:`~serve.worker.trend.PreviousFrames`) and keeps
the frame it read for the frames after it. A missing predecessor is never a
failure: the frame is scored with ``ir_trend`` 0 and its grid says
``"trend": "missing"`` (the policy is in :mod:`serve.worker.trend`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from featurize.examples import Flashes
from foundation.errors import EventError, FrameDecodeError, FrameFailed, IngestError, ScoringError, ScoringUnavailable
from ingest.abi import AbiImage
from ingest.events import FrameEvent, local_path
from monitor import metrics as monitoring
from monitor.quality import InputQuality, record_input
from serve.scoring import Scorer
from serve.scoring.hotswap import ServingModels
from serve.stores.files import FileGridStore
from serve.stores.gridfile import GridMeta
from serve.worker.glm import GlmIndex, Window
from serve.worker.nowcast import Nowcast, nowcast_frame
from serve.worker.trend import TREND_MISSING, Previous, PreviousFrames

GRANULE_S = 20.0  # a GLM LCFA file spans 20 s


@dataclass(frozen=True)
class Scored:
    """A stored grid and what it was made from."""

    image: AbiImage
    flashes: Flashes
    used: tuple[str, ...]
    missing: int
    result: Nowcast
    meta: GridMeta
    path: Path
    previous: dict[float, Previous] = field(default_factory=dict)  # by trend window (s): temporal models only

    @property
    def trend_missing(self) -> bool:
        """Whether the stable model is temporal and was scored without the previous frame (``ir_trend`` 0)."""
        return self.meta.extra.get("trend") == "missing"


def _trend_window_s(scorer: Scorer) -> float | None:
    """The seconds between a frame and its predecessor for ``scorer``'s feature set; ``None``: not temporal."""
    feature_set: Any = getattr(scorer, "feature_set", None)
    return float(feature_set.window_minutes) * 60.0 if getattr(feature_set, "temporal", False) else None


class ScoringStep:
    """Frame event + models + GLM window → a grid in the file store."""

    def __init__(self, store: FileGridStore, glm: GlmIndex, read: Callable[[Path], Any], monotonic: Callable[[], float],
                 *, horizon: timedelta, encoding: str, previous: PreviousFrames | None = None) -> None:  # fmt: skip
        self.store = store
        self.glm = glm
        self._read = read
        self._monotonic = monotonic
        self.horizon = horizon
        self.encoding = encoding
        self.previous = previous or PreviousFrames(read)

    def run(self, event: FrameEvent, scan_start: datetime, models: ServingModels, window: Window, *,
            attempt: int = 0, read_tries: int = 4) -> Scored:  # fmt: skip
        """Score one frame and store its grid; :class:`FrameFailed` when it cannot.

        A file that cannot be read for an I/O reason (the frame's, or one of its window's granules) is a
        transient failure on the first ``read_tries - 1`` attempts; after that the frame is scored without the
        granule (recorded as missing), or refused.
        """
        began = self._monotonic()
        image = self._image(event)
        flashes, used, unreadable, io_errors = self.glm.flashes(window.granules)
        if io_errors and attempt + 1 < read_tries:
            msg = f"{io_errors} GLM granule(s) of the window could not be read"
            raise FrameFailed(msg, transient=True, kind="read")
        monitoring.STAGE_LATENCY.labels("read").observe(self._monotonic() - began)
        record_input(event.satellite, str(event.sector), image.band, InputQuality.of(image.accounting))
        window_s = models.stable.feature_set.window_minutes * 60.0
        missing = int(round((1.0 - window.coverage) * window_s / GRANULE_S)) + unreadable
        previous = self._previous(image, models)
        trend = _trend_for(previous, models.stable)
        try:
            result = nowcast_frame(image, flashes, models.stable, _previous_values(trend, image))
        except ScoringUnavailable as exc:
            raise FrameFailed(str(exc), transient=True, kind="scorer") from exc
        except (ScoringError, ValueError) as exc:
            raise FrameFailed(str(exc), transient=False, kind="score") from exc
        for name, seconds in result.seconds.items():
            monitoring.STAGE_LATENCY.labels(name).observe(seconds)
        meta = self.meta(event, scan_start, models.stable, result, tuple(used), missing,
                         **(trend.provenance() if trend else {}))  # fmt: skip
        began = self._monotonic()
        try:
            stored = self.store.put(result.probability, image.grid, meta, encoding=self.encoding, flashes=flashes,
                                    underlay=_underlay(image))  # fmt: skip
        except OSError as exc:
            msg = f"cannot write {meta.grid_id} into {self.store.root}: {exc}"
            raise FrameFailed(msg, transient=True, kind="store") from exc
        except ValueError as exc:
            raise FrameFailed(str(exc), transient=False, kind="store") from exc
        monitoring.STAGE_LATENCY.labels("store").observe(self._monotonic() - began)
        for lookup in previous.values():  # once the grid is stored: a frame tried again is counted once
            if not lookup.found:
                TREND_MISSING.labels(str(event.sector), str(lookup.missing)).inc()
        return Scored(image, flashes, tuple(used), missing, result, meta, stored.path, previous)

    def _previous(self, image: AbiImage, models: ServingModels) -> dict[float, Previous]:
        """The previous frame for each temporal model's window; keep ``image`` for the frames after it."""
        windows = {w for m in (models.stable, models.shadow) if m is not None and (w := _trend_window_s(m))}
        if not windows:
            self.previous.cache.clear()  # no temporal model is served: hold nothing
            return {}
        found = {w: self.previous.find(image, w) for w in sorted(windows)}
        self.previous.keep(image)
        return found

    def _image(self, event: FrameEvent) -> AbiImage:
        try:
            image = self._read(local_path(event.uri))
        except OSError as exc:  # not there yet on a shared volume, or it went away: tried again a few times
            raise FrameFailed(str(exc), transient=True, kind="read") from exc
        except (FrameDecodeError, IngestError, EventError) as exc:
            raise FrameFailed(str(exc), transient=False, kind="read") from exc
        if not isinstance(image, AbiImage):
            msg = f"{event.uri}: expected an ABI image"
            raise FrameFailed(msg, transient=False, kind="read")
        if image.name.name != event.name:  # the event names one file, its URI holds another
            msg = f"{event.uri}: expected the file {event.name}, found {image.name.name}"
            raise FrameFailed(msg, transient=False, kind="read")
        return image

    def meta(self, event: FrameEvent, scan_start: datetime, scorer: Scorer, result: Nowcast,
             used: tuple[str, ...], missing: int, **extra: Any) -> GridMeta:  # fmt: skip
        """The grid's metadata: frame, model, GLM used and missing, provenance."""
        return GridMeta(
            satellite=event.satellite, sector=str(event.sector), scan_start=scan_start,
            valid_time=scan_start + self.horizon, model_name=scorer.name, model_version=scorer.version,
            abi_file=event.name, glm_files=used, glm_missing=missing,
            extra={"filled": result.filled, "seconds": result.seconds, **extra},
        )  # fmt: skip

    def shadow(self, scored: Scored, scorer: Scorer, shadow_store: FileGridStore, scan_start: datetime,
               event: FrameEvent) -> None:  # fmt: skip
        """Score the candidate on the same input into ``shadow_store`` (its metadata says ``role: shadow``)."""
        trend = _trend_for(scored.previous, scorer)
        result = nowcast_frame(scored.image, scored.flashes, scorer, _previous_values(trend, scored.image))
        extra = trend.provenance() if trend else {}
        meta = self.meta(event, scan_start, scorer, result, scored.used, scored.missing, role="shadow", **extra)
        shadow_store.put(result.probability, scored.image.grid, meta, encoding=self.encoding)


def _underlay(image: AbiImage) -> Any:
    """The map's infrared underlay: the scan's band-13 brightness temperature, or ``None`` for another band."""
    return image.values if image.band == 13 and image.quantity == "brightness_temperature" else None


def _trend_for(previous: dict[float, Previous], scorer: Scorer) -> Previous | None:
    """The previous frame found for ``scorer``'s trend window; ``None`` for a model without ``ir_trend``."""
    window = _trend_window_s(scorer)
    if window is None:
        return None
    return previous.get(window) or Previous(missing="no_frame")


def _previous_values(trend: Previous | None, image: AbiImage) -> Any:
    """What a model is given as the previous frame: none (not temporal), the one found, or the frame itself.

    The frame itself is the missing-predecessor policy (:mod:`serve.worker.trend`): ``ir_trend`` 0, "no change".
    """
    if trend is None:
        return None
    return trend.values if trend.found else image.values
