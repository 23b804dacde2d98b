"""Drift of the live inputs against the model card's reference, on a rolling window of frames.

The reference is the card's ``drift_reference``: for every channel and dense
engineered feature, a histogram on fixed edges of whole training frames (the
dataset builder's :class:`featurize.stats.StatsBook`), with one bin below the
first edge and one at or above the last. Each live frame is binned on the same
edges; the last ``window`` frames of a sector are summed and compared with the
reference by

* the population stability index, ``PSI = Σ (l - r) ln(l / r)`` over bins of
  the live and reference fractions, empty bins floored at ``1e-4`` (0.1: small
  shift, 0.25: large);
* a Kolmogorov–Smirnov statistic on the binned distributions, the largest gap
  between the two cumulative fractions at the bin edges.

A window of a few frames is today's weather against the training period's
climate: a stormy day has a PSI of 0.5 and more on the cloud-top features with
nothing wrong. A single 0.25 line would page on such days, so each feature gets
its own threshold, calibrated on normal weather (:func:`calibrated_thresholds`,
``ltgcast models calibrate-drift``): a margin above the largest PSI that full
windows of days the model should accept reached. The card keeps them in
``drift_thresholds``; a feature without one falls back to 0.25.

When the stable model of a sector changes, its window starts again (the
reference is the new card's).
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from prometheus_client import Gauge

from featurize.features import dense_features
from monitor import metrics

log = logging.getLogger(__name__)

FLOOR = 1e-4
#: PSI threshold of a feature the card has no calibrated threshold for (the usual "large shift" line).
DEFAULT_PSI_THRESHOLD = 0.25


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


#: Frames further apart than this never share a window (a day's end, an outage, a sector switched off and on).
MAX_GAP_S = 900.0


def scene_of(grid: Any) -> tuple[Any, ...]:
    """A key of the pixels a frame covers (shape and first coordinates): it changes when a meso sector moves."""
    return (tuple(np.shape(grid.y)) + tuple(np.shape(grid.x)), float(grid.x[0]), float(grid.y[0]))


@dataclass
class RollingDrift:
    """The last ``window`` frames' histograms of one scene, compared with a reference (no metrics: pure).

    A frame of another scene (the sector moved) or more than :data:`MAX_GAP_S` after the previous one starts
    the window again: a window only ever holds consecutive frames of one place, in the live monitor and in
    the calibration alike.
    """

    reference: Mapping[str, Any]
    window: int
    frames: deque[dict[str, NDArray[np.int64]]] = field(init=False)
    last: tuple[float, tuple[Any, ...]] | None = field(init=False, default=None)  # time and scene of the last frame

    def __post_init__(self) -> None:
        if self.window < 1:
            msg = f"drift window must be at least 1 frame; found {self.window}"
            raise ValueError(msg)
        self.frames = deque(maxlen=self.window)

    @property
    def full(self) -> bool:
        """Whether the window holds ``window`` frames (thresholds are calibrated on full windows only)."""
        return len(self.frames) == self.window

    def add(self, channels: Mapping[str, NDArray[np.float32]], at: float, scene: tuple[Any, ...]
            ) -> dict[str, tuple[float, float]]:  # fmt: skip
        """Add the frame scanned at ``at`` (Unix s) over ``scene``; return ``{name: (psi, ks)}`` of the window.

        The frame's model channels are given; the dense features are derived here.
        """
        if self.last is not None and (self.last[1] != scene or not 0 <= at - self.last[0] <= MAX_GAP_S):
            self.frames.clear()
        self.last = (at, scene)
        values: dict[str, NDArray[np.float32]] = {**channels, **dense_features(dict(channels))}
        self.frames.append({
            name: binned(values[name], np.asarray(ref["edges"], np.float64))
            for name, ref in self.reference.items()
            if name in values
        })  # fmt: skip
        found = {}
        for name, ref in self.reference.items():
            parts = [f[name] for f in self.frames if name in f]
            if parts:
                live, expected = np.sum(parts, axis=0), np.asarray(ref["histogram"], np.int64)
                found[name] = (psi(expected, live), ks(expected, live))
        return found


def _calibration(card: Mapping[str, Any], sector: str) -> Mapping[str, Any]:
    return dict((card.get("drift_thresholds") or {}).get(sector) or {})


def psi_thresholds(card: Mapping[str, Any], sector: str) -> dict[str, float]:
    """The PSI threshold per feature for ``sector``: the card's calibration of that sector, else 0.25.

    ``drift_thresholds`` maps a sector to its calibration (``ltgcast models calibrate-drift``).

    >>> card = {"drift_reference": {"ir": {}, "ltg": {}}, "drift_thresholds": {"M1": {"psi": {"ir": 0.4}}}}
    >>> psi_thresholds(card, "M1"), psi_thresholds(card, "C")
    ({'ir': 0.4, 'ltg': 0.25}, {'ir': 0.25, 'ltg': 0.25})
    """
    calibrated = _calibration(card, sector).get("psi", {})
    return {name: float(calibrated.get(name, DEFAULT_PSI_THRESHOLD)) for name in card.get("drift_reference", {})}


def window_of(card: Mapping[str, Any], sector: str, default: int) -> int:
    """The window ``sector``'s thresholds were calibrated on (``window_frames``), else ``default``."""
    return int(_calibration(card, sector).get("window_frames", default))


