"""Forecasts compared on whole held-out frames: per-frame sufficient statistics, scores and bootstrap intervals.

Every forecast is scored on the same pixels of the same frames. A frame is
not kept pixel by pixel: for each forecast it leaves one float64 vector of
sufficient statistics (:func:`frame_statistics`), and vectors add up, so the
scores of any set of frames (all of them, or a bootstrap resample) come from
their sum. The vector holds

* the histogram of the forecast probability over :data:`BINS` equal bins of
  [0, 1], separately for positive and for negative pixels. Bin edges are
  ``k / BINS`` and every threshold used below is an edge, so the contingency
  tables at the thresholds are exact (``p >= t`` is ``bin >= k``);
* the sum of the probabilities in each of the :data:`RELIABILITY_BINS`
  reliability bins (each a run of whole histogram bins);
* the exact sums of ``(p - y)²``, of ``p`` and of ``y``, and the pixel count.

Scores (:func:`scores`, vectorised over any leading axes):

* ROC-AUC from the two histograms, pixels in one bin counted as ties (half).
  Against the exact AUC, the error is at most half the fraction of
  positive–negative pairs that share a bin (:func:`auc_tie_bound`): about
  ``1 / BINS`` for a spread-out forecast, 0 for a forecast that takes fewer
  than :data:`BINS` values on the bin edges (persistence, climatology).
* Brier score (exact), Brier skill ``1 - BS / BS_clim`` against a fixed
  climatological rate ``c`` (``BS_clim = (n c² - 2 c Σy + Σy) / n``, exact).
* POD, FAR, CSI at :data:`LEVELS`, and the best CSI over :data:`CSI_THRESHOLDS`
  (0.05, 0.10, …, 0.95) with its threshold (the lowest one on a tie).
* The reliability curve (mean forecast and observed frequency per bin) and the
  expected calibration error ``ECE = Σ_b |Σ_b y - Σ_b p| / n``.

Intervals (:func:`bootstrap_counts`, :func:`interval`): units (frames, or
whole days) are resampled with replacement; each resample is a vector of
multiplicities, the same for every forecast (a paired bootstrap, so the
difference of two forecasts has its own interval), and its statistics are the
weighted sum of the units' vectors. The interval is the percentile interval
(2.5 and 97.5 percentiles for 95 %). It is not forced to contain the point
estimate: for a biased score such as the ECE (resampling adds noise, and noise
adds calibration error) the point can lie below it, and that is reported as it is.

Storm lead times (:mod:`models.leadtime`) get intervals by resampling the onsets
(:func:`lead_time_intervals`).

Pure NumPy: arrays in, numbers out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]

#: Histogram bins of the forecast probability over [0, 1].
BINS = 1000
#: Equal-width bins of the reliability curve (each spans ``BINS / RELIABILITY_BINS`` histogram bins).
RELIABILITY_BINS = 10
#: Thresholds of the contingency table reported with POD, FAR and CSI.
LEVELS = (0.10, 0.25, 0.50, 0.75)
#: Thresholds searched for the best CSI.
CSI_THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))

_POS = slice(0, BINS)
_NEG = slice(BINS, 2 * BINS)
_PSUM = slice(2 * BINS, 2 * BINS + RELIABILITY_BINS)
_SSE, _SUM_P, _SUM_Y, _N = (2 * BINS + RELIABILITY_BINS + k for k in range(4))
#: Length of one statistics vector.
SIZE = 2 * BINS + RELIABILITY_BINS + 4
EDGES = np.arange(BINS + 1, dtype=np.float64) / BINS


def _edge(threshold: float) -> int:
    """The histogram edge index of ``threshold``; refuses one that is not an edge.

    >>> _edge(0.25), _edge(0.05)
    (250, 50)
    """
    k = int(round(threshold * BINS))
    if not np.isclose(k / BINS, threshold, rtol=0, atol=1e-12):
        msg = f"threshold {threshold} is not a multiple of 1/{BINS}"
        raise ValueError(msg)
    return k


def bin_index(p: ArrayLike) -> NDArray[np.intp]:
    """The histogram bin of each probability: ``k`` with ``k / BINS <= p < (k + 1) / BINS`` (1.0 in the last).

    >>> bin_index([0.0, 0.0999, 0.1, 0.25, 1.0]).tolist()
    [0, 99, 100, 250, 999]
    """
    pp = np.asarray(p, np.float64)
    index: NDArray[np.intp] = np.clip(np.searchsorted(EDGES, pp, side="right") - 1, 0, BINS - 1)
    return index


def frame_statistics(p: ArrayLike, y: ArrayLike) -> F64:
    """The sufficient statistics of one forecast on one frame's pixels (they add up over frames).

    Parameters
    ----------
    p
        Probabilities ``[N]`` (any shape, flattened), finite and within [0, 1].
    y
        Outcomes ``[N]``, 0 or 1.

    Returns
    -------
    float64 ``[SIZE]``: positive and negative histograms, probability sums per
    reliability bin, ``Σ(p - y)²``, ``Σp``, ``Σy`` and the pixel count.

    Examples
    --------
    >>> s = frame_statistics([0.2, 0.8, 0.8], [0, 1, 0])
    >>> view = unpack(s)
    >>> int(view["pos"][800]), int(view["neg"].sum()), round(float(view["sse"]), 6), float(view["n"])
    (1, 2, 0.72, 3.0)
    """
    pp = np.asarray(p, np.float64).ravel()
    yy = np.asarray(y).ravel()
    if pp.shape != yy.shape:
        msg = f"p and y must have one length; got {pp.shape} and {yy.shape}"
        raise ValueError(msg)
    if pp.size and (not np.isfinite(pp).all() or pp.min() < 0 or pp.max() > 1):
        msg = "probabilities must be finite and within [0, 1]"
        raise ValueError(msg)
    positive = yy.astype(bool)
    index = bin_index(pp)
    out = np.zeros(SIZE, np.float64)
    out[_POS] = np.bincount(index[positive], minlength=BINS)
    out[_NEG] = np.bincount(index[~positive], minlength=BINS)
    out[_PSUM] = np.bincount(index // (BINS // RELIABILITY_BINS), weights=pp, minlength=RELIABILITY_BINS)
    out[_SSE] = float(np.sum((pp - positive) ** 2))
    out[_SUM_P] = float(pp.sum())
    out[_SUM_Y] = float(positive.sum())
    out[_N] = float(pp.size)
    return out


def unpack(stats: ArrayLike) -> dict[str, F64]:
    """Named views of statistics vectors ``[..., SIZE]``.

    Keys: ``pos`` and ``neg`` (the histograms), ``psum`` (probability sums per
    reliability bin), ``sse``, ``sum_p``, ``sum_y`` and ``n``.
    """
    s = np.asarray(stats, np.float64)
    if s.shape[-1] != SIZE:
        msg = f"statistics vectors have {SIZE} values, got {s.shape[-1]}"
        raise ValueError(msg)
    return {
        "pos": s[..., _POS],
        "neg": s[..., _NEG],
        "psum": s[..., _PSUM],
        "sse": s[..., _SSE],
        "sum_p": s[..., _SUM_P],
        "sum_y": s[..., _SUM_Y],
        "n": s[..., _N],
    }


def _div(num: ArrayLike, den: ArrayLike) -> F64:
    """``num / den`` elementwise, NaN where ``den`` is not positive (no warning)."""
    a, b = np.broadcast_arrays(np.asarray(num, np.float64), np.asarray(den, np.float64))
    out = np.full(a.shape, np.nan)
    np.divide(a, b, out=out, where=b > 0)
    return out


def auc_from_histograms(pos: ArrayLike, neg: ArrayLike) -> F64:
    """ROC-AUC from histograms ``[..., BINS]`` of positives and negatives (same bin = tie, counted half).

    >>> float(auc_from_histograms([0, 1, 1], [1, 1, 0]))
    0.875
    """
    pp, nn = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    below = np.cumsum(nn, axis=-1) - nn  # negatives in lower bins
    pairs = np.sum(pp * (below + 0.5 * nn), axis=-1)
    return _div(pairs, pp.sum(axis=-1) * nn.sum(axis=-1))


def auc_tie_bound(pos: ArrayLike, neg: ArrayLike) -> F64:
    """The largest possible |histogram AUC − exact AUC|: half the fraction of positive–negative pairs sharing a bin.

    >>> float(auc_tie_bound([0, 2], [2, 2]))
    0.25
    """
    pp, nn = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    return _div(0.5 * np.sum(pp * nn, axis=-1), pp.sum(axis=-1) * nn.sum(axis=-1))


def _tail(histogram: F64) -> F64:
    """``out[..., k]`` = the histogram's count in bins ``k`` and above (``k = 0 .. BINS``)."""
    reverse = np.cumsum(histogram[..., ::-1], axis=-1)[..., ::-1]
    return np.concatenate([reverse, np.zeros((*histogram.shape[:-1], 1))], axis=-1)


