"""What forecasters get out of a stored grid: GeoJSON contours, a PNG overlay and point time series.

The contract, once for every function here:

- ``probability`` is float32 ``[H, W]`` in ``[0, 1]`` on the frame's own ABI
  fixed grid (:class:`ingest.geometry.FixedGrid`): row 0 is the northernmost
  row, column 0 the westernmost. NaN marks missing pixels (space, no input);
  they are never drawn and count as below every contour level.
- Levels are probabilities in ``(0, 1)``; the default is LightningCast's
  10, 25, 50 and 75 %. A pixel is at or above a level when
  ``p >= level - 1e-6`` (packed percent, ``uint8 × 0.01`` in float32, lands a
  hair below its level), in the contours and the overlay alike.
- GeoJSON follows RFC 7946: WGS84 ``[lon, lat]`` in degrees, rounded to 5
  decimals (about 1 m). Contours are traced in pixel space and only their
  vertices are mapped to the ground, through the grid's scan angles and the
  satellite's geostationary projection.
- Times are timezone-aware UTC; in returned JSON-ready dicts they are ISO 8601
  strings with a ``Z``.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from ingest.events import SECTORS
from ingest.geometry import FixedGrid
from ingest.ncio import iso_utc
from monitor.quality import LEVELS  # LightningCast's contour levels, the default of contours()
from serve.gridfile import GridFile
from serve.store import FileGridStore, StoredGrid

logger = logging.getLogger(__name__)

#: At most this many contour levels per request.
MAX_LEVELS = 10
#: Decimals of GeoJSON degrees (1e-5 degree is about 1.1 m).
DECIMALS = 5
#: The overlay's title.
TITLE = "P(lightning, 30 min)"
_EPS = 1e-6

# Marching squares. The corners of the cell whose north-west corner is pixel
# (i, j) are numbered counter-clockwise as seen on a map (north up): 0 = BL
# (i+1, j), 1 = BR (i+1, j+1), 2 = TR (i, j+1), 3 = TL (i, j); edge k joins
# corner k to corner k+1 (0 bottom, 1 right, 2 top, 3 left). A segment runs
# from an edge crossed high → low (going counter-clockwise) to an edge crossed
# low → high, which keeps the high side on its left: rings run anticlockwise
# round high ground and clockwise round holes. In a saddle, each high → low
# edge joins the next low → high edge anticlockwise when the cell centre (the
# mean of its corners) is high, which joins the two high corners, and the
# previous one when it is low, which parts them.
_CORNERS = np.array([(1, 0), (1, 1), (0, 1), (0, 0)], np.int64)  # (row, col) offset of corner k
_EDGE_START = _CORNERS  # edge k runs from corner k ...
_EDGE_END = np.roll(_CORNERS, -1, axis=0)  # ... to corner k + 1
_EDGE_LOW = np.minimum(_EDGE_START, _EDGE_END)


def _segment_table() -> NDArray[np.int8]:
    """``[case, centre_high, slot, (from_edge, to_edge)]``; -1 where a case has no second segment."""
    table = np.full((16, 2, 2, 2), -1, np.int8)
    for case in range(16):
        high = [(case >> corner) & 1 for corner in range(4)]
        down = [k for k in range(4) if high[k] and not high[(k + 1) % 4]]
        up = {k for k in range(4) if high[(k + 1) % 4] and not high[k]}
        for centre, step in ((0, -1), (1, 1)):
            for slot, k in enumerate(down):
                to = next((k + step * n) % 4 for n in range(1, 4) if (k + step * n) % 4 in up)
                table[case, centre, slot] = (k, to)
    return table


_SEGMENTS = _segment_table()

# Overlay bands: below 5 % (and NaN) transparent, then 5, 10, 25, 50, 75 %.
_BAND_EDGES = (0.05, 0.10, 0.25, 0.50, 0.75)
_PALETTE = np.array(
    [
        (0, 0, 0, 0),
        (150, 190, 230, 110),
        (30, 110, 255, 200),
        (40, 190, 70, 225),
        (255, 200, 0, 240),
        (220, 20, 60, 255),
    ],
    np.uint8,
)
_LEGEND = ("5 %", "10 %", "25 %", "50 %", "75 %")


def check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    """The levels, validated and sorted ascending; ``ValueError`` naming what was expected and found.

    >>> check_levels([0.5, 0.1])
    (0.1, 0.5)
    >>> check_levels([0.1, 1.0])
    Traceback (most recent call last):
    ...
    ValueError: contour levels must be probabilities strictly between 0 and 1; found 1.0
    """
    values = [float(v) for v in levels]
    if not 1 <= len(values) <= MAX_LEVELS:
        msg = f"expected 1 to {MAX_LEVELS} contour levels; found {len(values)}"
        raise ValueError(msg)
    for value in values:
        if not 0.0 < value < 1.0:
            msg = f"contour levels must be probabilities strictly between 0 and 1; found {value}"
            raise ValueError(msg)
    if len(set(values)) != len(values):
        msg = f"contour levels must be distinct; found {values}"
        raise ValueError(msg)
    return tuple(sorted(values))


def _check_field(probability: NDArray[np.floating[Any]], grid: FixedGrid | None = None) -> NDArray[np.float32]:
    p = np.asarray(probability, np.float32)
    if p.ndim != 2 or min(p.shape) < 1:
        msg = f"probability must be a 2-D [H, W] array; found shape {p.shape}"
        raise ValueError(msg)
    if grid is not None and p.shape != grid.shape:
        msg = f"probability shape {p.shape} does not match the grid {grid.shape}"
        raise ValueError(msg)
    return p


def _padded(p: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """The field with a one-pixel border, missing pixels (and the border) set to 0 and flagged."""
    missing = np.pad(~np.isfinite(p), 1, constant_values=True)
    field = np.pad(np.where(missing[1:-1, 1:-1], np.float32(0.0), p), 1)
    return field, missing


def _segments(field: NDArray[np.float32], missing: NDArray[np.bool_], level: float) -> NDArray[np.int64]:
    """Every contour segment as rows ``(i, j, from_edge, to_edge)`` of the cell it crosses, ``[S, 4]``."""
    high = ((field >= level - _EPS) & ~missing).view(np.uint8)
    case = high[1:, :-1] | (high[1:, 1:] << 1) | (high[:-1, 1:] << 2) | (high[:-1, :-1] << 3)
    i, j = np.nonzero((case != 0) & (case != 15))
    c = case[i, j]
    centre = np.zeros(c.shape, np.intp)
    saddle = np.flatnonzero((c == 5) | (c == 10))
    if saddle.size:
        si, sj = i[saddle], j[saddle]
        mean = (field[si, sj] + field[si, sj + 1] + field[si + 1, sj] + field[si + 1, sj + 1]) / 4.0
        centre[saddle] = mean >= level - _EPS
    pairs = _SEGMENTS[c, centre]  # [n, slot, 2]
    second = np.flatnonzero(pairs[:, 1, 0] >= 0)
    return np.concatenate(
        [
            np.column_stack([i, j, pairs[:, 0, 0], pairs[:, 0, 1]]),
            np.column_stack([i[second], j[second], pairs[second, 1, 0], pairs[second, 1, 1]]),
        ]
    ).astype(np.int64)


def _edge_ids(i: NDArray[np.int64], j: NDArray[np.int64], k: NDArray[np.int64], shape: tuple[int, int]) -> Any:
    """A unique number for each cell edge of the padded ``shape``: horizontal edges first, then vertical."""
    height, width = shape
    r, c = i + _EDGE_LOW[k, 0], j + _EDGE_LOW[k, 1]  # the edge's north or west end names it
    horizontal = _EDGE_START[k, 0] == _EDGE_END[k, 0]
    return np.where(horizontal, r * (width - 1) + c, height * (width - 1) + r * width + c)


def _crossings(
    field: NDArray[np.float32], missing: NDArray[np.bool_], level: float, segs: NDArray[np.int64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Where each segment's start edge crosses the level, unpadded fractional ``(row, col)``.

    Linear interpolation between the edge's two pixel values; halfway where
    one of them is missing (there is no value to interpolate towards).
    """
    i, j, k = segs[:, 0], segs[:, 1], segs[:, 2]
    (ra, ca), (rb, cb) = (i + _EDGE_START[k, 0], j + _EDGE_START[k, 1]), (i + _EDGE_END[k, 0], j + _EDGE_END[k, 1])
    a = field[ra, ca].astype(np.float64)
    b = field[rb, cb].astype(np.float64)
    t = np.clip((level - a) / (b - a), 0.0, 1.0)  # a != b: one end is at/above the level, the other below
    t[missing[ra, ca] | missing[rb, cb]] = 0.5
    return ra + t * (rb - ra) - 1.0, ca + t * (cb - ca) - 1.0


