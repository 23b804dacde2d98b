"""Lead time: how long before a storm's first flash the forecast said lightning was coming.

A **storm onset** is a flash with no other flash within ``radius`` pixels
(Chebyshev distance, on the frame's fixed grid) in the ``quiet_s`` before it;
later flashes near it are the same storm, so only the first counts. Onsets are
kept only when the whole quiet period and the whole look-back lie inside the
record (otherwise "first" cannot be known). For each onset at time ``t0`` and
pixel ``(r, c)``, every frame scanned in ``[t0 - lookback_s, t0)`` gives the
largest probability in the label box around the pixel (the ``box`` × ``box``
pixels whose label the flash makes 1, :mod:`featurize.labels`). The lead time
for a threshold is ``t0`` minus the scan start of the first such frame at or
above it; an onset whose probability never reaches the threshold before the
flash has no lead time and counts as missed.

Pure: arrays in, numbers out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from featurize.boxes import box_bounds


@dataclass(frozen=True)
class Onset:
    """The first flash of a storm: pixel and time (s since 1970 UTC)."""

    row: int
    col: int
    time: float


def storm_onsets(
    rows: ArrayLike,
    cols: ArrayLike,
    times: ArrayLike,
    shape: tuple[int, int],
    *,
    radius: int = 16,
    quiet_s: float = 3600.0,
    record_start: float,
) -> list[Onset]:
    """The storm onsets among flashes on a grid of ``shape``.

    ``rows``/``cols`` may lie outside the grid (flashes just beyond the edge
    still silence onsets inside it); onsets are reported only inside. Flashes
    before ``record_start + quiet_s`` only silence later ones.

    Examples
    --------
    >>> onsets = storm_onsets([5, 6, 40, 5], [5, 5, 40, 5], [100.0, 160.0, 200.0, 4000.0], (50, 50),
    ...                       radius=8, quiet_s=1800.0, record_start=-2000.0)
    >>> [(o.row, o.col, o.time) for o in onsets]
    [(5, 5, 100.0), (40, 40, 200.0), (5, 5, 4000.0)]
    """
    r = np.asarray(rows, np.int64)
    c = np.asarray(cols, np.int64)
    t = np.asarray(times, np.float64)
    order = np.argsort(t, kind="stable")
    height, width = shape
    pad = radius + 1
    last = np.full((height + 2 * pad, width + 2 * pad), -np.inf)  # latest flash time per (padded) pixel
    onsets = []
    for k in order:
        row, col, when = int(r[k]), int(c[k]), float(t[k])
        pr, pc = row + pad, col + pad
        if not (0 <= pr < last.shape[0] and 0 <= pc < last.shape[1]):
            continue
        box = last[max(pr - radius, 0) : pr + radius + 1, max(pc - radius, 0) : pc + radius + 1]
        quiet = box.max() < when - quiet_s
        inside = 0 <= row < height and 0 <= col < width
        if quiet and inside and when >= record_start + quiet_s:
            onsets.append(Onset(row, col, when))
        last[pr, pc] = when
    return onsets


def box_max_at(field: NDArray[np.floating[Any]], onset: Onset, box: int) -> float:
    """The largest finite value of ``field`` over the pixels whose label the onset's flash makes 1 (NaN if none).

    Pixel ``p``'s label box spans ``p - before .. p + after``
    (:func:`featurize.boxes.box_bounds`), so a flash at ``f`` is in the boxes of
    the pixels ``f - after .. f + before``.
    """
    before, after = box_bounds(box)
    r, c = onset.row, onset.col
    window = field[max(r - after, 0) : r + before + 1, max(c - after, 0) : c + before + 1]
    finite = window[np.isfinite(window)]
    return float(finite.max()) if finite.size else float("nan")


def lead_times(
    onsets: Sequence[Onset],
    frame_times: Sequence[float],
    box_probabilities: NDArray[np.floating[Any]],
    thresholds: Sequence[float],
    *,
    lookback_s: float = 2700.0,
) -> dict[str, Any]:
    """Lead times of the onsets for each threshold.

    ``box_probabilities[i, k]`` is the largest probability in onset ``i``'s box
    on frame ``k`` (scan start ``frame_times[k]``). Onsets whose look-back starts
    before the first frame are left out (``onsets_without_history``).

    Examples
    --------
    >>> p = np.array([[0.1, 0.3, 0.6, 0.9], [0.1, 0.1, 0.1, 0.2]])
    >>> out = lead_times([Onset(0, 0, 3600.0), Onset(1, 1, 3600.0)], [0.0, 600.0, 1200.0, 1800.0], p, [0.25, 0.5],
    ...                  lookback_s=3600.0)
    >>> out["0.25"]["lead_minutes"], out["0.25"]["detected"], out["0.5"]["median_minutes"]
    ([50.0, None], 1, 40.0)
    """
    times = np.asarray(frame_times, np.float64)
    usable = [i for i, o in enumerate(onsets) if times.size and times[0] <= o.time - lookback_s + 1e-6]
    out: dict[str, Any] = {
        "onsets": len(usable),
        "onsets_without_history": len(onsets) - len(usable),
        "lookback_minutes": lookback_s / 60.0,
    }
    for threshold in thresholds:
        leads: list[float | None] = []
        for i in usable:
            o = onsets[i]
            before = (times >= o.time - lookback_s) & (times < o.time)
            above = before & (box_probabilities[i] >= threshold)
            leads.append(float((o.time - times[above][0]) / 60.0) if above.any() else None)
        found = np.array([lead for lead in leads if lead is not None], np.float64)
        out[f"{threshold:g}"] = {
            "threshold": float(threshold),
            "detected": int(found.size),
            "fraction_detected": float(found.size / len(leads)) if leads else float("nan"),
            "median_minutes": float(np.median(found)) if found.size else None,
            "mean_minutes": float(found.mean()) if found.size else None,
            "lead_minutes": leads,
        }
    return out
