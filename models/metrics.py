"""Verification scores for probability forecasts of a yes/no event (NumPy only).

Inputs everywhere: ``p`` float ``[N]`` probabilities in [0, 1], ``y`` ``[N]`` 0/1
outcomes, optional ``w`` ``[N]`` non-negative weights (the sampling weights of
the dataset undo its class balance). Scores follow the usual forecast
verification definitions (Jolliffe & Stephenson; Wilks):

* ROC-AUC — probability that a random event gets a higher forecast than a random non-event (ties count half);
* PR-AUC — average precision (area under the precision–recall steps);
* Brier score ``mean w (p - y)²``; Brier skill score ``1 - BS / BS_clim`` against the base rate;
* reliability — observed frequency per forecast bin; ECE ``Σ (n_b / N) |ȳ_b - p̄_b|``;
* at a threshold: hits *a*, false alarms *b*, misses *c*; POD ``a/(a+c)``, FAR ``b/(a+b)``,
  CSI ``a/(a+b+c)``, frequency bias ``(a+b)/(a+c)``.

The sums behind the Brier score, reliability and the contingency table
(:func:`brier_sums`, :func:`reliability_sums`, :func:`contingency_counts`) add up
over samples, so a rolling window (``monitor.verify``) can keep them and score the
total with :func:`ratio` and :func:`contingency_scores`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]


def _inputs(p: ArrayLike, y: ArrayLike, w: ArrayLike | None) -> tuple[F64, F64, F64]:
    pp, yy = np.asarray(p, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    ww = np.ones_like(pp) if w is None else np.asarray(w, np.float64).ravel()
    if not (pp.shape == yy.shape == ww.shape):
        msg = f"p, y and w must have one length; got {pp.shape}, {yy.shape}, {ww.shape}"
        raise ValueError(msg)
    if pp.size and (not np.isfinite(pp).all() or pp.min() < 0 or pp.max() > 1):
        msg = "probabilities must be finite and within [0, 1]"
        raise ValueError(msg)
    return pp, yy, ww


def roc_auc(p: ArrayLike, y: ArrayLike, w: ArrayLike | None = None) -> float:
    """Area under the ROC curve (weighted Mann–Whitney, ties half).

    >>> roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
    """
    pp, yy, ww = _inputs(p, y, w)
    order = np.argsort(pp, kind="mergesort")
    pp, yy, ww = pp[order], yy[order], ww[order]
    pos, neg = ww * yy, ww * (1 - yy)
    if pos.sum() == 0 or neg.sum() == 0:
        return float("nan")
    _, starts = np.unique(pp, return_index=True)
    ends = np.append(starts[1:], pp.size)
    neg_before, total = 0.0, 0.0
    for a, b in zip(starts, ends, strict=True):
        neg_here = neg[a:b].sum()
        total += pos[a:b].sum() * (neg_before + 0.5 * neg_here)
        neg_before += neg_here
    return float(total / (pos.sum() * neg.sum()))


def pr_auc(p: ArrayLike, y: ArrayLike, w: ArrayLike | None = None) -> float:
    """Average precision: Σ (recall_k - recall_{k-1}) precision_k over descending thresholds.

    >>> pr_auc([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0])
    0.8333333333333333
    """
    pp, yy, ww = _inputs(p, y, w)
    order = np.argsort(-pp, kind="mergesort")
    pp, yy, ww = pp[order], yy[order], ww[order]
    if (ww * yy).sum() == 0:
        return float("nan")
    last = np.append(np.flatnonzero(np.diff(pp) != 0), pp.size - 1)  # end of each tied group
    tp = np.cumsum(ww * yy)[last]
    fp = np.cumsum(ww * (1 - yy))[last]
    recall = tp / tp[-1]
    precision = tp / (tp + fp)
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def brier(p: ArrayLike, y: ArrayLike, w: ArrayLike | None = None) -> float:
    """Weighted mean squared error of the probabilities.

    >>> brier([1.0, 0.0, 0.5], [1, 0, 1])
    0.08333333333333333
    """
    squared_error, weight = brier_sums(p, y, w)
    return float(np.divide(squared_error, weight))  # NaN (with NumPy's warning) when there are no samples


def brier_sums(p: ArrayLike, y: ArrayLike, w: ArrayLike | None = None) -> tuple[float, float]:
    """The weighted sum of squared errors and the sum of weights (Brier score = first / second; they add up).

    >>> brier_sums([1.0, 0.0, 0.5], [1, 0, 1])
    (0.25, 3.0)
    """
    pp, yy, ww = _inputs(p, y, w)
    return float(np.sum(ww * (pp - yy) ** 2)), float(ww.sum())


def brier_skill(p: ArrayLike, y: ArrayLike, w: ArrayLike | None = None, base_rate: float | None = None) -> float:
    """``1 - BS / BS_climatology``; climatology forecasts the (weighted) base rate everywhere.

    >>> brier_skill([1.0, 0.0], [1, 0])
    1.0
    """
    pp, yy, ww = _inputs(p, y, w)
    rate = float(np.sum(ww * yy) / ww.sum()) if base_rate is None else base_rate
    reference = brier(np.full_like(pp, rate), yy, ww)
    return float(1.0 - brier(pp, yy, ww) / reference) if reference > 0 else float("nan")


def reliability(p: ArrayLike, y: ArrayLike, w: ArrayLike | None = None, bins: int = 10) -> dict[str, Any]:
    """Forecast/observed frequency per equal-width bin, and the expected calibration error.

    >>> r = reliability([0.05, 0.05, 0.95, 0.95], [0, 0, 1, 0], bins=2)
    >>> r["observed"], round(r["ece"], 12)
    ([0.0, 0.5], 0.25)
    """
    weight, forecast, observed = reliability_sums(p, y, w, bins)
    filled = weight > 0
    mean_f = np.where(filled, forecast / np.where(filled, weight, 1), np.nan)
    mean_o = np.where(filled, observed / np.where(filled, weight, 1), np.nan)
    ece = float(np.nansum(weight / weight.sum() * np.abs(mean_o - mean_f)))
    return {
        "edges": np.linspace(0, 1, bins + 1).tolist(),
        "forecast": [None if np.isnan(v) else float(v) for v in mean_f],
        "observed": [None if np.isnan(v) else float(v) for v in mean_o],
        "weight": weight.tolist(),
        "ece": ece,
    }


def reliability_bins(p: ArrayLike, bins: int = 10) -> NDArray[np.intp]:
    """The equal-width bin of each probability (1.0 falls in the last bin).

    >>> reliability_bins([0.0, 0.25, 0.5, 1.0], bins=4).tolist()
    [0, 1, 2, 3]
    """
    return np.minimum((np.asarray(p, np.float64) * bins).astype(np.intp), bins - 1)


def reliability_sums(p: ArrayLike, y: ArrayLike, w: ArrayLike | None = None, bins: int = 10) -> tuple[F64, F64, F64]:
    """Per equal-width bin: the sum of weights, of weighted forecasts and of weighted outcomes (they add up).

    >>> [v.tolist() for v in reliability_sums([0.05, 0.05, 0.95, 0.95], [0, 0, 1, 0], bins=2)]
    [[2.0, 2.0], [0.1, 1.9], [0.0, 1.0]]
    """
    pp, yy, ww = _inputs(p, y, w)
    index = reliability_bins(pp, bins)
    weight, forecast, observed = (np.asarray(np.bincount(index, v, bins), np.float64) for v in (ww, ww * pp, ww * yy))
    return weight, forecast, observed


def ratio(num: float, den: float) -> float:
    """``num / den``, NaN when there is nothing to divide by (a score with no events to count is NaN, never 0).

    >>> ratio(1, 4), ratio(0, 0)
    (0.25, nan)
    """
    return num / den if den > 0 else float("nan")


def contingency_counts(
    p: ArrayLike, y: ArrayLike, threshold: float, w: ArrayLike | None = None
) -> tuple[float, float, float]:
    """Weighted hits, false alarms and misses when "yes" means ``p >= threshold`` (they add up over samples).

    >>> contingency_counts([0.9, 0.6, 0.2, 0.1], [1, 0, 1, 0], 0.5)
    (1.0, 1.0, 1.0)
    """
    pp, yy, ww = _inputs(p, y, w)
    yes = pp >= threshold
    hits = float(np.sum(ww * (yes & (yy == 1))))
    false_alarms = float(np.sum(ww * (yes & (yy == 0))))
    misses = float(np.sum(ww * (~yes & (yy == 1))))
    return hits, false_alarms, misses


def contingency_scores(hits: float, false_alarms: float, misses: float) -> dict[str, float]:
    """POD, FAR, CSI and frequency bias from (summed) hits, false alarms and misses; NaN where undefined.

    >>> contingency_scores(1.0, 1.0, 2.0)
    {'pod': 0.3333333333333333, 'far': 0.5, 'csi': 0.25, 'bias': 0.6666666666666666}
    """
    a, b, c = hits, false_alarms, misses
    return {"pod": ratio(a, a + c), "far": ratio(b, a + b), "csi": ratio(a, a + b + c), "bias": ratio(a + b, a + c)}


def contingency(p: ArrayLike, y: ArrayLike, threshold: float, w: ArrayLike | None = None) -> dict[str, float]:
    """POD, FAR, CSI and frequency bias when "yes" means ``p >= threshold``.

    >>> s = contingency([0.9, 0.6, 0.2, 0.1], [1, 0, 1, 0], 0.5)
    >>> s["hits"], s["false_alarms"], s["misses"], s["pod"], s["far"], round(s["csi"], 4), s["bias"]
    (1.0, 1.0, 1.0, 0.5, 0.5, 0.3333, 1.0)
    """
    a, b, c = contingency_counts(p, y, threshold, w)
    return {"threshold": threshold, "hits": a, "false_alarms": b, "misses": c, **contingency_scores(a, b, c)}


def best_csi(p: ArrayLike, y: ArrayLike, w: ArrayLike | None = None, steps: int = 99) -> dict[str, float]:
    """The threshold among 0.01 … 0.99 with the highest CSI, and its scores.

    >>> best_csi([0.9, 0.6, 0.2, 0.1], [1, 0, 1, 0])["csi"]
    0.6666666666666666
    """
    scores = [contingency(p, y, t, w) for t in np.linspace(0.01, 0.99, steps)]
    return max(scores, key=lambda s: -1.0 if np.isnan(s["csi"]) else s["csi"])