def _walk(successor: NDArray[np.int64]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """The cycles of a permutation: the visiting order and the length of each cycle."""
    following = successor.tolist()
    seen = bytearray(len(following))
    order: list[int] = []
    lengths: list[int] = []
    for start in range(len(following)):
        if seen[start]:
            continue
        before = len(order)
        node = start
        while not seen[node]:
            seen[node] = 1
            order.append(node)
            node = following[node]
        lengths.append(len(order) - before)
    return np.asarray(order, np.intp), np.asarray(lengths, np.intp)


def _traced(
    field: NDArray[np.float32], missing: NDArray[np.bool_], level: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.intp]]:
    """All rings of one level: vertex rows and columns in ring order, concatenated, and each ring's length."""
    segs = _segments(field, missing, level)
    if not segs.size:
        return np.zeros(0), np.zeros(0), np.zeros(0, np.intp)
    starts = _edge_ids(segs[:, 0], segs[:, 1], segs[:, 2], field.shape)
    ends = _edge_ids(segs[:, 0], segs[:, 1], segs[:, 3], field.shape)
    # Every crossed edge starts exactly one segment and ends exactly one (the
    # border is below every level, so no contour leaves the padded field):
    # the segment after the one ending on an edge is the one starting there.
    successor = np.empty(len(segs), np.int64)
    successor[np.argsort(ends, kind="stable")] = np.argsort(starts, kind="stable")
    order, lengths = _walk(successor)
    rows, cols = _crossings(field, missing, level, segs)
    return rows[order], cols[order], lengths


