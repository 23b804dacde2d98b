"""Per-feature drift thresholds, calibrated on normal weather: ``ltgcast models calibrate-drift``.

A rolling window of a few frames is the weather of the hour against the
climate of the training period, so the population stability index of a
cloud-top feature swings with the weather: on simulated days the model was
built for, the largest PSI of ``ir_max_64`` went from 0.14 on a quiet day
to 0.86 on a stormy one. The threshold that pages must sit above what
normal days reach, feature by feature.

This module replays an archive of days the model should accept (not its
training days; the same climate) exactly as the live worker sees them: every
frame of the sector in time order, its channels built by
:func:`featurize.examples.frame_channels` from the image and the GLM flashes
before it, through :class:`monitor.drift.RollingDrift` with the live window,
which restarts where the live one does: when the sector moved or after a gap.
Over the full windows, the largest PSI per feature times ``margin`` (never
below 0.25) is the threshold, written into the version's model card as
``drift_thresholds[sector]`` with what it was calibrated on, for the
calibrated sector and those that share its cadence and size (M1 and M2).

A window is a number of frames, so a sector's thresholds only hold for
sectors scanned like it: 12 frames are 12 minutes of a mesoscale sector, an
hour of CONUS, two hours of full disk. Calibrate each sector served; one
without a calibration gets 0.25 for every feature.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from featurize.channels import FeatureSet, get_feature_set
from featurize.examples import frame_channels
from foundation.clock import SystemClock
from foundation.errors import ConfigError, FrameDecodeError, IngestError
from foundation.utc import iso_utc
from ingest.archive import ArchiveItem, get_archive
from ltgcast.datasets import FlashCache
from ltgcast.leadtimes import previous_values, read_image
from monitor.drift import DEFAULT_PSI_THRESHOLD, RollingDrift, calibrated_thresholds, scene_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriftCalibration:
    """What to replay and how to turn the PSI seen into thresholds."""

    archive: str
    start: datetime
    end: datetime
    cache: Path
    sector: str
    window: int = 12
    margin: float = 1.1
    band: int = 13
    product: str = "ABI-L1b-Rad"

    def __post_init__(self) -> None:
        if self.end <= self.start:
            msg = f"--end ({self.end}) must be after --start ({self.start})"
            raise ConfigError(msg)
        if self.window < 1 or self.margin < 1.0:
            msg = f"--window must be >= 1 frame and --margin >= 1.0; found {self.window} and {self.margin}"
            raise ConfigError(msg)


class _Replay:
    """The PSI of every full window over the frames, as the live worker would have exported them."""

    def __init__(self, archive: Any, reference: dict[str, Any], feature_set: FeatureSet, ltg_window: timedelta,
                 window: int, frames: list[ArchiveItem]) -> None:  # fmt: skip
        self.archive, self.feature_set, self.ltg_window = archive, feature_set, ltg_window
        self.by_time = {item.name.scan_start: item for item in frames}
        self.cache = FlashCache(archive)
        self.rolling = RollingDrift(reference, window)
        self.seen: dict[str, list[float]] = {name: [] for name in reference}
        self.skipped: Counter[str] = Counter()
        self.used = 0
        self.runs = 0  # windows started: the first frame, and each restart after a gap or a move

    def frame(self, item: ArchiveItem) -> None:
        """Read one frame and the GLM granules of its ``ltg`` window, as the worker does, and add it."""
        try:
            image = read_image(self.archive, item)
            previous = self._previous(item)
        except (FrameDecodeError, IngestError, LookupError) as exc:
            self.skipped[type(exc).__name__] += 1
            log.warning("drift calibration: leaving out %s: %s", item.name.name, exc)
            return
        t = item.name.scan_start
        since = t - self.ltg_window
        listed = [g for g in self.archive.granules(since, t) if g.name.satellite == item.name.satellite]
        flashes = self.cache.flashes(self.cache.read(listed, keep_after=since))  # older granules are dropped
        channels = frame_channels(image.values, image.grid, flashes, t.timestamp(), self.feature_set, previous)
        found = self.rolling.add(channels, t.timestamp(), scene_of(image.grid))  # restarts after a gap or a move
        self.used += 1
        self.runs += len(self.rolling.frames) == 1
        if self.rolling.full:
            for name, (p, _) in found.items():
                self.seen[name].append(p)

    def _previous(self, item: ArchiveItem) -> Any:
        if "ir_trend" not in self.feature_set.channels:
            return None
        return previous_values(self.archive, item, self.by_time, self.ltg_window)


def calibrate_drift(card: dict[str, Any], c: DriftCalibration) -> dict[str, Any]:
    """The ``drift_thresholds`` block for the model of ``card`` from the normal weather of ``c.archive``."""
    reference = card.get("drift_reference")
    if not reference:
        msg = "the model card has no drift_reference to calibrate thresholds against"
        raise ConfigError(msg)
    feature_set = get_feature_set(card["feature_set"])
    window = timedelta(minutes=feature_set.window_minutes)
    archive = get_archive(c.archive, c.cache, SystemClock())
    frames = archive.frames(c.sector, c.band, c.start, c.end, c.product)
    if not frames:
        msg = f"{c.archive} holds no {c.sector} band {c.band} frames in {iso_utc(c.start)}..{iso_utc(c.end)}"
        raise ConfigError(msg)
    replay = _Replay(archive, reference, feature_set, window, c.window, frames)
    for item in frames:
        replay.frame(item)
    seen, used, skipped = replay.seen, replay.used, replay.skipped
    windows = max((len(v) for v in seen.values()), default=0)
    if windows == 0:
        msg = f"no run of {c.window} readable frames in {c.archive} ({used} frames read): nothing to calibrate on"
        raise ConfigError(msg)
    finite = {name: np.array([v for v in values if np.isfinite(v)]) for name, values in seen.items()}
    natural = {name: float(v.max()) if v.size else float("nan") for name, v in finite.items()}
    return {
        "window_frames": c.window,
        "margin": c.margin,
        "floor": DEFAULT_PSI_THRESHOLD,
        "psi": calibrated_thresholds(natural, c.margin),
        "natural_psi": {
            name: {q: round(float(np.percentile(v, p)), 4) for q, p in (("p50", 50), ("p95", 95), ("max", 100))}
            for name, v in sorted(finite.items())
            if v.size
        },
        "calibration": {
            "archive": c.archive,
            "start": iso_utc(c.start),
            "end": iso_utc(c.end),
            "sector": c.sector,
            "band": c.band,
            "frames": used,
            "frames_skipped": dict(skipped),
            "runs": replay.runs,
            "windows": windows,
            "created": iso_utc(datetime.now(UTC)),
        },
    }