def scores(stats: ArrayLike, climatology: float) -> dict[str, F64]:
    """Every score from summed statistics ``[..., SIZE]`` (vectorised over the leading axes).

    Parameters
    ----------
    stats
        Summed :func:`frame_statistics` vectors.
    climatology
        The climatological probability the Brier skill is measured against.

    Returns
    -------
    Score name → array of the leading shape: ``roc_auc``, ``brier``,
    ``brier_skill``, ``base_rate``, ``mean_forecast``, ``pixels``, ``ece``,
    ``best_csi`` and ``best_csi_threshold``, ``csi@T``/``pod@T``/``far@T`` for
    every ``T`` of :data:`LEVELS`; ``reliability_forecast``,
    ``reliability_observed`` and ``reliability_pixels`` have a last axis of
    :data:`RELIABILITY_BINS`. NaN where a score is undefined (no positives, no pixels).

    Examples
    --------
    >>> s = frame_statistics([0.9, 0.6, 0.2, 0.1], [1, 0, 1, 0])
    >>> r = scores(s, climatology=0.5)
    >>> float(r["roc_auc"]), round(float(r["brier"]), 4), float(r["csi@0.5"]), float(r["best_csi"])
    (0.75, 0.255, 0.3333333333333333, 0.6666666666666666)
    """
    v = unpack(stats)
    n, sum_y = v["n"], v["sum_y"]
    c = float(climatology)
    reference = _div(n * c * c - 2.0 * c * sum_y + sum_y, n)
    brier = _div(v["sse"], n)
    out: dict[str, F64] = {
        "pixels": n,
        "base_rate": _div(sum_y, n),
        "mean_forecast": _div(v["sum_p"], n),
        "roc_auc": auc_from_histograms(v["pos"], v["neg"]),
        "brier": brier,
        "brier_skill": 1.0 - _div(brier, reference),
    }
    hits_at, alarms_at = _tail(v["pos"]), _tail(v["neg"])  # counts with p >= edge k
    positives = v["pos"].sum(axis=-1)

    def table(threshold: float) -> tuple[F64, F64, F64]:
        k = _edge(threshold)
        hits, false_alarms = hits_at[..., k], alarms_at[..., k]
        return hits, false_alarms, positives - hits

    for level in LEVELS:
        a, b, m = table(level)
        out[f"csi@{level:g}"] = _div(a, a + b + m)
        out[f"pod@{level:g}"] = _div(a, a + m)
        out[f"far@{level:g}"] = _div(b, a + b)
    csi = np.stack([_div(a, a + b + m) for a, b, m in map(table, CSI_THRESHOLDS)], axis=-1)
    ranked = np.where(np.isnan(csi), -1.0, csi)
    best = np.argmax(ranked, axis=-1)  # the first (lowest) threshold on a tie
    out["best_csi"] = np.take_along_axis(csi, best[..., None], axis=-1)[..., 0]
    out["best_csi_threshold"] = np.where(
        np.isnan(out["best_csi"]), np.nan, np.asarray(CSI_THRESHOLDS, np.float64)[best]
    )
    per = BINS // RELIABILITY_BINS
    shape = (*v["pos"].shape[:-1], RELIABILITY_BINS, per)
    observed = v["pos"].reshape(shape).sum(axis=-1)
    pixels = observed + v["neg"].reshape(shape).sum(axis=-1)
    out["reliability_pixels"] = pixels
    out["reliability_forecast"] = _div(v["psum"], pixels)
    out["reliability_observed"] = _div(observed, pixels)
    out["ece"] = _div(np.sum(np.abs(observed - v["psum"]), axis=-1), n)
    return out