def contour_rings(probability: NDArray[np.floating[Any]], level: float) -> list[NDArray[np.float64]]:
    """Closed contour rings of one level in pixel space, by marching squares.

    Parameters
    ----------
    probability
        float ``[H, W]`` in ``[0, 1]``, NaN where missing (counts as below).
    level
        Probability in ``(0, 1)``.

    Returns
    -------
    list of float64 ``[N, 2]``
        Fractional ``(row, col)`` vertices of each ring (pixel centres are
        integers; the first vertex is not repeated at the end), anticlockwise
        on the map round areas at or above the level.

    Examples
    --------
    One pixel above the level: a diamond halfway to its neighbours.

    >>> p = np.zeros((3, 3), np.float32)
    >>> p[1, 1] = 1.0
    >>> [ring.tolist() for ring in contour_rings(p, 0.5)]
    [[[0.5, 1.0], [1.0, 0.5], [1.5, 1.0], [1.0, 1.5]]]
    """
    (level,) = check_levels([level])
    field, missing = _padded(_check_field(probability))
    rows, cols, lengths = _traced(field, missing, level)
    vertices = np.column_stack([rows, cols])
    return np.split(vertices, np.cumsum(lengths)[:-1]) if lengths.size else []


def _open_pieces(points: NDArray[np.float64], ok: NDArray[np.bool_]) -> list[list[list[float]]]:
    """A ring with vertices off the disk, cut there into open lines of at least two vertices."""
    first_bad = int(np.argmin(ok))
    points, ok = np.roll(points, -first_bad, axis=0), np.roll(ok, -first_bad)
    cuts = np.flatnonzero(~ok)
    pieces = np.split(points, cuts)
    return [piece[1:].tolist() for piece in pieces if len(piece) > 2]


