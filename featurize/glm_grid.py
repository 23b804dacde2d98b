"""GLM flashes onto the ABI fixed grid: the ``ltg`` channel and the flash pixels labels use.

Geometry and parallax
---------------------
GLM navigates every flash onto its *lightning ellipsoid* (GRS80 raised 14 km at
the equator, 6 km at the poles), so a flash's latitude/longitude is where the
satellite's line of sight meets that raised surface — near the cloud top, not
the ground below it. ABI's fixed grid is a grid of scan angles from the same
orbital position, and ABI sees the cloud top along the same line of sight. So
each flash is placed by converting its lat/lon to scan angles **on the
lightning ellipsoid** (:meth:`ingest.geometry.FixedGrid.rowcol` with
:data:`ingest.geometry.LIGHTNING_ELLIPSOID`) and taking the ABI pixel that scan
angle falls in. That puts the flash on the pixel where ABI sees its cloud,
without a parallax correction to the ground that ABI's own pixels do not get
either. Projecting the lat/lon with the ground ellipsoid instead would move
flashes off their clouds by 1–5 ABI pixels over CONUS from GOES-East (computed
with this module's geometry: 0.8 px at 25°N 80°W, 2.6 px at 35°N 95°W, 4.5 px
at 48°N 122°W). GLM and ABI fly on one spacecraft, so one satellite position
serves both.

Flashes whose line of sight misses the grid are dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ingest.geometry import LIGHTNING_ELLIPSOID, FixedGrid

I64 = NDArray[np.int64]
F32 = NDArray[np.float32]


@dataclass(frozen=True)
class FlashPixels:
    """Integer ABI pixel of each flash that lands on the grid.

    ``rows``/``cols`` int64 ``[n_on_grid]``; ``index`` the positions of those
    flashes in the input arrays; ``outside`` how many missed the grid.
    """

    rows: I64
    cols: I64
    index: I64
    outside: int


def flash_pixels(grid: FixedGrid, lat: ArrayLike, lon: ArrayLike, margin: int = 0) -> FlashPixels:
    """The ABI pixel containing each flash's line of sight.

    Parameters
    ----------
    grid
        The frame's fixed grid ``[H, W]``.
    lat, lon
        ``[n]`` GLM flash latitude/longitude, degrees, on the lightning ellipsoid.
    margin
        Also keep flashes up to ``margin`` pixels beyond the frame edge (their
        rows/columns are then negative or >= H/W): labels near the edge need the
        flashes just outside it.

    Returns
    -------
    FlashPixels
        Pixel row/column of the flashes on the (extended) grid, nearest pixel centre.

    Examples
    --------
    >>> from ingest.geometry import GeosProjection
    >>> proj = GeosProjection(lon_0=-75.0, height=35786023.0)
    >>> x, y = proj.on_ellipsoid(LIGHTNING_ELLIPSOID).scan_angles(30.0, -90.0)
    >>> step = 5.6e-5
    >>> grid = FixedGrid(proj, x + step * np.arange(-2, 3), y - step * np.arange(-1, 2))
    >>> p = flash_pixels(grid, [30.0, 0.0], [-90.0, -75.0])
    >>> p.rows.tolist(), p.cols.tolist(), p.outside
    ([1], [2], 1)
    """
    rows_f, cols_f = grid.rowcol(np.asarray(lat, np.float64), np.asarray(lon, np.float64), LIGHTNING_ELLIPSOID)
    rows = np.floor(np.asarray(rows_f) + 0.5)
    cols = np.floor(np.asarray(cols_f) + 0.5)
    height, width = grid.shape
    with np.errstate(invalid="ignore"):
        inside = (
            np.isfinite(rows)
            & np.isfinite(cols)
            & (rows >= -margin)
            & (rows < height + margin)
            & (cols >= -margin)
            & (cols < width + margin)
        )
    index = np.flatnonzero(inside)
    return FlashPixels(rows[index].astype(np.int64), cols[index].astype(np.int64), index, int(rows.size - index.size))


def flash_count_grid(rows: I64, cols: I64, shape: tuple[int, int]) -> F32:
    """Flashes per pixel, ``[H, W]`` float32 (``np.bincount``; no loop over flashes).

    Examples
    --------
    >>> flash_count_grid(np.array([0, 0, 1]), np.array([1, 1, 2]), (2, 3))
    array([[0., 2., 0.],
           [0., 0., 1.]], dtype=float32)
    """
    height, width = shape
    counts = np.bincount(rows * width + cols, minlength=height * width)
    return counts.reshape(shape).astype(np.float32)


def in_window(times: ArrayLike, start: float, end: float) -> NDArray[np.bool_]:
    """Flashes with ``start < time <= end`` (float64 s since 1970 UTC).

    >>> in_window([0.0, 1.0, 2.0], 0.0, 1.0).tolist()
    [False, True, False]
    """
    t = np.asarray(times, np.float64)
    return (t > start) & (t <= end)


def ltg_channel(
    grid: FixedGrid, lat: ArrayLike, lon: ArrayLike, times: ArrayLike, frame_time: float, window_s: float = 900.0
) -> tuple[F32, int]:
    """The ``ltg`` channel: flashes per pixel in ``(frame_time - window_s, frame_time]``.

    Parameters
    ----------
    grid
        The frame's fixed grid.
    lat, lon, times
        ``[n]`` flash positions (degrees, lightning ellipsoid) and first-event
        times (s since 1970 UTC), from any number of GLM granules.
    frame_time
        The frame's scan start, s since 1970 UTC.
    window_s
        How far back to count (default 15 min).

    Returns
    -------
    channel
        float32 ``[H, W]`` flash counts.
    outside
        Flashes of the window that missed the grid.

    Examples
    --------
    >>> from ingest.geometry import GeosProjection
    >>> proj = GeosProjection(lon_0=-75.0, height=35786023.0)
    >>> x, y = proj.on_ellipsoid(LIGHTNING_ELLIPSOID).scan_angles(30.0, -90.0)
    >>> grid = FixedGrid(proj, x + 5.6e-5 * np.arange(-1, 2), y - 5.6e-5 * np.arange(-1, 2))
    >>> channel, outside = ltg_channel(grid, [30.0, 30.0], [-90.0, -90.0], [500.0, 2000.0], 1000.0)
    >>> channel.tolist(), outside
    ([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]], 0)
    """
    chosen = in_window(times, frame_time - window_s, frame_time)
    pixels = flash_pixels(grid, np.asarray(lat)[chosen], np.asarray(lon)[chosen])
    return flash_count_grid(pixels.rows, pixels.cols, grid.shape), pixels.outside