def bootstrap_counts(units: int, resamples: int, rng: np.random.Generator) -> F64:
    """Multiplicities ``[resamples, units]``: each row draws ``units`` units with replacement.

    >>> counts = bootstrap_counts(4, 3, np.random.default_rng(0))
    >>> counts.shape, counts.sum(axis=1).tolist()
    ((3, 4), [4.0, 4.0, 4.0])
    """
    if units < 1:
        msg = "the bootstrap needs at least one unit"
        raise ValueError(msg)
    draws = rng.integers(0, units, size=(resamples, units))
    offsets = np.arange(resamples)[:, None] * units
    flat = np.bincount((draws + offsets).ravel(), minlength=resamples * units)
    return flat.reshape(resamples, units).astype(np.float64)


def interval(point: float, samples: ArrayLike, level: float = 0.95) -> dict[str, Any]:
    """A score with its bootstrap percentile interval, as JSON (``None`` for NaN).

    Resamples where the score is undefined are left out of the percentiles and
    counted (``undefined``).

    >>> interval(0.5, [0.4, 0.5, 0.6], level=0.5)
    {'value': 0.5, 'lo': 0.45, 'hi': 0.55}
    """
    values = np.asarray(samples, np.float64).ravel()
    finite = values[np.isfinite(values)]
    tail = 50.0 * (1.0 - level)
    lo, hi = (float(np.percentile(finite, q)) for q in (tail, 100.0 - tail)) if finite.size else (None, None)
    out: dict[str, Any] = {"value": _json(point), "lo": lo, "hi": hi}
    if finite.size < values.size:
        out["undefined"] = int(values.size - finite.size)
    return out


