"""Georeferenced products of a grid: valid GeoJSON polygons, parallax correction, lat/lon and Web Mercator rasters.

The native CF NetCDF (:mod:`serve.stores.gridfile`) stays the reference: it is on the
satellite's own fixed grid, which GIS tools and web maps cannot place without
a geostationary reprojection. This module makes what they can place, from the
probability ``[H, W]`` (float32 in ``[0, 1]``, NaN where missing) and its
:class:`ingest.geometry.FixedGrid`:

- **Contours as polygons** (:func:`contour_polygons`): the region
  ``p >= level`` as a shapely ``MultiPolygon``, traced by contourpy's filled
  contours in pixel space (linear interpolation along the cell edges), its
  vertices mapped to the ground through the scan angles, then made valid,
  snapped to a precision grid (validity is checked again after the snapping)
  and oriented per RFC 7946 (exteriors anticlockwise, holes clockwise).
  *Missing pixels* (NaN, and pixels off the Earth's disk) are masked: a cell
  with a missing corner is not filled (contourpy's corner mask leaves out only
  the triangle next to that corner), so a polygon stops on the centres of the
  valid pixels next to a missing one, and at the outermost pixel centres of the
  grid. A polygon never has a vertex in space.
- **Parallax correction** (:func:`cloud_top_projection`): LightningCast-style,
  for one documented constant cloud-top height (default
  :data:`DEFAULT_CLOUD_TOP_KM`). A pixel's line of sight is intersected with
  the ellipsoid inflated by that height, ``(a + h, b + h)``, instead of the
  surface, with the satellite left where it is; the result is the ground
  position below the cloud top the satellite saw. The shift is towards the
  sub-satellite point, about ``h · tan(local zenith angle)``.
- **Resampled rasters** (:func:`latlon_netcdf`, :func:`cog`, :func:`map_layer`):
  a regular target grid (EPSG:4326 lat/lon, or EPSG:3857 Web Mercator for web
  maps) filled by nearest neighbour from the native grid, through an
  :class:`IndexMap` (the flat native pixel index of every target pixel; -1
  outside the scan). Index maps depend only on the grid's geometry and the
  parallax height, so they are computed once and kept in a bounded LRU
  (:class:`IndexMaps`) keyed by the geometry (projection, shape, hash of the
  ``x``/``y`` arrays), the target kind and the parallax. The lat/lon → scan
  angle step is the closed form of the GOES-R PUG (vol. 3, §4.2.8.1), evaluated
  separably on the 1-D latitude and longitude axes; a test checks it against
  pyproj. Measured for CONUS (1500 x 2500 pixels onto 4436 x 1845 lat/lon or
  4068 x 2246 Mercator pixels, 2 shared cores): 0.5-1.1 s to build a map (the
  scan angles of 8.2 M points take 0.47 s in closed form, 2.1 s through pyproj),
  about 0.1 ms to find it again.

Web Mercator layers follow the viewer's contract (:func:`map_layer`): value
bytes ``round(p / 0.004)`` (0..250, 255 missing), pixels about the native pixel
size at the sector centre, the longest side at most :data:`MAX_MAP_SIDE`,
latitudes clipped to ±80°. Grids that straddle the antimeridian (GOES-West full
disk) are not supported: their longitudes are not unwrapped.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry import LineString, MultiLineString, MultiPolygon, Polygon
from shapely.geometry.polygon import orient

from ingest.geometry import Ellipsoid, FixedGrid, GeosProjection

logger = logging.getLogger(__name__)

#: The cloud-top height of the parallax correction when one is asked for without a height, km.
DEFAULT_CLOUD_TOP_KM = 9.0
#: The largest cloud-top height accepted, km (tropical overshooting tops reach about 20 km).
MAX_PARALLAX_KM = 20.0
#: Decimals of lon/lat degrees in GeoJSON (1e-5 degree is about 1.1 m) and of pixel coordinates.
DEGREE_DECIMALS = 5
PIXEL_DECIMALS = 2
#: The Web Mercator sphere radius (EPSG:3857), metres.
MERCATOR_RADIUS = 6378137.0
#: Web Mercator images keep latitudes within this many degrees of the equator.
MERCATOR_MAX_LAT = 80.0
#: The longest side of a Web Mercator image, pixels.
MAX_MAP_SIDE = 4096
#: The longest side of a regular lat/lon raster, pixels (a full disk's native side).
MAX_LATLON_SIDE = 5424
#: Target rows per block while an index map is built (bounds its temporaries to a few hundred MB on a full disk).
_ROWS_PER_BLOCK = 256
#: Probability per byte of the ``value`` layer: ``p = byte * VALUE_SCALE``.
VALUE_SCALE = 0.004
#: The byte of a missing pixel in the ``value`` layer.
VALUE_MISSING = 255
#: The ``ir`` layer's grey scale: this brightness temperature (K) is white ...
IR_COLD_K = 180.0
#: ... and this one black.
IR_WARM_K = 320.0
_EPS = 1e-6
# LightningCast's colours by band: 10-25 % blue, 25-50 % cyan, 50-75 % green, >= 75 % purple; alpha 0.55.
_MAP_EDGES = (0.10, 0.25, 0.50, 0.75)
_MAP_ALPHA = 140
_MAP_PALETTE = np.array(
    [(0, 0, 0, 0), (31, 79, 255, _MAP_ALPHA), (0, 229, 255, _MAP_ALPHA), (0, 200, 0, _MAP_ALPHA),
     (160, 32, 240, _MAP_ALPHA)],
    np.uint8,
)  # fmt: skip
KINDS = ("latlon", "mercator")


def check_parallax(height_km: float) -> float:
    """The cloud-top height in km when it is in ``[0, MAX_PARALLAX_KM]``; ``ValueError`` otherwise.

    >>> check_parallax(9)
    9.0
    >>> check_parallax(25)
    Traceback (most recent call last):
    ...
    ValueError: parallax_km must be a cloud-top height in [0, 20] km; found 25.0
    """
    value = float(height_km)
    if not (math.isfinite(value) and 0.0 <= value <= MAX_PARALLAX_KM):
        msg = f"parallax_km must be a cloud-top height in [0, {MAX_PARALLAX_KM:g}] km; found {value}"
        raise ValueError(msg)
    return value


def cloud_top_projection(projection: GeosProjection, height_km: float = DEFAULT_CLOUD_TOP_KM) -> GeosProjection:
    """The projection whose lines of sight end on the cloud tops ``height_km`` above the ellipsoid.

    The same scan angles and satellite position (:meth:`GeosProjection.on_ellipsoid`
    keeps the satellite's distance from the Earth's centre), intersected with
    the ellipsoid ``(a + h, b + h)``. Its :meth:`~GeosProjection.lonlat` gives
    the parallax-corrected position of a pixel: the ground below the cloud top.
    ``height_km`` 0 gives ``projection`` itself.

    >>> p = GeosProjection(lon_0=-75.2, height=35786023.0)
    >>> top = cloud_top_projection(p, 9.0)
    >>> round(top.ellipsoid.a - p.ellipsoid.a), round(top.satellite_distance - p.satellite_distance)
    (9000, 0)
    """
    h = check_parallax(height_km) * 1000.0
    if h == 0.0:
        return projection
    inflated = Ellipsoid(projection.ellipsoid.a + h, projection.ellipsoid.b + h)
    return projection.on_ellipsoid(inflated)


# --- contours ------------------------------------------------------------------------------------------------------


def _masked(probability: NDArray[np.floating[Any]], grid: FixedGrid) -> np.ma.MaskedArray[Any, Any]:
    p = np.asarray(probability, np.float64)
    return np.ma.masked_array(p, mask=~np.isfinite(p) | ~grid.earth_mask())


def _tracer(probability: NDArray[np.floating[Any]], grid: FixedGrid) -> Any:
    """A contourpy generator over the masked grid: built once per grid, asked once per level."""
    import contourpy  # a serve dependency; imported here so that importing this module stays cheap

    return contourpy.contour_generator(z=_masked(probability, grid), name="serial",
                                       fill_type=contourpy.FillType.OuterOffset, corner_mask=True)  # fmt: skip


def _filled(tracer: Any, level: float) -> list[list[NDArray[np.float64]]]:
    """The rings of the region ``z >= level``: per polygon, its exterior then its holes, ``(col, row)`` each."""
    points, offsets = cast(Any, tracer.filled(level - _EPS, 2.0))  # p <= 1 < 2: every pixel at or above the level
    return [[xy[a:b] for a, b in zip(off[:-1], off[1:], strict=True)] for xy, off in zip(points, offsets, strict=True)]


def _to_ground(rings: list[NDArray[np.float64]], grid: FixedGrid, projection: GeosProjection) -> list[Any]:
    out = []
    for ring in rings:
        x, y = grid.scan_angles_of(ring[:, 1], ring[:, 0])
        lon, lat = projection.lonlat(x, y)
        out.append(np.column_stack([lon, lat]))
    return out


def _polygonal(geometry: Any) -> list[Polygon]:
    """The polygons of a geometry (a collection from ``make_valid`` may hold lines and points too)."""
    if isinstance(geometry, Polygon):
        return [geometry]
    return [part for g in getattr(geometry, "geoms", []) for part in _polygonal(g)]


def contour_polygons(probability: NDArray[np.floating[Any]], grid: FixedGrid, level: float, *,
                     crs: str = "lonlat", parallax_km: float = 0.0) -> MultiPolygon:  # fmt: skip
    """The region where ``probability >= level`` as a valid, RFC 7946-oriented MultiPolygon.

    Parameters
    ----------
    probability
        float ``[H, W]`` in ``[0, 1]`` on ``grid``; NaN where missing (masked,
        see the module docstring).
    grid
        The fixed grid of ``probability``.
    level
        Probability in ``(0, 1)``; a pixel at ``level - 1e-6`` counts as at it.
    crs
        ``"lonlat"``: ``(lon, lat)`` degrees rounded to 5 decimals;
        ``"pixel"``: ``(column, row)`` on the grid (pixel centres are integers),
        rounded to 2 decimals.
    parallax_km
        Cloud-top height of the parallax correction (lon/lat only); 0 = none.

    Returns
    -------
    shapely.MultiPolygon
        Valid after rounding; every ring has at least 4 positions and a
        non-zero area; exteriors anticlockwise, holes clockwise (in the
        coordinates given). Empty when no pixel reaches the level.

    Examples
    --------
    An annulus of high probability round a low centre: one polygon with one hole.

    >>> from ingest.geometry import GeosProjection
    >>> g = FixedGrid(GeosProjection(-75.2, 35786023.0), np.arange(40) * 56e-6, 0.1 - np.arange(40) * 56e-6)
    >>> r = np.hypot(*np.mgrid[-20:20, -20:20] + 0.5)
    >>> (poly,) = contour_polygons(((r > 5) & (r < 15)).astype(np.float32), g, 0.5).geoms
    >>> len(poly.interiors), poly.is_valid, poly.exterior.is_ccw, poly.interiors[0].is_ccw
    (1, True, True, False)
    """
    return _polygons_at(_tracer(probability, grid), grid, level, crs, parallax_km)


def _polygons_at(tracer: Any, grid: FixedGrid, level: float, crs: str, parallax_km: float) -> MultiPolygon:
    if crs not in ("lonlat", "pixel"):
        msg = f"crs must be lonlat or pixel; found {crs!r}"
        raise ValueError(msg)
    projection = cloud_top_projection(grid.projection, parallax_km)
    polygons = []
    for rings in _filled(tracer, level):
        placed = rings if crs == "pixel" else _to_ground(rings, grid, projection)
        if not all(np.isfinite(r).all() for r in placed):  # cannot happen on the disk mask; never emit NaN
            logger.debug("contour polygon with a vertex off the disk dropped at level %s", level)
            continue
        polygons.append(Polygon(placed[0], placed[1:]))
    return _cleaned(polygons, 10.0**-PIXEL_DECIMALS if crs == "pixel" else 10.0**-DEGREE_DECIMALS)


def _cleaned(polygons: list[Polygon], grid_size: float) -> MultiPolygon:
    """Polygons made valid, snapped to ``grid_size`` (validity re-checked), zero-area parts dropped, oriented."""
    if not polygons:
        return MultiPolygon()
    merged: Any = MultiPolygon(polygons)
    if not merged.is_valid:
        merged = shapely.make_valid(merged)
    merged = shapely.set_precision(merged, grid_size)  # snap rounding: the result is valid at this precision
    if not merged.is_valid:
        merged = shapely.set_precision(shapely.make_valid(merged), grid_size)
    parts = [orient(p, 1.0) for p in _polygonal(merged) if p.area > 0 and len(p.exterior.coords) >= 4]
    return MultiPolygon(parts)


def _coordinates(ring: Any, decimals: int) -> list[list[float]]:
    return np.round(np.asarray(ring.coords, np.float64), decimals).tolist()  # type: ignore[no-any-return]


def polygon_coordinates(polygons: MultiPolygon, decimals: int) -> list[list[list[list[float]]]]:
    """GeoJSON ``MultiPolygon`` coordinates: per polygon, the exterior then the holes, rounded."""
    return [[_coordinates(p.exterior, decimals)] + [_coordinates(r, decimals) for r in p.interiors]
            for p in polygons.geoms]  # fmt: skip


def outline_coordinates(polygons: MultiPolygon, decimals: int) -> list[list[list[float]]]:
    """GeoJSON ``MultiLineString`` coordinates: every ring (exteriors and holes) as a closed line."""
    return [ring for polygon in polygon_coordinates(polygons, decimals) for ring in polygon]


def outlines(polygons: MultiPolygon) -> MultiLineString:
    """The rings of ``polygons`` as closed lines (what ``geometry=lines`` answers)."""
    return MultiLineString([LineString(r.coords) for p in polygons.geoms for r in (p.exterior, *p.interiors)])


def contour_features(probability: NDArray[np.floating[Any]], grid: FixedGrid, levels: Sequence[float], *,
                     properties: Mapping[str, Any] | None = None, crs: str = "lonlat", geometry: str = "polygons",
                     parallax_km: float = 0.0) -> list[dict[str, Any]]:  # fmt: skip
    """One GeoJSON Feature per level that some pixel reaches, in the order of ``levels``.

    ``geometry`` ``"polygons"`` gives ``MultiPolygon`` geometries, ``"lines"``
    the polygons' rings as a ``MultiLineString``. Properties: ``level``,
    ``percent``, ``parallax_km`` and ``properties``.
    """
    if geometry not in ("polygons", "lines"):
        msg = f"geometry must be polygons or lines; found {geometry!r}"
        raise ValueError(msg)
    decimals = PIXEL_DECIMALS if crs == "pixel" else DEGREE_DECIMALS
    features = []
    tracer = _tracer(probability, grid) if levels else None
    for level in levels:
        polygons = _polygons_at(tracer, grid, level, crs, parallax_km)
        if polygons.is_empty:
            continue
        shape: dict[str, Any]
        if geometry == "polygons":
            shape = {"type": "MultiPolygon", "coordinates": polygon_coordinates(polygons, decimals)}
        else:
            shape = {"type": "MultiLineString", "coordinates": outline_coordinates(polygons, decimals)}
        props = {"level": level, "percent": round(level * 100, 4), "parallax_km": parallax_km, **(properties or {})}
        features.append({"type": "Feature", "properties": props, "geometry": shape})
    return features


# --- index maps ----------------------------------------------------------------------------------------------------


def scan_angles_separable(projection: GeosProjection, lat: NDArray[np.float64],
                          lon: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:  # fmt: skip
    """Scan angles ``(x, y)`` (radians, ``[len(lat), len(lon)]``) of every (lat, lon) pair; NaN out of sight.

    The closed form of the GOES-R PUG vol. 3 §4.2.8.1 (geodetic latitude on the
    projection's ellipsoid, ``sweep='x'``), evaluated on the two 1-D axes and
    broadcast, which is what makes an index map of millions of pixels cheap.
    """
    a, b = projection.ellipsoid.a, projection.ellipsoid.b
    big_h = projection.satellite_distance
    phi_c = np.arctan((b * b) / (a * a) * np.tan(np.radians(lat)))[:, np.newaxis]
    e2 = (a * a - b * b) / (a * a)
    rc = b / np.sqrt(1.0 - e2 * np.cos(phi_c) ** 2)
    dlon = np.radians(lon - projection.lon_0)[np.newaxis, :]
    rc_cos, sz = rc * np.cos(phi_c), rc * np.sin(phi_c)
    sx = big_h - rc_cos * np.cos(dlon)
    sy = -rc_cos * np.sin(dlon)
    seen = big_h * (big_h - sx) >= sy * sy + (a * a) / (b * b) * sz * sz
    y = np.arctan(sz / sx)
    x = np.arcsin(-sy / np.sqrt(sx * sx + sy * sy + sz * sz))
    return np.where(seen, x, np.nan), np.where(seen, y, np.nan)


@dataclass(frozen=True)
class Raster:
    """A regular target grid: ``width`` × ``height`` pixels from the north-west corner ``(x0, y0)``.

    ``crs`` is ``EPSG:4326`` (``x``/``y`` in degrees of lon/lat) or
    ``EPSG:3857`` (metres); ``dx > 0``, ``dy < 0`` (rows run north to south).
    """

    crs: str
    x0: float
    y0: float
    dx: float
    dy: float
    width: int
    height: int

    def centres(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Pixel centre coordinates ``x`` ``[W]`` and ``y`` ``[H]`` in the raster's CRS."""
        x = self.x0 + (np.arange(self.width, dtype=np.float64) + 0.5) * self.dx
        y = self.y0 + (np.arange(self.height, dtype=np.float64) + 0.5) * self.dy
        return x.astype(np.float64), y.astype(np.float64)

    def lonlat_axes(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Longitude ``[W]`` and latitude ``[H]`` of the pixel centres, degrees (both CRSs are separable)."""
        x, y = self.centres()
        if self.crs == "EPSG:4326":
            return x, y
        lon, lat = mercator_lonlat(x, y)
        return lon.astype(np.float64), lat.astype(np.float64)

    def bounds_lonlat(self) -> tuple[float, float, float, float]:
        """``(west, south, east, north)`` of the outer pixel edges, degrees."""
        xs = np.array([self.x0, self.x0 + self.width * self.dx])
        ys = np.array([self.y0 + self.height * self.dy, self.y0])
        if self.crs == "EPSG:3857":
            xs, ys = mercator_lonlat(xs, ys)
        return float(xs[0]), float(ys[0]), float(xs[1]), float(ys[1])

    def transform(self) -> tuple[float, float, float, float, float, float]:
        """The affine ``(a, b, c, d, e, f)`` of rasterio: ``x = a·col + b·row + c``, ``y = d·col + e·row + f``."""
        return (self.dx, 0.0, self.x0, 0.0, self.dy, self.y0)


def mercator_lonlat(x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """EPSG:3857 metres → lon, lat degrees (separately per axis)."""
    return np.degrees(x / MERCATOR_RADIUS), np.degrees(np.arctan(np.sinh(y / MERCATOR_RADIUS)))


def mercator_xy(lon: Any, lat: Any) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Lon, lat degrees → EPSG:3857 metres."""
    lam, phi = np.radians(np.asarray(lon, np.float64)), np.radians(np.asarray(lat, np.float64))
    return MERCATOR_RADIUS * lam, MERCATOR_RADIUS * np.log(np.tan(np.pi / 4 + phi / 2))


@dataclass(frozen=True)
class IndexMap:
    """A target raster and, per target pixel, the flat index of the nearest native pixel (-1 outside)."""

    raster: Raster
    index: NDArray[np.int32]
    parallax_km: float

    def sample(self, values: NDArray[Any], fill: Any = np.nan) -> NDArray[Any]:
        """``values`` (native ``[H, W]``) on the target raster, ``fill`` outside the scan."""
        flat = np.asarray(values).reshape(-1)
        out = flat[np.maximum(self.index, 0)]
        out[self.index < 0] = fill
        return out


def limb_scan_angles(grid: FixedGrid, projection: GeosProjection) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Scan angles just inside the limb (the edge of the Earth's disk) at the grid's columns and rows, within the grid.

    The limb is where the line of sight grazes the ellipsoid (the discriminant of
    :meth:`GeosProjection.on_disk` is zero), solved for ``y`` at each column's
    ``x`` and for ``x`` at each row's ``y``, then moved 1e-7 inwards.
    """
    a, b, big_h = projection.ellipsoid.a, projection.ellipsoid.b, projection.satellite_distance
    k, d = (a / b) ** 2, big_h * big_h - a * a
    cx2, cy2 = np.cos(grid.x) ** 2, np.cos(grid.y) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        cos2_y = d * (1 - cx2 + k * cx2) / (cx2 * (big_h * big_h - d * (1 - k)))
        cos2_x = d / (big_h * big_h * cy2 - d * (cy2 + k * (1 - cy2) - 1))
        y_at = np.arccos(np.sqrt(np.where(cos2_y <= 1, cos2_y, np.nan)))
        x_at = np.arccos(np.sqrt(np.where(cos2_x <= 1, cos2_x, np.nan)))
    x = np.r_[grid.x, grid.x, x_at, -x_at] * (1 - 1e-7)
    y = np.r_[y_at, -y_at, grid.y, grid.y] * (1 - 1e-7)
    inside = ((x >= min(grid.x[0], grid.x[-1])) & (x <= max(grid.x[0], grid.x[-1]))
              & (y >= min(grid.y[0], grid.y[-1])) & (y <= max(grid.y[0], grid.y[-1])))  # fmt: skip
    return x[inside], y[inside]


def _sampled_lonlat(grid: FixedGrid, projection: GeosProjection) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Lon/lat of the border pixels, the limb inside the grid and every ``step``-th interior pixel.

    Latitude and longitude have no extremes inside the visible part of the grid
    (the projection is a smooth bijection there), so the border and the limb hold
    them; the interior samples are a safeguard.
    """
    height, width = grid.shape
    step = max(1, min(height, width) // 64)
    rows = np.unique(np.r_[np.arange(0, height, step), height - 1])
    cols = np.unique(np.r_[np.arange(0, width, step), width - 1])
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    border = np.r_[
        np.c_[np.zeros(width), np.arange(width)],
        np.c_[np.full(width, height - 1), np.arange(width)],
        np.c_[np.arange(height), np.zeros(height)],
        np.c_[np.arange(height), np.full(height, width - 1)],
    ]
    r = np.r_[rr.ravel(), border[:, 0]]
    c = np.r_[cc.ravel(), border[:, 1]]  # fmt: skip
    x, y = grid.scan_angles_of(r, c)
    limb_x, limb_y = limb_scan_angles(grid, grid.projection)  # the cloud-top limb lies outside it: its disk is larger
    lon, lat = projection.lonlat(np.r_[x, limb_x], np.r_[y, limb_y])
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.any():
        msg = "the grid has no pixel on the Earth's disk; nothing to resample"
        raise ValueError(msg)
    return lon[ok], lat[ok]


def _native_step(grid: FixedGrid, projection: GeosProjection) -> tuple[float, float, float, float]:
    """``(lon, lat, dlon, dlat)``: the on-disk pixel nearest the grid's centre and its pixel size in degrees."""
    height, width = grid.shape
    r, c = (height - 1) // 2, (width - 1) // 2
    if not bool(grid.projection.on_disk(*grid.scan_angles_of(r, c))):  # a limb block: its centre is in space
        mask = grid.earth_mask()
        rows, cols = np.nonzero(mask)
        if not rows.size:
            msg = "the grid has no pixel on the Earth's disk; nothing to resample"
            raise ValueError(msg)
        nearest = int(np.argmin(np.hypot(rows - r, cols - c)))
        r, c = int(rows[nearest]), int(cols[nearest])
    r2, c2 = (r + 1, c + 1) if r + 1 < height and c + 1 < width else (r - 1, c - 1)
    lon, lat = projection.lonlat(*grid.scan_angles_of(np.array([r, r, r2]), np.array([c, c2, c])))
    return float(lon[0]), float(lat[0]), abs(float(lon[1] - lon[0])), abs(float(lat[2] - lat[0]))


def target_raster(grid: FixedGrid, kind: str, parallax_km: float = 0.0) -> Raster:
    """The target raster of a grid: its extent on the ground, pixels about the native size at the centre.

    ``kind`` ``"latlon"``: EPSG:4326, ``dlon``/``dlat`` of the centre pixel,
    longest side at most :data:`MAX_LATLON_SIDE`. ``"mercator"``: EPSG:3857,
    square pixels of the centre pixel's size in Mercator metres, latitudes
    clipped to ±:data:`MERCATOR_MAX_LAT`, longest side at most :data:`MAX_MAP_SIDE`.
    """
    if kind not in KINDS:
        msg = f"unknown raster kind {kind!r}; valid: {', '.join(KINDS)}"
        raise ValueError(msg)
    projection = cloud_top_projection(grid.projection, parallax_km)
    lon, lat = _sampled_lonlat(grid, projection)
    clon, clat, dlon, dlat = _native_step(grid, projection)
    if kind == "latlon":
        dlon, dlat = max(dlon, 1e-4), max(dlat, 1e-4)
        west, east = lon.min() - dlon, lon.max() + dlon
        south, north = max(lat.min() - dlat, -90.0), min(lat.max() + dlat, 90.0)
        longest = MAX_LATLON_SIDE - 1  # ceil() below may add one
        scale = max(1.0, (east - west) / dlon / longest, (north - south) / dlat / longest)
        dlon, dlat = dlon * scale, dlat * scale
        width, height = math.ceil((east - west) / dlon), math.ceil((north - south) / dlat)
        return Raster("EPSG:4326", float(west), float(north), float(dlon), -float(dlat), width, height)
    lat = np.clip(lat, -MERCATOR_MAX_LAT, MERCATOR_MAX_LAT)
    (cx0, cx1), (cy0, cy1) = mercator_xy([clon, clon + dlon], np.clip([clat, clat + dlat], -89.0, 89.0))
    size = max(math.sqrt(abs(cx1 - cx0) * abs(cy1 - cy0)), 1.0)
    xs, ys = mercator_xy(lon, lat)
    west, east = float(xs.min()) - size, float(xs.max()) + size
    south, north = float(ys.min()) - size, float(ys.max()) + size
    top = float(mercator_xy(0.0, MERCATOR_MAX_LAT)[1])
    south, north = max(south, -top), min(north, top)
    size *= max(1.0, (east - west) / size / (MAX_MAP_SIDE - 1), (north - south) / size / (MAX_MAP_SIDE - 1))
    width, height = max(1, math.ceil((east - west) / size)), max(1, math.ceil((north - south) / size))
    return Raster("EPSG:3857", west, north, size, -size, width, height)


def build_index_map(grid: FixedGrid, kind: str, parallax_km: float = 0.0) -> IndexMap:
    """The nearest native pixel of every pixel of :func:`target_raster` (uncached; see :class:`IndexMaps`)."""
    parallax_km = check_parallax(parallax_km)
    raster = target_raster(grid, kind, parallax_km)
    lon, lat = raster.lonlat_axes()
    projection = cloud_top_projection(grid.projection, parallax_km)
    index = np.empty((raster.height, raster.width), np.int32)
    for start in range(0, raster.height, _ROWS_PER_BLOCK):
        stop = min(start + _ROWS_PER_BLOCK, raster.height)
        index[start:stop] = _nearest(grid, *scan_angles_separable(projection, lat[start:stop], lon))
    return IndexMap(raster, index, parallax_km)


def _nearest(grid: FixedGrid, x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.int32]:
    """The flat index of the native pixel nearest to each pair of scan angles; -1 outside the grid or unseen."""
    row = np.floor((y - grid.y[0]) / grid.dy + 0.5)
    col = np.floor((x - grid.x[0]) / grid.dx + 0.5)
    height, width = grid.shape
    inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)  # NaN compares False
    return np.where(inside, np.where(inside, row, 0) * width + np.where(inside, col, 0), -1).astype(np.int32)


def geometry_key(grid: FixedGrid) -> tuple[Any, ...]:
    """A hashable key equal for grids of the same geometry: projection, shape and a hash of the axes."""
    digest = hashlib.blake2b(np.ascontiguousarray(grid.x, np.float64).tobytes(), digest_size=16)
    digest.update(np.ascontiguousarray(grid.y, np.float64).tobytes())
    return (grid.projection, grid.shape, digest.hexdigest())


class IndexMaps:
    """A bounded, thread-safe LRU of :class:`IndexMap` by (geometry, kind, parallax).

    A CONUS lat/lon map holds about 4 bytes per target pixel (tens of MB at
    most), so a few entries cover every sector a service shows.
    """

    def __init__(self, entries: int = 8) -> None:
        self.entries = entries
        self._maps: OrderedDict[tuple[Any, ...], IndexMap] = OrderedDict()
        self._lock = threading.Lock()
        self.misses = 0

    def get(self, grid: FixedGrid, kind: str, parallax_km: float = 0.0) -> IndexMap:
        """The index map of ``grid`` for ``kind`` and ``parallax_km``, built once per key."""
        key = (*geometry_key(grid), kind, check_parallax(parallax_km))
        with self._lock:
            if key in self._maps:
                self._maps.move_to_end(key)
                return self._maps[key]
        built = build_index_map(grid, kind, parallax_km)  # outside the lock: two builders at worst
        with self._lock:
            self.misses += 1
            self._maps[key] = built
            while len(self._maps) > self.entries:
                self._maps.popitem(last=False)
        return built


# --- rendered products ---------------------------------------------------------------------------------------------


def value_bytes(probability: NDArray[np.floating[Any]]) -> NDArray[np.uint8]:
    """``round(p / VALUE_SCALE)`` as uint8 (0..250), :data:`VALUE_MISSING` where NaN.

    >>> value_bytes(np.array([0.0, 0.5, 1.0, np.nan])).tolist()
    [0, 125, 250, 255]
    """
    p = np.asarray(probability, np.float64)
    scaled = np.rint(np.clip(np.nan_to_num(p, nan=0.0), 0.0, 1.0) / VALUE_SCALE)
    return np.where(np.isfinite(p), scaled, VALUE_MISSING).astype(np.uint8)


def probability_rgba(probability: NDArray[np.floating[Any]]) -> NDArray[np.uint8]:
    """LightningCast colours by band (alpha 140 ≈ 0.55), transparent below 10 % and where missing, ``[H, W, 4]``."""
    p = np.asarray(probability, np.float32)
    band = np.zeros(p.shape, np.uint8)
    for edge in _MAP_EDGES:
        band += p >= edge - _EPS  # NaN compares False: transparent
    return _MAP_PALETTE[band]


def ir_grey(kelvin: NDArray[np.floating[Any]]) -> NDArray[np.uint8]:
    """Brightness temperature as grey and alpha ``[H, W, 2]``: cold white, warm black; alpha 0 where missing.

    >>> ir_grey(np.array([[180.0, 320.0, np.nan]])).tolist()
    [[[255, 255], [0, 255], [0, 0]]]
    """
    t = np.asarray(kelvin, np.float64)
    grey = np.rint(np.clip((IR_WARM_K - np.nan_to_num(t, nan=IR_WARM_K)) / (IR_WARM_K - IR_COLD_K), 0, 1) * 255)
    alpha = np.where(np.isfinite(t), 255, 0)
    return np.stack([grey, alpha], axis=-1).astype(np.uint8)


def png(pixels: NDArray[np.uint8], mode: str) -> bytes:
    """PNG bytes of ``pixels`` in PIL ``mode`` (no gAMA, sRGB or iCCP chunk: byte values read back unchanged)."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(out, format="PNG", compress_level=6)
    return out.getvalue()


MAP_LAYERS = ("probability", "value", "ir")


def map_layer(layer: str, values: NDArray[np.floating[Any]], index_map: IndexMap) -> bytes:
    """One Web Mercator layer as PNG bytes: ``probability`` (RGBA), ``value`` (L) or ``ir`` (LA, ``values`` in K)."""
    if index_map.raster.crs != "EPSG:3857":
        msg = f"map layers are Web Mercator; found an index map in {index_map.raster.crs}"
        raise ValueError(msg)
    on_map = index_map.sample(np.asarray(values, np.float32))
    if layer == "probability":
        return png(probability_rgba(on_map), "RGBA")
    if layer == "value":
        return png(value_bytes(on_map), "L")
    if layer == "ir":
        return png(ir_grey(on_map), "LA")
    msg = f"unknown map layer {layer!r}; valid: {', '.join(MAP_LAYERS)}"
    raise ValueError(msg)


def map_document(index_map: IndexMap, base: str, attributes: Mapping[str, Any], *, has_ir: bool) -> dict[str, Any]:
    """The viewer's ``map.json``: where the layers go (Leaflet ``imageOverlay`` bounds) and how to read them."""
    raster = index_map.raster
    west, south, east, north = raster.bounds_lonlat()
    query = f"?parallax_km={index_map.parallax_km:g}" if index_map.parallax_km else ""
    return {
        "grid_id": attributes.get("grid_id"),
        "crs": "EPSG:3857",
        "bounds": [[south, west], [north, east]],
        "width": raster.width,
        "height": raster.height,
        "value_scale": VALUE_SCALE,
        "value_missing": VALUE_MISSING,
        "parallax_km": index_map.parallax_km,
        "valid_time": attributes.get("valid_time"),
        "scan_start": attributes.get("forecast_reference_time"),
        "layers": {
            "probability": f"{base}/map/probability.png{query}",
            "value": f"{base}/map/value.png{query}",
            "ir": f"{base}/map/ir.png{query}" if has_ir else None,
        },
    }


#: Global attributes of the native grid copied into the resampled products.
COPIED_ATTRIBUTES = ("platform", "scene_id", "grid_id", "model_name", "model_version", "source", "input_abi_file",
                     "input_glm_files", "input_glm_granules_used", "input_glm_granules_missing")  # fmt: skip


def latlon_netcdf(probability: NDArray[np.floating[Any]], index_map: IndexMap, attributes: Mapping[str, Any]) -> bytes:
    """A CF-1.8 NetCDF-4 of the probability on the regular EPSG:4326 raster of ``index_map``, as bytes.

    ``lat`` (north to south) and ``lon`` 1-D coordinates of pixel centres;
    ``probability`` float32, NaN (``_FillValue``) outside the scan and where
    missing; a ``crs`` grid mapping (``latitude_longitude``, WGS84); the
    native grid's identity and provenance attributes, ``time`` /
    ``forecast_reference_time`` and ``parallax_correction_km``.
    """
    import netCDF4

    from ingest.ncio import NETCDF_LOCK

    raster = index_map.raster
    if raster.crs != "EPSG:4326":
        msg = f"a lat/lon NetCDF needs an EPSG:4326 index map; found {raster.crs}"
        raise ValueError(msg)
    lon, lat = raster.lonlat_axes()
    values = index_map.sample(np.asarray(probability, np.float32))
    with NETCDF_LOCK:
        ds = netCDF4.Dataset("latlon.nc", "w", format="NETCDF4", memory=1024)
        try:
            _write_latlon(ds, lat, lon, values, index_map, attributes)
        finally:
            memory = ds.close()
    return bytes(memory)


def _write_latlon(ds: Any, lat: NDArray[np.float64], lon: NDArray[np.float64], values: NDArray[np.float32],
                  index_map: IndexMap, attributes: Mapping[str, Any]) -> None:  # fmt: skip
    from foundation.utc import iso_utc

    ds.setncatts({k: attributes[k] for k in COPIED_ATTRIBUTES if k in attributes})
    ds.setncatts({"Conventions": "CF-1.8", "title": "ltgcast probability of lightning in the next 30 minutes "
                  "on a regular latitude-longitude grid (EPSG:4326)",
                  "resampling": "nearest neighbour from the native GOES-R fixed grid",
                  "parallax_correction_km": np.float32(index_map.parallax_km),
                  "parallax_correction": "pixels moved to the ground below a constant cloud-top height "
                  "(0: none)", "date_created": iso_utc(datetime.now(UTC))})  # fmt: skip
    ds.createDimension("lat", lat.size)
    ds.createDimension("lon", lon.size)
    for name, axis, data, units in (("lat", "Y", lat, "degrees_north"), ("lon", "X", lon, "degrees_east")):
        v = ds.createVariable(name, "f8", (name,))
        v[:] = data
        v.setncatts({"axis": axis, "units": units, "standard_name": "latitude" if name == "lat" else "longitude"})
    crs = ds.createVariable("crs", "i4")
    crs.setncatts({"grid_mapping_name": "latitude_longitude", "semi_major_axis": 6378137.0,
                   "inverse_flattening": 298.257223563, "epsg_code": "EPSG:4326"})  # fmt: skip
    for name, key in (("time", "valid_time"), ("forecast_reference_time", "forecast_reference_time")):
        if key in attributes:
            t = ds.createVariable(name, "f8")
            t.assignValue(_parse_iso(str(attributes[key])).timestamp())
            t.setncatts({"units": "seconds since 1970-01-01 00:00:00", "calendar": "standard", "standard_name": name})
    var = ds.createVariable("probability", "f4", ("lat", "lon"), zlib=True, complevel=4, fill_value=np.nan,
                            chunksizes=(min(lat.size, 256), min(lon.size, 256)))  # fmt: skip
    var[:] = values
    var.setncatts({"long_name": "probability of lightning in the next 30 minutes", "units": "1",
                   "valid_range": np.array([0.0, 1.0], np.float32), "grid_mapping": "crs"})  # fmt: skip


def cog(probability: NDArray[np.floating[Any]], index_map: IndexMap, attributes: Mapping[str, Any]) -> bytes:
    """A Cloud-Optimized GeoTIFF of the probability in EPSG:4326: float32, nodata NaN, deflate, with overviews.

    Tags: ``VALID_TIME``, ``SCAN_START``, ``GRID_ID``, ``MODEL_NAME``,
    ``MODEL_VERSION``, ``PARALLAX_CORRECTION_KM``.
    """
    import rasterio
    import rasterio.shutil
    from rasterio.io import MemoryFile
    from rasterio.transform import Affine

    raster = index_map.raster
    values = index_map.sample(np.asarray(probability, np.float32))
    profile = {"driver": "GTiff", "width": raster.width, "height": raster.height, "count": 1, "dtype": "float32",
               "crs": rasterio.crs.CRS.from_epsg(4326), "transform": Affine(*raster.transform()),
               "nodata": np.nan}  # fmt: skip
    tags = {"VALID_TIME": attributes.get("valid_time", ""), "SCAN_START": attributes.get("forecast_reference_time", ""),
            "GRID_ID": attributes.get("grid_id", ""), "MODEL_NAME": attributes.get("model_name", ""),
            "MODEL_VERSION": str(attributes.get("model_version", "")),
            "PARALLAX_CORRECTION_KM": f"{index_map.parallax_km:g}"}  # fmt: skip
    with MemoryFile() as scratch, MemoryFile() as out:
        with scratch.open(**profile) as ds:
            ds.write(values, 1)
            ds.update_tags(**tags)
        with scratch.open() as src:
            rasterio.shutil.copy(src, out.name, driver="COG", compress="DEFLATE", predictor="YES",
                                 overview_resampling="NEAREST")  # fmt: skip
        return bytes(out.getbuffer())


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
