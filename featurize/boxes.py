"""Dense box statistics: for every pixel, a reduction over the box around it, in O(1) per pixel.

Box convention (the one contract of this module)
------------------------------------------------
A box of even ``size`` *s* around pixel ``(r, c)`` covers rows ``r - s//2 ..
r + s//2 - 1`` and columns ``c - s//2 .. c + s//2 - 1``: exactly the pixels of
the ``s × s`` patch whose element ``[s//2, s//2]`` is ``(r, c)``
(:func:`featurize.patches.extract_patches`). Odd sizes are centred. Pixels
outside the frame and NaN pixels do not take part: the mean is over the finite
pixels of the box, the maximum and minimum likewise, and a box with no finite
pixel gives NaN.

Means use separable running sums in float64 (a cumulative sum and one
subtraction per axis; counts in exact integers), so their cost does not grow
with the box size; maxima and minima use separable sparse-table doubling
(``log2(size)`` vectorised ``np.maximum`` passes per axis), exact by
construction.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]


def box_bounds(size: int) -> tuple[int, int]:
    """Offsets ``(before, after)`` of a box: it spans ``r - before .. r + after``.

    >>> box_bounds(64), box_bounds(16), box_bounds(3)
    ((32, 31), (8, 7), (1, 1))
    """
    if size < 1:
        msg = f"box size must be >= 1, got {size}"
        raise ValueError(msg)
    return size // 2, size - size // 2 - 1


def _running_sum(
    values: NDArray[np.generic], size: int, axis: int, accumulate: type[np.generic] = np.float64
) -> NDArray[np.generic]:
    """Sum over ``[i - before, i + after]`` along ``axis`` (0 or 1): a cumulative sum and one subtraction.

    Sums accumulate in ``accumulate`` (float64, or int64 for exact integer sums)
    whatever the input type. Along axis 0 the cumulative sum runs row by row
    (``np.cumsum`` along axis 0 is several times slower than adding whole rows).
    """
    before, _ = box_bounds(size)
    n = values.shape[axis]
    dtype = np.result_type(values.dtype, accumulate)
    if axis == 1:
        table = np.zeros((values.shape[0], n + size), dtype)
        np.cumsum(values, axis=1, out=table[:, before + 1 : before + 1 + n])
        table[:, before + 1 + n :] = table[:, before + n : before + n + 1]
        return table[:, size : size + n] - table[:, :n]
    table = np.empty((n + size, values.shape[1]), dtype)
    table[: before + 1] = 0
    for row in range(n):
        np.add(table[before + row], values[row], out=table[before + 1 + row])
    table[before + 1 + n :] = table[before + n]
    return table[size : size + n] - table[:n]


def _running_extreme(values: F32, size: int, axis: int, fill: float) -> F32:
    """Max (``fill=-inf``) or min (``fill=+inf``) over ``[i - before, i + after]`` along ``axis``.

    Sparse-table doubling: maxima over windows of 1, 2, 4, … pixels, then two
    overlapping windows cover any size; O(log size) whole-array operations,
    each a single vectorised ``np.maximum``. Exact (no arithmetic).
    """
    op = np.maximum if fill < 0 else np.minimum
    before, _ = box_bounds(size)
    moved = np.moveaxis(values, axis, 0)
    n = moved.shape[0]
    level = np.full((n + size - 1, *moved.shape[1:]), fill, np.float32)
    level[before : before + n] = moved
    width = 1
    while width * 2 <= size:
        length = level.shape[0] - width
        level = op(level[:length], level[width : width + length])
        width *= 2
    return np.moveaxis(op(level[:n], level[size - width : size - width + n]), 0, axis)


def box_sum(values: NDArray[np.floating], size: int) -> F64:
    """Sum of each pixel's box (out-of-frame pixels count as 0), in float64.

    Separable running sums: a cumulative sum and one subtraction per axis.

    Parameters
    ----------
    values
        ``[H, W]`` finite floats (replace NaN before calling).
    size
        Box side in pixels.

    Returns
    -------
    float64 ``[H, W]``.

    Examples
    --------
    >>> box_sum(np.ones((4, 5)), 2)
    array([[1., 2., 2., 2., 2.],
           [2., 4., 4., 4., 4.],
           [2., 4., 4., 4., 4.],
           [2., 4., 4., 4., 4.]])
    """
    return _running_sum(_running_sum(np.asarray(values), size, 0), size, 1)  # type: ignore[return-value]


def box_sum_exact(values: NDArray[np.integer], size: int) -> NDArray[np.int64]:
    """Box sums of integers, exact (int64 running sums).

    >>> box_sum_exact(np.array([[1, 2], [3, 4]]), 2)
    array([[ 1,  3],
           [ 4, 10]])
    """
    rows = _running_sum(np.asarray(values), size, 0, np.int64)
    return _running_sum(rows, size, 1, np.int64)  # type: ignore[return-value]


def box_count(mask: NDArray[np.bool_], size: int) -> F32:
    """Number of ``True`` pixels in each pixel's box (exact: integer sums), as float32.

    Examples
    --------
    >>> box_count(np.array([[True, False], [True, True]]), 2)
    array([[1., 1.],
           [2., 3.]], dtype=float32)
    """
    return box_sum_exact(np.asarray(mask, np.int32), size).astype(np.float32)


def box_mean(values: F32, size: int) -> F32:
    """Mean of the finite pixels of each pixel's box; NaN where there are none.

    Parameters
    ----------
    values
        float32 ``[H, W]``, NaN where missing.
    size
        Box side in pixels (64 for the context box, 16 for the central box).

    Returns
    -------
    float32 ``[H, W]``.

    Examples
    --------
    >>> box_mean(np.array([[1, 2, np.nan], [3, 4, 5]], np.float32), 2)
    array([[1.       , 1.5      , 2.       ],
           [2.       , 2.5      , 3.6666667]], dtype=float32)
    """
    finite = np.isfinite(values)
    return mean_from(box_sum(np.where(finite, values, 0.0), size), box_count(finite, size))


def mean_from(total: NDArray[np.number], count: NDArray[np.number]) -> F32:
    """``total / count`` (computed in float64) as float32, NaN where ``count`` is 0.

    ``total`` must be 0 wherever ``count`` is 0 (a box sum of zeroed NaN), so
    0/0 gives the NaN.

    >>> mean_from(np.array([3.0, 0.0]), np.array([2, 0]))
    array([1.5, nan], dtype=float32)
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        mean: F32 = np.divide(total, count, dtype=np.float64).astype(np.float32)
    return mean


def _extreme(values: F32, size: int, fill: float) -> F32:
    """Box max/min of the finite pixels; NaN where a box has none."""
    work = np.where(np.isfinite(values), values, np.float32(fill)).astype(np.float32)
    out = _running_extreme(_running_extreme(work, size, 0, fill), size, 1, fill)
    return np.where(out == np.float32(fill), np.float32(np.nan), out)


def box_max(values: F32, size: int) -> F32:
    """Maximum of the finite pixels of each pixel's box; NaN where there are none.

    Bit-exact with ``np.nanmax`` over the same box.

    Examples
    --------
    >>> box_max(np.array([[1, 7, np.nan], [3, np.nan, np.nan]], np.float32), 2)
    array([[1., 7., 7.],
           [3., 7., 7.]], dtype=float32)
    """
    return _extreme(values, size, -np.inf)


def box_min(values: F32, size: int) -> F32:
    """Minimum of the finite pixels of each pixel's box; NaN where there are none.

    Examples
    --------
    >>> box_min(np.array([[1, 7, np.nan], [3, np.nan, np.nan]], np.float32), 2)
    array([[1., 1., 7.],
           [1., 1., 7.]], dtype=float32)
    """
    return _extreme(values, size, np.inf)
