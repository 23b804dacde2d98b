"""Patches around chosen pixels: the sparse path, for training examples and for checking the dense one.

A patch of even size *s* centred on ``(r, c)`` holds rows ``r - s/2 .. r + s/2 - 1``
and columns likewise, so ``patch[s/2, s/2]`` is the pixel itself (the box
convention of :mod:`featurize`). Pixels outside the frame are NaN, or with
``edges="mirror"`` the frame reflected at its border (the halo policy of
:func:`featurize.channels.with_halo` for the bounded feature sets).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from featurize.boxes import box_bounds

F32 = NDArray[np.float32]


def extract_patches(image: NDArray[np.floating], centers: ArrayLike, size: int = 64, *, edges: str = "nan") -> F32:
    """Cut a ``size × size`` patch around each centre, NaN (or the mirrored frame) beyond the frame edge.

    Parameters
    ----------
    image
        ``[H, W]`` array (float; NaN where missing).
    centers
        ``[N, 2]`` integer ``(row, col)`` pixel centres inside the frame.
    size
        Patch side in pixels (64 by default).
    edges
        ``nan`` or ``mirror`` (``numpy.pad(mode="symmetric")``) beyond the frame.

    Returns
    -------
    float32 ``[N, size, size]``; a new array (the image is not modified).

    Examples
    --------
    >>> image = np.arange(12, dtype=np.float32).reshape(3, 4)
    >>> extract_patches(image, [[0, 0], [2, 3]], size=2)
    array([[[nan, nan],
            [nan,  0.]],
    <BLANKLINE>
           [[ 6.,  7.],
            [10., 11.]]], dtype=float32)
    >>> extract_patches(image, [[0, 0]], size=2, edges="mirror")[0]
    array([[0., 0.],
           [0., 0.]], dtype=float32)
    """
    points = np.asarray(centers, np.int64).reshape(-1, 2)
    height, width = image.shape
    outside = (points < 0).any(axis=1) | (points[:, 0] >= height) | (points[:, 1] >= width)
    if outside.any():
        msg = f"patch centres must lie inside the {height}x{width} frame; found {points[outside][:3].tolist()}"
        raise ValueError(msg)
    before, _ = box_bounds(size)
    if edges == "mirror":
        padded = np.pad(np.asarray(image, np.float32), size, mode="symmetric")
    elif edges == "nan":
        padded = np.full((height + 2 * size, width + 2 * size), np.nan, np.float32)
        padded[size : size + height, size : size + width] = image
    else:
        msg = f"edges must be 'nan' or 'mirror'; got {edges!r}"
        raise ValueError(msg)
    offsets = np.arange(size) - before + size
    rows = points[:, 0, None] + offsets[None, :]
    cols = points[:, 1, None] + offsets[None, :]
    patches: F32 = padded[rows[:, :, None], cols[:, None, :]]
    return patches


def core(patches: F32, size: int) -> F32:
    """The central ``size × size`` part of each patch, same centre pixel.

    >>> core(np.arange(16, dtype=np.float32).reshape(1, 4, 4), 2)
    array([[[ 5.,  6.],
            [ 9., 10.]]], dtype=float32)
    """
    outer = patches.shape[-1]
    start = outer // 2 - box_bounds(size)[0]
    return patches[..., start : start + size, start : start + size]
