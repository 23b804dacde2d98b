"""Storm lead times on an archive: every frame scored densely, onsets found in the GLM flashes.

The frames of ``[start, end)`` (thinned to ``every_minutes``) are read, their
channels built as the dataset builder builds them, and each forecast (a
function of the channels returning a probability grid) is run on the whole
frame. Storm onsets come from the GLM flashes of the frames' satellite in the
same period (:mod:`models.leadtime`). Frames on another grid than the first
(a mesoscale sector that moved) and unreadable files are left out and counted.

Defaults: an onset has had no flash within 16 px for 60 min, and the look-back
is 45 min. The look-back plus the 15-min ``ltg`` window fits inside the quiet
hour, so every frame looked at saw no lightning near the onset: a probability
that rose there was a forecast, not the memory of an earlier storm (and
persistence, by construction, never gets a lead time).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featurize.channels import FeatureSet
from featurize.examples import frame_channels
from featurize.glm_grid import flash_pixels
from foundation.clock import SystemClock
from foundation.errors import FrameDecodeError, IngestError
from ingest.abi import AbiImage
from ingest.archive import ArchiveItem, get_archive
from ingest.readers import read_product
from ltgcast.datasets import FlashCache
from models.leadtime import Onset, box_max_at, lead_times, storm_onsets

log = logging.getLogger(__name__)

F32 = NDArray[np.float32]
#: A dense forecast: the frame's channels (NaN kept) → probability ``[H, W]``.
DenseForecast = Callable[[dict[str, F32]], NDArray[np.floating[Any]]]


@dataclass(frozen=True)
class LeadSettings:
    """Where the frames are and how onsets and lead times are defined."""

    archive: str
    start: datetime
    end: datetime
    cache: Path
    feature_set: FeatureSet
    sector: str = "M1"
    band: int = 13
    product: str = "ABI-L1b-Rad"
    every_minutes: float = 5.0
    radius: int = 16
    quiet_s: float = 3600.0
    lookback_s: float = 2700.0
    box: int = 16


def archive_lead_times(
    settings: LeadSettings, forecasts: dict[str, DenseForecast], thresholds: tuple[float, ...]
) -> dict[str, Any]:
    """Lead times of every forecast on the archive's storm onsets."""
    s = settings
    archive = get_archive(s.archive, s.cache, SystemClock())
    listed = archive.frames(s.sector, s.band, s.start, s.end, s.product)
    step = timedelta(minutes=s.every_minutes) - timedelta(seconds=30)
    frames: list[ArchiveItem] = []
    for item in listed:
        if not frames or item.name.scan_start - frames[-1].name.scan_start >= step:
            frames.append(item)
    if not frames:
        msg = f"{s.archive} holds no {s.sector} band {s.band} frames in {s.start}..{s.end}"
        raise ValueError(msg)
    window = timedelta(minutes=s.feature_set.window_minutes)
    satellite = frames[0].name.satellite
    cache = FlashCache(archive)
    granules = [g for g in archive.granules(s.start - window, s.end) if g.name.satellite == satellite]
    flashes = cache.flashes(cache.read(granules, keep_after=s.start - window))
    by_time = {item.name.scan_start: item for item in listed}
    skipped: Counter[str] = Counter()
    grid = None
    onsets: list[Onset] = []
    times: list[float] = []
    maxima: dict[str, list[list[float]]] = {name: [] for name in forecasts}  # per frame, per onset
    for item in frames:
        try:
            image = read_image(archive, item)
            previous = previous_values(archive, item, by_time, window) if "ir_trend" in s.feature_set.channels else None
        except (FrameDecodeError, IngestError, LookupError) as exc:
            skipped[type(exc).__name__] += 1
            log.warning("lead times: leaving out %s: %s", item.name.name, exc)
            continue
        if grid is None:  # the first readable frame fixes the grid, and with it the onsets' pixels
            grid = image.grid
            pixels = flash_pixels(grid, flashes.lat, flashes.lon, margin=s.radius)
            onsets = storm_onsets(
                pixels.rows, pixels.cols, flashes.time[pixels.index], grid.shape,
                radius=s.radius, quiet_s=s.quiet_s, record_start=(s.start - window).timestamp(),
            )  # fmt: skip
            onsets = [o for o in onsets if o.time < s.end.timestamp()]
        elif not (np.array_equal(grid.x, image.grid.x) and np.array_equal(grid.y, image.grid.y)):
            skipped["another grid"] += 1
            continue
        t = item.name.scan_start.timestamp()
        channels = frame_channels(image.values, image.grid, flashes, t, s.feature_set, previous)
        times.append(t)
        for name, forecast in forecasts.items():  # only the box maxima are kept, not the grids
            p = np.asarray(forecast(channels), np.float32)
            maxima[name].append([box_max_at(p, o, s.box) for o in onsets])
    if grid is None:
        msg = f"none of the {len(frames)} frames could be read"
        raise ValueError(msg)
    results = {
        name: lead_times(
            onsets,
            times,
            np.array(per_frame, np.float64).reshape(len(times), len(onsets)).T,
            thresholds,
            lookback_s=s.lookback_s,
        )
        for name, per_frame in maxima.items()
    }
    return {
        "archive": s.archive,
        "start": s.start.isoformat(),
        "end": s.end.isoformat(),
        "frames": len(times),
        "frames_skipped": dict(skipped),
        "flashes": int(flashes.time.size),
        "onset_rule": {
            "radius_px": s.radius,
            "quiet_minutes": s.quiet_s / 60.0,
            "box_px": s.box,
            "lookback_minutes": s.lookback_s / 60.0,
        },  # fmt: skip
        "forecasts": results,
    }


def read_image(archive: Any, item: ArchiveItem) -> AbiImage:
    """The archive item's ABI image; ``FrameDecodeError`` when it is another product."""
    path = archive.fetch(item)
    image = read_product(path)
    if not isinstance(image, AbiImage):
        raise FrameDecodeError(str(path), "expected an ABI L1b image, found another product")
    return image


def previous_values(archive: Any, item: ArchiveItem, by_time: dict[datetime, ArchiveItem], window: timedelta) -> F32:
    """Brightness temperatures of the frame ``window`` before ``item`` (within 90 s) for ``ir_trend``."""
    target = item.name.scan_start - window
    near = [t for t in by_time if abs((t - target).total_seconds()) <= 90]
    if not near:
        msg = f"no frame {window} before {item.name.name} for ir_trend"
        raise LookupError(msg)
    return read_image(archive, by_time[min(near, key=lambda t: abs((t - target).total_seconds()))]).values
