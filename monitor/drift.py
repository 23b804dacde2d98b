"""Drift of the live inputs against the model card's reference, on a rolling window of frames.

The reference is the card's ``drift_reference``: for every channel and dense
engineered feature, a histogram on fixed edges of whole training frames (the
dataset builder's :class:`featurize.stats.StatsBook`), with one bin below the
first edge and one at or above the last. Each live frame is binned on the same
edges; the last ``window`` frames of a sector are summed and compared with the
reference by

* the population stability index, ``PSI = Σ (l - r) ln(l / r)`` over bins of
  the live and reference fractions, empty bins floored at ``1e-4`` (0.1: small
  shift, 0.25: large — the alert threshold);
* a Kolmogorov–Smirnov statistic on the binned distributions, the largest gap
  between the two cumulative fractions at the bin edges.

When the stable model of a sector changes, its window starts again (the
reference is the new card's).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featurize.features import dense_features
from monitor import metrics

log = logging.getLogger(__name__)

FLOOR = 1e-4


def binned(values: NDArray[np.floating[Any]], edges: NDArray[np.float64]) -> NDArray[np.int64]:
    """Counts of the finite ``values`` in the ``len(edges) + 1`` bins of ``edges`` (below, between, at or above).

    >>> binned(np.array([-1.0, 0.0, 0.5, 1.0, np.nan]), np.array([0.0, 1.0])).tolist()
    [1, 2, 1]
    """
    finite = values[np.isfinite(values)]
    return np.bincount(np.searchsorted(edges, finite, side="right"), minlength=edges.size + 1).astype(np.int64)


def _fractions(counts: NDArray[np.int64]) -> NDArray[np.float64]:
    total = counts.sum()
    return counts / total if total else np.zeros(counts.size)


def psi(reference: NDArray[np.int64], live: NDArray[np.int64], floor: float = FLOOR) -> float:
    """Population stability index of two histograms on the same bins (0 when equal; NaN when either is empty).

    >>> round(psi(np.array([50, 50]), np.array([50, 50])), 6)
    0.0
    >>> round(psi(np.array([90, 10]), np.array([50, 50])), 3)
    0.879
    """
    if reference.sum() == 0 or live.sum() == 0:
        return float("nan")
    r = np.maximum(_fractions(reference), floor)
    lv = np.maximum(_fractions(live), floor)
    return float(np.sum((lv - r) * np.log(lv / r)))


def ks(reference: NDArray[np.int64], live: NDArray[np.int64]) -> float:
    """The largest gap between the cumulative fractions of two histograms on the same bins.

    >>> ks(np.array([1, 1, 0, 0]), np.array([0, 0, 1, 1]))
    1.0
    """
    if reference.sum() == 0 or live.sum() == 0:
        return float("nan")
    return float(np.max(np.abs(np.cumsum(_fractions(reference)) - np.cumsum(_fractions(live)))))


@dataclass
class _Window:
    model_version: int
    frames: deque[dict[str, NDArray[np.int64]]] = field(default_factory=deque)


class DriftMonitor:
    """Rolling PSI and KS per sector and feature, exported as ``ltgcast_feature_psi`` / ``ltgcast_feature_ks``."""

    def __init__(self, window: int = 12) -> None:
        if window < 1:
            msg = f"drift window must be at least 1 frame; found {window}"
            raise ValueError(msg)
        self.window = window
        self._sectors: dict[str, _Window] = {}

    def observe(self, sector: str, model_version: int, reference: Mapping[str, Any],
                channels: Mapping[str, NDArray[np.float32]]) -> dict[str, tuple[float, float]]:  # fmt: skip
        """Add one frame (its model channels; the dense features are derived here); return ``{name: (psi, ks)}``."""
        values: dict[str, NDArray[np.float32]] = {**channels, **dense_features(dict(channels))}
        current = self._sectors.get(sector)
        if current is None or current.model_version != model_version:
            current = self._sectors[sector] = _Window(model_version, deque(maxlen=self.window))
        frame = {
            name: binned(values[name], np.asarray(ref["edges"], np.float64))
            for name, ref in reference.items()
            if name in values
        }
        current.frames.append(frame)
        found = {}
        for name, ref in reference.items():
            parts = [f[name] for f in current.frames if name in f]
            if not parts:
                continue
            live = np.sum(parts, axis=0)
            expected = np.asarray(ref["histogram"], np.int64)
            found[name] = (psi(expected, live), ks(expected, live))
            metrics.FEATURE_PSI.labels(sector, name).set(found[name][0])
            metrics.FEATURE_KS.labels(sector, name).set(found[name][1])
        return found
