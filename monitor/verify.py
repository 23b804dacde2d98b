"""Live verification: once the 30 minutes after a grid have passed, score it against the flashes that happened.

The label of a pixel is the training label (:func:`featurize.examples.frame_labels`
with the model card's :class:`featurize.examples.LabelRule`: a GLM flash within
the ``box`` × ``box`` pixels around it during the ``window_s`` after the scan
start), built from the flashes GLM actually saw. Pixels without a probability
(no IR input, space) are left out. Each verified grid adds its sums (hits, false
alarms and misses at 25 and 50 %, the squared errors, the reliability bins; the
sums of :mod:`models.metrics`) to a rolling window of the last ``window`` grids
of its sector, from which ``ltgcast_live_csi``, ``_pod``, ``_far``, ``_brier``
and ``_reliability_observed`` are exported. A score with no events to count
(e.g. no "yes" forecast and no lightning) is NaN, never 0.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from models.metrics import brier_sums, contingency_counts, contingency_scores, ratio, reliability_sums
from monitor import metrics

THRESHOLDS = (0.25, 0.50)
BINS = 10


@dataclass(frozen=True)
class GridScore:
    """The verification sums of one grid (or of several, added)."""

    pixels: int
    hits: tuple[int, ...]  # per threshold of THRESHOLDS
    false_alarms: tuple[int, ...]
    misses: tuple[int, ...]
    squared_error: float
    bin_count: tuple[int, ...]  # per reliability bin (equal width, BINS of them)
    bin_observed: tuple[int, ...]

    def __add__(self, other: GridScore) -> GridScore:
        def add(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
            return tuple(x + y for x, y in zip(a, b, strict=True))

        return GridScore(
            self.pixels + other.pixels, add(self.hits, other.hits), add(self.false_alarms, other.false_alarms),
            add(self.misses, other.misses), self.squared_error + other.squared_error,
            add(self.bin_count, other.bin_count), add(self.bin_observed, other.bin_observed),
        )  # fmt: skip

    def _scores(self, i: int) -> dict[str, float]:
        return contingency_scores(self.hits[i], self.false_alarms[i], self.misses[i])

    def csi(self, i: int) -> float:
        """Critical success index at ``THRESHOLDS[i]``."""
        return self._scores(i)["csi"]

    def pod(self, i: int) -> float:
        """Probability of detection at ``THRESHOLDS[i]``."""
        return self._scores(i)["pod"]

    def far(self, i: int) -> float:
        """False alarm ratio at ``THRESHOLDS[i]``."""
        return self._scores(i)["far"]

    @property
    def brier(self) -> float:
        """Mean squared error of the probabilities."""
        return ratio(self.squared_error, self.pixels)

    def observed(self, b: int) -> float:
        """Observed frequency of lightning in reliability bin ``b``."""
        return ratio(self.bin_observed[b], self.bin_count[b])


def score_grid(probability: NDArray[np.float32], labels: NDArray[np.uint8]) -> GridScore:
    """The sums of one grid over its pixels with a probability.

    >>> s = score_grid(np.array([[0.9, 0.3], [0.1, np.nan]], np.float32), np.array([[1, 0], [1, 1]], np.uint8))
    >>> s.pixels, s.hits, s.false_alarms, s.misses, round(s.csi(0), 4)
    (3, (1, 1), (1, 0), (1, 1), 0.3333)
    """
    ok = np.isfinite(probability)
    p = probability[ok].astype(np.float64)
    y = labels[ok].astype(np.float64)
    counts = [contingency_counts(p, y, t) for t in THRESHOLDS]
    squared_error, pixels = brier_sums(p, y)
    bin_count, _, bin_observed = reliability_sums(p, y, bins=BINS)
    return GridScore(
        pixels=int(pixels),
        hits=tuple(int(c[0]) for c in counts),
        false_alarms=tuple(int(c[1]) for c in counts),
        misses=tuple(int(c[2]) for c in counts),
        squared_error=squared_error,
        bin_count=tuple(int(v) for v in bin_count),
        bin_observed=tuple(int(v) for v in bin_observed),
    )


class LiveSkill:
    """Rolling verification per sector, exported to Prometheus."""

    def __init__(self, window: int = 12) -> None:
        if window < 1:
            msg = f"live verification window must be at least 1 grid; found {window}"
            raise ValueError(msg)
        self.window = window
        self._scores: dict[str, deque[GridScore]] = {}

    def add(self, sector: str, score: GridScore) -> GridScore:
        """Add a verified grid; return the sums over the sector's window (also exported)."""
        scores = self._scores.setdefault(sector, deque(maxlen=self.window))
        scores.append(score)
        total = scores[0]
        for more in list(scores)[1:]:
            total = total + more
        for i, threshold in enumerate(THRESHOLDS):
            label = f"{threshold:.2f}"
            metrics.LIVE_CSI.labels(sector, label).set(total.csi(i))
            metrics.LIVE_POD.labels(sector, label).set(total.pod(i))
            metrics.LIVE_FAR.labels(sector, label).set(total.far(i))
        metrics.LIVE_BRIER.labels(sector).set(total.brier)
        for b in range(BINS):
            metrics.LIVE_RELIABILITY.labels(sector, f"{b / BINS:.1f}").set(total.observed(b))
        metrics.LIVE_VERIFIED.labels(sector).inc()
        return total