def _lines(lon: NDArray[np.float64], lat: NDArray[np.float64], lengths: NDArray[np.intp]) -> list[list[list[float]]]:
    """GeoJSON line coordinates: closed rings, cut into open lines where a vertex is off the disk."""
    ring = np.repeat(np.arange(lengths.size), lengths)
    points = np.column_stack([lon, lat])
    repeat = np.zeros(ring.size, np.bool_)
    repeat[1:] = (points[1:] == points[:-1]).all(axis=1) & (ring[1:] == ring[:-1])  # exact-level corners
    points, ring = points[~repeat], ring[~repeat]
    ok = np.asarray(np.isfinite(points).all(axis=1))
    bounds = np.concatenate([[0], np.cumsum(np.bincount(ring, minlength=lengths.size))])
    bad = np.bincount(ring, weights=~ok, minlength=lengths.size)
    listed = points.tolist()
    lines: list[list[list[float]]] = []
    for r in range(lengths.size):
        start, stop = int(bounds[r]), int(bounds[r + 1])
        if bad[r]:
            lines.extend(_open_pieces(points[start:stop], ok[start:stop]))
        elif stop - start >= 3:
            ring = listed[start:stop]
            lines.append(ring if ring[-1] == ring[0] else [*ring, ring[0]])
    return lines


def _feature(level: float, lines: list[list[list[float]]]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"level": level, "percent": round(level * 100, 4), "lines": len(lines)},
        "geometry": {"type": "MultiLineString", "coordinates": lines},
    }


def contours(
    probability: NDArray[np.floating[Any]], grid: FixedGrid, levels: Sequence[float] = LEVELS
) -> dict[str, Any]:
    """Probability contours as a GeoJSON FeatureCollection.

    Parameters
    ----------
    probability
        float ``[H, W]`` in ``[0, 1]`` on ``grid``, NaN where missing.
    grid
        The fixed grid of ``probability``.
    levels
        1 to 10 distinct probabilities in ``(0, 1)``.

    Returns
    -------
    dict
        A FeatureCollection with one Feature per level that has a contour, in
        ascending level order (a level nowhere reached has no Feature). Each
        geometry is a MultiLineString of closed rings (first vertex repeated
        last) in ``[lon, lat]`` degrees; a ring crossing off the Earth's disk
        is cut there into open lines. Properties: ``level`` (probability),
        ``percent`` and ``lines`` (how many lines).

    Raises
    ------
    ValueError
        Bad levels, or ``probability`` not ``[H, W]`` of ``grid``.
    """
    chosen = check_levels(levels)
    field, missing = _padded(_check_field(probability, grid))
    features = []
    for level in chosen:
        rows, cols, lengths = _traced(field, missing, level)
        if not lengths.size:
            continue
        x, y = grid.scan_angles_of(rows, cols)
        lon, lat = grid.projection.lonlat(x, y)
        lines = _lines(np.round(lon, DECIMALS), np.round(lat, DECIMALS), lengths)
        if lines:
            features.append(_feature(level, lines))
    return {"type": "FeatureCollection", "features": features}