def _json(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def summarize(point: F64, resampled: F64, climatology: float, level: float = 0.95) -> dict[str, Any]:
    """Every score of one forecast with its interval.

    Parameters
    ----------
    point
        The statistics summed over all units ``[SIZE]``.
    resampled
        The statistics of each resample ``[B, SIZE]``.
    climatology
        The reference probability of the Brier skill.
    level
        Coverage of the intervals.

    Returns
    -------
    ``pixels``, ``positives``; ``roc_auc``, ``brier``, ``brier_skill``,
    ``base_rate``, ``mean_forecast`` and ``ece`` as :func:`interval` dicts;
    ``best_csi`` (``csi`` and ``threshold``), ``thresholds`` (POD, FAR and CSI
    at each level) and ``reliability`` (the curve, with ``ece``).
    """
    p, r = scores(point, climatology), scores(resampled, climatology)

    def item(name: str) -> dict[str, Any]:
        return interval(float(p[name]), r[name], level)

    rel = {
        "edges": np.linspace(0.0, 1.0, RELIABILITY_BINS + 1).tolist(),
        "forecast": [_json(x) for x in p["reliability_forecast"]],
        "observed": [_json(x) for x in p["reliability_observed"]],
        "observed_lo": [],
        "observed_hi": [],
        "pixels": [int(x) for x in p["reliability_pixels"]],
        "ece": item("ece"),
    }
    for b in range(RELIABILITY_BINS):
        bounds = interval(float(p["reliability_observed"][b]), r["reliability_observed"][:, b], level)
        rel["observed_lo"].append(bounds["lo"])
        rel["observed_hi"].append(bounds["hi"])
    return {
        "pixels": int(p["pixels"]),
        "positives": int(unpack(point)["sum_y"]),
        **{k: item(k) for k in ("roc_auc", "brier", "brier_skill", "base_rate", "mean_forecast", "ece")},
        # the most the binned ROC-AUC can differ from the exact one (0 when the values sit on bin edges)
        "roc_auc_binning_bound": _json(float(auc_tie_bound(unpack(point)["pos"], unpack(point)["neg"]))),
        "best_csi": {"csi": item("best_csi"), "threshold": item("best_csi_threshold")},
        "thresholds": [{"threshold": t, **{k: item(f"{k}@{t:g}") for k in ("pod", "far", "csi")}} for t in LEVELS],
        "reliability": rel,
    }


#: Scores whose paired differences between forecasts are reported.
DIFFERENCES = ("roc_auc", "brier_skill", "best_csi", "brier", "ece")


def paired_differences(
    point: F64, resampled: F64, reference_point: F64, reference_resampled: F64, climatology: float, level: float = 0.95
) -> dict[str, Any]:
    """Score of a forecast minus that of the reference, with the interval of the paired resamples.

    Both forecasts' resamples must use the same multiplicities (same rows of
    :func:`bootstrap_counts`), so a day that helps one and hurts the other
    counts against the difference, not twice in two independent intervals.
    """
    p, r = scores(point, climatology), scores(resampled, climatology)
    q, s = scores(reference_point, climatology), scores(reference_resampled, climatology)
    return {k: interval(float(p[k] - q[k]), r[k] - s[k], level) for k in DIFFERENCES}


def _medians(samples: F64) -> F64:
    """Median of the finite values of each row (NaN for a row with none), without NumPy's all-NaN warning."""
    ordered = np.sort(samples, axis=1)  # NaN last
    count = np.isfinite(ordered).sum(axis=1)
    low = np.clip((count - 1) // 2, 0, None)
    high = np.clip(count // 2, 0, samples.shape[1] - 1)
    rows = np.arange(samples.shape[0])
    median = 0.5 * (ordered[rows, low] + ordered[rows, high])
    return np.where(count > 0, median, np.nan)


def lead_time_intervals(
    lead_minutes: Sequence[float | None], resamples: int, rng: np.random.Generator, level: float = 0.95
) -> dict[str, Any]:
    """The median lead time (of the detected onsets) and the fraction detected, with onset-bootstrap intervals.

    Parameters
    ----------
    lead_minutes
        One entry per onset: its lead time in minutes, ``None`` when missed
        (:func:`models.leadtime.lead_times`' ``lead_minutes``).
    resamples
        Bootstrap resamples of the onsets.
    rng
        The generator (seeded by the caller).
    level
        Coverage of the intervals.

    Examples
    --------
    >>> out = lead_time_intervals([10.0, None, 30.0, 20.0], 200, np.random.default_rng(0))
    >>> out["onsets"], out["detected"], out["median_minutes"]["value"], out["fraction_detected"]["value"]
    (4, 3, 20.0, 0.75)
    """
    leads = np.array([np.nan if m is None else m for m in lead_minutes], np.float64)
    detected = np.isfinite(leads)
    out: dict[str, Any] = {
        "onsets": int(leads.size),
        "detected": int(detected.sum()),
        "lead_minutes": [None if m is None else float(m) for m in lead_minutes],
    }
    if not leads.size:
        empty = {"value": None, "lo": None, "hi": None}
        return out | {"median_minutes": dict(empty), "mean_minutes": dict(empty), "fraction_detected": dict(empty)}
    sample = leads[rng.integers(0, leads.size, size=(resamples, leads.size))]
    found = np.isfinite(sample)
    count = found.sum(axis=1)
    means = _div(np.where(found, sample, 0.0).sum(axis=1), count)
    point_median = float(_medians(leads[None])[0])
    point_mean = float(leads[detected].mean()) if detected.any() else float("nan")
    return out | {
        "median_minutes": interval(point_median, _medians(sample), level),
        "mean_minutes": interval(point_mean, means, level),
        "fraction_detected": interval(float(detected.mean()), count / leads.size, level),
    }


def constant_statistics(probability: float, n: ArrayLike, sum_y: ArrayLike) -> F64:
    """The statistics of a forecast of one ``probability`` everywhere, from pixel and positive counts ``[...]``.

    What :func:`frame_statistics` gives for ``p = probability`` on those pixels
    (the squared error in closed form), so a climatology whose value is known
    only at the end (the pooled base rate) needs no pass over the frames.

    >>> s = constant_statistics(0.25, [4.0], [1.0])
    >>> bool(np.allclose(s, frame_statistics([0.25] * 4, [1, 0, 0, 0])[None]))
    True
    """
    nn, yy = np.asarray(n, np.float64), np.asarray(sum_y, np.float64)
    c = float(probability)
    k = int(bin_index(c))
    out = np.zeros((*nn.shape, SIZE), np.float64)
    out[..., k] = yy
    out[..., BINS + k] = nn - yy
    out[..., 2 * BINS + k // (BINS // RELIABILITY_BINS)] = c * nn
    out[..., _SSE] = nn * c * c - 2.0 * c * yy + yy
    out[..., _SUM_P] = c * nn
    out[..., _SUM_Y] = yy
    out[..., _N] = nn
    return out


class Tally:
    """Statistics vectors of every forecast per day and, while there are fewer than ``min_days`` days, per frame.

    The bootstrap resamples days when there are enough of them (frames of one
    day share its weather, so they are not independent draws), else frames; the
    per-frame vectors are dropped as soon as they cannot be needed, which keeps
    a long archive's memory at one vector per day and forecast.

    >>> tally = Tally(["a"], min_days=2)
    >>> tally.add("f1", "2024-07-25", {"a": frame_statistics([0.5], [1])})
    >>> tally.add("f2", "2024-07-25", {"a": frame_statistics([0.5], [0])})
    >>> unit, names, stats = tally.units()
    >>> unit, names, stats["a"].shape
    ('frames', ['f1', 'f2'], (2, 2014))
    >>> tally.add("f3", "2024-07-26", {"a": frame_statistics([0.5], [0])})
    >>> unit, names, stats = tally.units()
    >>> unit, names, stats["a"][:, -1].tolist()
    ('days', ['2024-07-25', '2024-07-26'], [2.0, 1.0])
    """

    def __init__(self, names: Sequence[str], *, min_days: int = 5) -> None:
        self.names = list(names)
        self.min_days = min_days
        self.by_day: dict[str, dict[str, F64]] = {}
        self.by_frame: list[tuple[str, dict[str, F64]]] | None = []

    @property
    def days(self) -> list[str]:
        """The days seen, in order."""
        return sorted(self.by_day)

    def add(self, frame: str, day: str, stats: dict[str, F64]) -> None:
        """Add one frame's vectors (forecast name → :func:`frame_statistics`)."""
        if sorted(stats) != sorted(self.names):
            msg = f"a frame must have statistics for {sorted(self.names)}, got {sorted(stats)}"
            raise ValueError(msg)
        totals = self.by_day.setdefault(day, {name: np.zeros(SIZE, np.float64) for name in self.names})
        for name in self.names:
            totals[name] += stats[name]
        if self.by_frame is not None:
            if len(self.by_day) >= self.min_days:
                self.by_frame = None
            else:
                self.by_frame.append((frame, {name: np.array(stats[name], np.float64) for name in self.names}))

    def units(self) -> tuple[str, list[str], dict[str, F64]]:
        """The resampling unit (``days`` or ``frames``), the units' names and each forecast's ``[units, SIZE]``."""
        if self.by_frame is None:
            days = self.days
            return "days", days, {n: np.stack([self.by_day[d][n] for d in days]) for n in self.names}
        frames = [f for f, _ in self.by_frame]
        empty = np.zeros((0, SIZE), np.float64)
        return (
            "frames",
            frames,
            {n: np.stack([s[n] for _, s in self.by_frame]) if self.by_frame else empty for n in self.names},
        )


def compare_units(
    stats: dict[str, F64],
    climatology: float,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    reference: str | None = None,
) -> dict[str, Any]:
    """Scores and bootstrap intervals of every forecast from its units' statistics.

    Parameters
    ----------
    stats
        Forecast name → ``[units, SIZE]`` (the same units, in the same order, for every forecast).
    climatology
        Reference probability of the Brier skill.
    resamples, seed, level
        The bootstrap: resamples of the units (one draw shared by all forecasts), its seed, the coverage.
    reference
        A forecast the others are differenced against (paired), or ``None``.

    Returns
    -------
    ``{"forecasts": name → :func:`summarize`, "differences": {"reference": ...,
    "forecasts": name → :func:`paired_differences`}}``.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> frames = [frame_statistics(rng.uniform(size=50), rng.integers(0, 2, 50)) for _ in range(8)]
    >>> out = compare_units({"x": np.stack(frames)}, 0.5, resamples=200)
    >>> r = out["forecasts"]["x"]["roc_auc"]
    >>> r["lo"] <= r["value"] <= r["hi"]
    True
    """
    units = {s.shape[0] for s in stats.values()}
    if len(units) != 1:
        msg = f"every forecast needs the same units; got counts {sorted(units)}"
        raise ValueError(msg)
    counts = bootstrap_counts(units.pop(), resamples, np.random.default_rng(seed))
    point = {name: s.sum(axis=0) for name, s in stats.items()}
    resampled = {name: counts @ s for name, s in stats.items()}
    out: dict[str, Any] = {
        "forecasts": {name: summarize(point[name], resampled[name], climatology, level) for name in stats}
    }
    if reference is not None:
        out["differences"] = {
            "reference": reference,
            "forecasts": {
                name: paired_differences(
                    point[name], resampled[name], point[reference], resampled[reference], climatology, level
                )
                for name in stats
                if name != reference
            },
        }
    return out
