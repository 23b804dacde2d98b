"""What forecasters get out of a stored grid: GeoJSON contour polygons, a PNG overlay and point time series.

The contract, once for every function here:

- ``probability`` is float32 ``[H, W]`` in ``[0, 1]`` on the frame's own ABI
  fixed grid (:class:`ingest.geometry.FixedGrid`): row 0 is the northernmost
  row, column 0 the westernmost. NaN marks missing pixels (space, no input);
  they are never drawn.
- Levels are probabilities in ``(0, 1)``; the default is LightningCast's
  10, 25, 50 and 75 %. A pixel is at or above a level when
  ``p >= level - 1e-6`` (packed percent, ``uint8 × 0.01`` in float32, lands a
  hair below its level), in the contours and the overlay alike.
- GeoJSON follows RFC 7946: WGS84 ``[lon, lat]`` in degrees, rounded to 5
  decimals (about 1 m). Contours are valid polygons with holes
  (:mod:`serve.products.georef`): filled contours traced in pixel space (contourpy),
  only their vertices mapped to the ground through the grid's scan angles and
  the satellite's geostationary projection, then made valid and oriented.
  Missing pixels are masked there: a polygon stops at the centres of the valid
  pixels next to them.
- Times are timezone-aware UTC; in returned JSON-ready dicts they are ISO 8601
  strings with a ``Z``.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from foundation.utc import iso_utc
from ingest.events import SECTORS
from ingest.geometry import FixedGrid
from monitor.quality import LEVELS  # LightningCast's contour levels, the default of contours()
from serve.products.georef import contour_features
from serve.stores.files import FileGridStore, StoredGrid
from serve.stores.gridfile import GridFile

logger = logging.getLogger(__name__)

#: At most this many contour levels per request.
MAX_LEVELS = 10
#: Decimals of GeoJSON degrees (1e-5 degree is about 1.1 m).
DECIMALS = 5
#: The overlay's title.
TITLE = "P(lightning, 30 min)"
_EPS = 1e-6

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


def contours(probability: NDArray[np.floating[Any]], grid: FixedGrid, levels: Sequence[float] = LEVELS, *,
             properties: Mapping[str, Any] | None = None, crs: str = "lonlat", geometry: str = "polygons",
             parallax_km: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """Probability contours as a GeoJSON FeatureCollection of valid polygons with holes.

    Parameters
    ----------
    probability
        float ``[H, W]`` in ``[0, 1]`` on ``grid``, NaN where missing.
    grid
        The fixed grid of ``probability``.
    levels
        1 to 10 distinct probabilities in ``(0, 1)``.
    properties
        Added to every Feature's properties (the API adds the grid's identity:
        ``grid_id``, ``valid_time``, ``scan_start``, model, sector, satellite).
    crs
        ``"lonlat"`` (RFC 7946 degrees) or ``"pixel"`` (``[column, row]``).
    geometry
        ``"polygons"`` (``MultiPolygon``) or ``"lines"`` (the polygons' rings
        as a ``MultiLineString``).
    parallax_km
        Cloud-top height of the parallax correction, km (0: none; lon/lat only).

    Returns
    -------
    dict
        One Feature per level that some pixel reaches, ascending (a level
        nowhere reached has no Feature): the region ``p >= level`` traced by
        :func:`serve.products.georef.contour_polygons` (valid after rounding, rings of 4
        or more positions, exteriors anticlockwise and holes clockwise; missing
        pixels masked). Properties: ``level``, ``percent``, ``parallax_km`` and
        ``properties``.

    Raises
    ------
    ValueError
        Bad levels, crs or geometry, or ``probability`` not ``[H, W]`` of ``grid``.
    """
    chosen = check_levels(levels)
    p = _check_field(probability, grid)
    features = contour_features(p, grid, chosen, properties=properties, crs=crs, geometry=geometry,
                                parallax_km=parallax_km)  # fmt: skip
    return {"type": "FeatureCollection", "features": features}


def positions(collection: Mapping[str, Any]) -> int:
    """How many positions the geometries of a FeatureCollection of (Multi)Polygons or MultiLineStrings hold."""
    total = 0
    for feature in collection["features"]:
        shape = feature["geometry"]
        if shape["type"] == "MultiPolygon":
            total += sum(len(ring) for polygon in shape["coordinates"] for ring in polygon)
        else:
            total += sum(len(line) for line in shape["coordinates"])
    return total


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