def overlay_png(probability: NDArray[np.floating[Any]], *, legend: bool = True, title: str = TITLE) -> bytes:
    """An RGBA PNG of the grid for a map overlay, one image pixel per grid pixel, row 0 (north) at the top.

    Parameters
    ----------
    probability
        float ``[H, W]`` in ``[0, 1]``, NaN where missing.
    legend
        Draw the colour boxes, their levels and ``title`` in the bottom-left
        corner (skipped, with a debug log, when the image is too small).
    title
        The legend's title.

    Returns
    -------
    bytes
        A PNG: transparent below 5 % and where missing, then discrete colour
        bands from 5, 10, 25, 50 and 75 % (more opaque as they rise; 75 % and
        above fully opaque). The same input always gives the same bytes.

    Examples
    --------
    >>> overlay_png(np.zeros((2, 2), np.float32), legend=False)[1:4]
    b'PNG'
    """
    p = _check_field(probability)
    band = np.zeros(p.shape, np.uint8)
    for edge in _BAND_EDGES:
        band += p >= edge - _EPS  # NaN compares False: transparent
    image = Image.fromarray(_PALETTE[band], mode="RGBA")
    if legend:
        _draw_legend(image, title)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=6)
    return out.getvalue()


def _draw_legend(image: Image.Image, title: str) -> None:
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    pad, box, gap, margin = 6, 12, 4, 8

    def size(text: str) -> tuple[int, int]:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        return math.ceil(right - left), math.ceil(bottom - top)

    title_w, title_h = size(title)
    label_w = max(size(label)[0] for label in _LEGEND)
    width = 2 * pad + max(title_w, box + gap + label_w)
    height = 2 * pad + title_h + gap + len(_LEGEND) * (box + gap) - gap
    if width + 2 * margin > image.width or height + 2 * margin > image.height:
        logger.debug("overlay %sx%s too small for its %sx%s legend", image.width, image.height, width, height)
        return
    x0, y0 = margin, image.height - margin - height
    ink = (40, 40, 40, 255)
    draw.rectangle((x0, y0, x0 + width - 1, y0 + height - 1), fill=(255, 255, 255, 220), outline=ink)
    draw.text((x0 + pad, y0 + pad), title, fill=(0, 0, 0, 255), font=font)
    top = y0 + pad + title_h + gap
    for n, label in enumerate(_LEGEND):
        y = top + n * (box + gap)
        r, g, b, _ = (int(v) for v in _PALETTE[n + 1])
        draw.rectangle((x0 + pad, y, x0 + pad + box - 1, y + box - 1), fill=(r, g, b, 255), outline=ink)
        draw.text((x0 + pad + box + gap, y), label, fill=(0, 0, 0, 255), font=font)


def _check_point(lat: float, lon: float) -> None:
    if not -90.0 <= lat <= 90.0:
        msg = f"lat must be in [-90, 90] degrees north; found {lat}"
        raise ValueError(msg)
    if not -180.0 <= lon <= 180.0:
        msg = f"lon must be in [-180, 180] degrees east; found {lon}"
        raise ValueError(msg)


def _check_window(since: datetime, until: datetime | None) -> None:
    for name, when in (("since", since), ("until", until)):
        if when is not None and when.utcoffset() is None:
            msg = f"{name} must be a timezone-aware datetime; found naive {when.isoformat()}"
            raise ValueError(msg)
    if until is not None and until < since:
        msg = f"until must not be before since; found since {iso_utc(since)}, until {iso_utc(until)}"
        raise ValueError(msg)


def _check_sectors(store: FileGridStore, sectors: Sequence[str] | None) -> list[str]:
    if sectors is None:
        return store.sectors()
    unknown = [s for s in sectors if s not in SECTORS]
    if unknown:
        msg = f"unknown sector(s) {unknown}; valid: {', '.join(SECTORS)}"
        raise ValueError(msg)
    return list(dict.fromkeys(sectors))


def nearest_pixel(grid: FixedGrid, lat: float, lon: float) -> tuple[int, int] | None:
    """The ``(row, col)`` of the pixel nearest to a ground point, or ``None`` off the grid or out of sight."""
    row, col = grid.rowcol(lat, lon)
    r, c = float(np.asarray(row)), float(np.asarray(col))
    if not (math.isfinite(r) and math.isfinite(c)):
        return None
    r_int, c_int = math.floor(r + 0.5), math.floor(c + 0.5)
    height, width = grid.shape
    return (r_int, c_int) if 0 <= r_int < height and 0 <= c_int < width else None