def calibrated_thresholds(natural: Mapping[str, float], margin: float, floor: float = DEFAULT_PSI_THRESHOLD
                          ) -> dict[str, float]:  # fmt: skip
    """Per-feature thresholds: ``margin`` times the largest PSI seen on normal weather, never below ``floor``.

    >>> calibrated_thresholds({"ir": 0.3, "ltg": 0.01, "x": float("nan")}, margin=1.1)
    {'ir': 0.33, 'ltg': 0.25, 'x': 0.25}
    """
    return {
        name: round(max(floor, margin * value), 4) if np.isfinite(value) else floor
        for name, value in sorted(natural.items())
    }


class DriftMonitor:
    """Rolling PSI and KS per sector and feature, exported as ``ltgcast_feature_psi`` / ``ltgcast_feature_ks``.

    Beside them, ``ltgcast_feature_psi_threshold`` holds the card's calibrated threshold per feature, so an
    alert compares the two series (``ltgcast_feature_psi > ltgcast_feature_psi_threshold``) and one rule
    serves every feature and model. The window is the one the card's thresholds were calibrated on, or
    ``window`` frames for a card without them.
    """

    def __init__(self, window: int = 12) -> None:
        if window < 1:
            msg = f"drift window must be at least 1 frame; found {window}"
            raise ValueError(msg)
        self.window = window
        self._sectors: dict[str, tuple[int, RollingDrift]] = {}
        self._exported: dict[str, set[str]] = {}

    def observe(self, sector: str, model_version: int, card: Mapping[str, Any],
                channels: Mapping[str, NDArray[np.float32]], at: float, scene: tuple[Any, ...]
                ) -> dict[str, tuple[float, float]]:  # fmt: skip
        """Add one frame scored by the model of ``card``; return ``{name: (psi, ks)}`` once the window is full.

        The first frame of a sector, and the first after its stable model changed, start a new window against
        the new card's reference, and a frame of another scene or after a gap restarts it (:class:`RollingDrift`).
        Until the window holds its frames nothing is exported (the thresholds were calibrated on full windows,
        and one frame is one scene, not a distribution) and the values of before are withdrawn.
        """
        version, rolling = self._sectors.get(sector, (None, None))
        if rolling is None or version != model_version:
            self.forget(sector)
            rolling = RollingDrift(card["drift_reference"], window_of(card, sector, self.window))
            self._sectors[sector] = (model_version, rolling)
            thresholds = psi_thresholds(card, sector)
            for name, threshold in thresholds.items():
                metrics.FEATURE_PSI_THRESHOLD.labels(sector, name).set(threshold)
            self._exported[sector] = set(thresholds)
        found = rolling.add(channels, at, scene)
        if not rolling.full:
            for name in self._exported.get(sector, ()):  # restarted: the last full window's values are gone
                _remove(metrics.FEATURE_PSI, sector, name)
                _remove(metrics.FEATURE_KS, sector, name)
            return {}
        for name, (p, k) in found.items():
            metrics.FEATURE_PSI.labels(sector, name).set(p)
            metrics.FEATURE_KS.labels(sector, name).set(k)
        return found

    def forget(self, sector: str) -> None:
        """Withdraw the sector's PSI, KS and threshold series (a new model, or one without a drift reference)."""
        self._sectors.pop(sector, None)
        for name in self._exported.pop(sector, set()):
            for gauge in (metrics.FEATURE_PSI, metrics.FEATURE_KS, metrics.FEATURE_PSI_THRESHOLD):
                _remove(gauge, sector, name)


def _remove(gauge: Gauge, *labels: str) -> None:
    """Withdraw one series; one that was never set is fine (older prometheus-client raises KeyError then)."""
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)
