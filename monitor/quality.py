"""Input and output quality of one frame, as the worker sees it, recorded in :mod:`monitor.metrics`.

Missing input is counted on the Earth's disk only: the reader's
:class:`~ingest.abi.PixelAccounting` keeps space apart from fill, bad DQF and
nonphysical values, so a CONUS frame whose corner is beyond the limb reads 0,
while a wedge of missing scan lines (eclipse season) on the disk reads as its
share of the earth pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from ingest.abi import PixelAccounting
from monitor import metrics

#: LightningCast's contour levels: the metrics' thresholds, the default contours of serve.products.outputs and the API.
LEVELS = (0.10, 0.25, 0.50, 0.75)


@dataclass(frozen=True)
class InputQuality:
    """Fractions of the earth pixels without a value, in all and by cause (0 when the frame has no earth)."""

    nan: float
    fill: float
    bad_dqf: float
    nonphysical: float

    @classmethod
    def of(cls, accounting: PixelAccounting) -> InputQuality:
        """From a frame's pixel accounting.

        >>> InputQuality.of(PixelAccounting(valid=90, fill=6, bad_dqf=3, nonphysical=1, space=900)).nan
        0.1
        """
        earth = accounting.earth
        if earth == 0:
            return cls(0.0, 0.0, 0.0, 0.0)
        missing = accounting.fill + accounting.bad_dqf + accounting.nonphysical
        return cls(missing / earth, accounting.fill / earth, accounting.bad_dqf / earth, accounting.nonphysical / earth)


def record_input(satellite: str, sector: str, band: int, quality: InputQuality) -> None:
    """Set ``ltgcast_input_nan_fraction`` for one frame."""
    values = {"all": quality.nan, "fill": quality.fill, "bad_dqf": quality.bad_dqf, "nonphysical": quality.nonphysical}
    for reason, value in values.items():
        metrics.INPUT_NAN.labels(satellite, sector, str(band), reason).set(value)


_MEAN_VERSION: dict[str, int] = {}  # sector -> the model version of its ltgcast_prediction_mean series


def record_prediction(sector: str, model_version: int, probability: NDArray[np.float32]) -> float:
    """Set the mean probability and the fraction at or above each contour level; return the mean.

    ``ltgcast_prediction_mean`` keeps one series per sector, labelled with the version that made the last grid:
    a swap withdraws the old version's series (a service hot-swapping for months does not grow a series per version).

    NaN pixels (no input) are left out; a grid with no value records nothing and returns NaN.
    """
    values = probability[np.isfinite(probability)]
    if values.size == 0:
        return float("nan")
    mean = float(values.mean())
    previous = _MEAN_VERSION.get(sector)
    if previous is not None and previous != model_version:  # one series per sector: the version now serving
        metrics.PREDICTION_MEAN.remove(sector, str(previous))
    _MEAN_VERSION[sector] = model_version
    metrics.PREDICTION_MEAN.labels(sector, str(model_version)).set(mean)
    for level in LEVELS:
        metrics.PREDICTION_ABOVE.labels(sector, f"{level:.2f}").set(float((values >= level).mean()))
    return mean


def record_age(sector: str, stage: str, scan_start: datetime, at: datetime) -> None:
    """Observe a frame's age (seconds since its scan start) at ``stage`` (ingest or publish)."""
    metrics.FRAME_AGE.labels(sector, stage).observe((at - scan_start).total_seconds())