def _sample(
    stored: StoredGrid, lat: float, lon: float, located: dict[tuple[Any, ...], tuple[int, int] | None]
) -> dict[str, Any] | None:
    """One series entry, or ``None`` when the grid does not cover the point (raises when it cannot be read)."""
    with GridFile(stored.path) as grid_file:
        key = grid_file.geometry_key()
        if key not in located:  # sectors share geometry until a mesoscale sector moves
            located[key] = nearest_pixel(grid_file.geometry(), lat, lon)
        pixel = located[key]
        if pixel is None:
            logger.debug("grid %s does not cover (%s, %s)", stored.grid_id, lat, lon)
            return None
        probability = grid_file.point(*pixel)
        valid = grid_file.valid_time()
    return {
        "grid_id": stored.grid_id,
        "satellite": stored.satellite,
        "sector": stored.sector,
        "scan_start": iso_utc(stored.scan_start),
        "valid_time": iso_utc(valid),
        "probability": probability,
        "model_name": stored.model,
        "model_version": stored.version,
        "row": pixel[0],
        "col": pixel[1],
    }


def point_series(
    store: FileGridStore,
    lat: float,
    lon: float,
    *,
    since: datetime,
    until: datetime | None = None,
    sectors: Sequence[str] | None = None,
    unreadable: Callable[[StoredGrid, Exception], None] | None = None,
) -> dict[str, Any]:
    """The probability at the pixel nearest a ground point in every stored grid scanned in ``[since, until]``.

    Parameters
    ----------
    store
        The grid store.
    lat, lon
        Geodetic degrees, ``[-90, 90]`` and ``[-180, 180]``.
    since, until
        Timezone-aware bounds on the scan start, inclusive; no upper bound when
        ``until`` is ``None``.
    sectors
        Sectors to look in (``C``, ``F``, ``M1``, ``M2``); all in the store by default.
    unreadable
        Told of each grid file that cannot be read (it is skipped either way;
        without a callback each is logged).

    Returns
    -------
    dict
        ``lat``, ``lon``, ``since``, ``until`` and ``series``: one entry per grid
        that covers the point, by scan start (then sector, model version):
        ``grid_id``, ``satellite``, ``sector``, ``scan_start``, ``valid_time``
        (ISO 8601 UTC), ``probability`` (``None`` where the pixel is missing),
        ``model_name``, ``model_version`` and the pixel's ``row``/``col``;
        ``skipped``: how many grid files could not be read.
        Grids whose block does not contain the point, or whose satellite cannot
        see it, are left out. Only one pixel is read from each file, and the
        point is located once per distinct grid geometry.

    Raises
    ------
    ValueError
        ``lat``/``lon`` out of range, naive datetimes, ``until`` before
        ``since``, unknown sectors.
    """
    _check_point(lat, lon)
    _check_window(since, until)
    chosen = _check_sectors(store, sectors)
    located: dict[tuple[Any, ...], tuple[int, int] | None] = {}
    found: list[tuple[StoredGrid, dict[str, Any]]] = []
    skipped = 0
    for sector in chosen:
        for stored in store.grids_between(sector, since, until):
            try:
                entry = _sample(stored, lat, lon, located)
            except (OSError, ValueError, RuntimeError, KeyError, IndexError) as exc:  # a broken file on disk
                skipped += 1
                if unreadable is None:
                    logger.warning("point series skips unreadable grid %s: %s", stored.grid_id, exc)
                else:
                    unreadable(stored, exc)
                continue
            if entry is not None:
                found.append((stored, entry))
    found.sort(key=lambda pair: (pair[0].scan_start, pair[0].sector, pair[0].version, pair[0].grid_id))
    return {
        "lat": lat,
        "lon": lon,
        "since": iso_utc(since),
        "until": None if until is None else iso_utc(until),
        "series": [entry for _, entry in found],
        "skipped": skipped,
    }
