"""Labels: whether lightning struck near a pixel in the 30 minutes after the frame.

The label of pixel ``p`` for a frame at time ``t`` is 1 when at least one GLM
flash falls in the ``box × box`` pixels around ``p`` (16 by default, the
:mod:`featurize` box convention) during ``(t, t + window]`` (30 min by
default), else 0. Flashes are placed on the ABI grid exactly as the ``ltg``
channel places them (:func:`featurize.glm_grid.flash_pixels`), so training
labels and live verification use one rule.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from featurize.boxes import box_bounds, box_count
from featurize.glm_grid import flash_count_grid, in_window

U8 = NDArray[np.uint8]


def label_grid(
    rows: ArrayLike,
    cols: ArrayLike,
    times: ArrayLike,
    frame_time: float,
    shape: tuple[int, int],
    *,
    window_s: float = 1800.0,
    box: int = 16,
) -> U8:
    """The label of every pixel of a frame.

    Parameters
    ----------
    rows, cols
        ``[n]`` integer ABI pixel of each flash (from :func:`~featurize.glm_grid.flash_pixels`,
        with ``margin=box`` so flashes just beyond the frame edge count for the edge pixels).
    times
        ``[n]`` flash times, s since 1970 UTC.
    frame_time
        The frame's scan start, s since 1970 UTC.
    shape
        ``(H, W)`` of the frame.
    window_s, box
        Look-ahead (s) and box side (pixels).

    Returns
    -------
    uint8 ``[H, W]`` of 0/1.

    Examples
    --------
    A flash at pixel (5, 5): with a 4-pixel box (rows ``p-2 .. p+1``), rows and
    columns 4–7 see it.

    >>> label_grid([5], [5], [100.0], 0.0, (8, 12), box=4)[:, 2:9]
    array([[0, 0, 0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0, 0, 0],
           [0, 0, 1, 1, 1, 1, 0],
           [0, 0, 1, 1, 1, 1, 0],
           [0, 0, 1, 1, 1, 1, 0],
           [0, 0, 1, 1, 1, 1, 0]], dtype=uint8)
    """
    chosen = in_window(times, frame_time, frame_time + window_s)
    pad = box
    height, width = shape
    r = np.asarray(rows, np.int64)[chosen] + pad
    c = np.asarray(cols, np.int64)[chosen] + pad
    keep = (r >= 0) & (r < height + 2 * pad) & (c >= 0) & (c < width + 2 * pad)
    struck = flash_count_grid(r[keep], c[keep], (height + 2 * pad, width + 2 * pad)) > 0
    return (box_count(struck, box) > 0)[pad : pad + height, pad : pad + width].astype(np.uint8)


def labels_at(
    rows: ArrayLike,
    cols: ArrayLike,
    times: ArrayLike,
    frame_time: float,
    centers: ArrayLike,
    *,
    window_s: float = 1800.0,
    box: int = 16,
) -> U8:
    """The labels of chosen pixels only, flash by flash (the check of :func:`label_grid`).

    Parameters are those of :func:`label_grid`, with ``centers`` ``[N, 2]`` (row, col).

    Returns
    -------
    uint8 ``[N]``.

    Examples
    --------
    >>> labels_at([5], [5], [100.0], 0.0, [[4, 4], [3, 3], [7, 7]], box=4).tolist()
    [1, 0, 1]
    """
    chosen = in_window(times, frame_time, frame_time + window_s)
    r = np.asarray(rows, np.int64)[chosen]
    c = np.asarray(cols, np.int64)[chosen]
    points = np.asarray(centers, np.int64).reshape(-1, 2)
    before, after = box_bounds(box)
    # A flash at (fr, fc) is in the box of p when p - before <= f <= p + after.
    dr = r[None, :] - points[:, 0, None]
    dc = c[None, :] - points[:, 1, None]
    inside = (dr >= -before) & (dr <= after) & (dc >= -before) & (dc <= after)
    return np.asarray(inside.any(axis=1), np.uint8)
