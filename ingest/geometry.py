"""The ABI fixed grid: scan angles, the geostationary projection and the earth disk.

ABI images live on the GOES-R fixed grid: a pixel is a pair of scan angles
``(x, y)`` in radians seen from the satellite, ``x`` east-west and ``y``
north-south, with the sweep axis along ``x`` (``sweep='x'``; GOES-R scans the
opposite way round from Meteosat, and using the default ``sweep='y'`` misplaces
pixels by up to 28 km). Every parameter — sub-satellite longitude, perspective
height and ellipsoid — comes from the file's ``goes_imager_projection``
variable, because real files exist from the -89.5° check-out slot, -75.2°
(East) and -137.2°/-137.0° (West).

Projected ``geos`` coordinates in metres are scan angles times the perspective
point height, so ``x_rad = x_m / h``.

GLM positions are navigated onto the *lightning ellipsoid* (the Earth ellipsoid
raised by 14 km at the equator and 6 km at the poles, roughly cloud-top height),
not onto the Earth's surface like ABI pixels. Projecting a GLM latitude and
longitude back into scan angles *on the lightning ellipsoid* recovers the line
of sight the satellite saw, which is the ABI pixel of the cloud top; projecting
it on the Earth ellipsoid instead would add the parallax error. Use
``FixedGrid.rowcol(lat, lon, ellipsoid=LIGHTNING_ELLIPSOID)`` for GLM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import pyproj
from numpy.typing import ArrayLike, NDArray

Float = NDArray[np.float64]


@dataclass(frozen=True)
class Ellipsoid:
    """An oblate ellipsoid by its equatorial and polar radii in metres."""

    a: float
    b: float


#: GRS80, the ellipsoid of every GOES-R fixed-grid file.
GRS80 = Ellipsoid(6378137.0, 6356752.31414)
#: GLM's lightning ellipsoid: GRS80 raised 14 km at the equator and 6 km at the poles.
LIGHTNING_ELLIPSOID = Ellipsoid(GRS80.a + 14_000.0, GRS80.b + 6_000.0)


@dataclass(frozen=True)
class GeosProjection:
    """The geostationary projection of one satellite position.

    Attributes
    ----------
    lon_0
        Sub-satellite longitude, degrees east (``longitude_of_projection_origin``).
    height
        Perspective point height above the ellipsoid's equator, metres.
    ellipsoid
        The ellipsoid the scan angles are intersected with.
    sweep
        Sweep angle axis; always ``'x'`` for GOES-R.
    """

    lon_0: float
    height: float
    ellipsoid: Ellipsoid = GRS80
    sweep: str = "x"

    @classmethod
    def from_attributes(cls, attrs: Mapping[str, Any]) -> GeosProjection:
        """Build from the attributes of a ``goes_imager_projection`` variable."""
        sweep = str(attrs.get("sweep_angle_axis", "x"))
        return cls(
            lon_0=float(attrs["longitude_of_projection_origin"]),
            height=float(attrs["perspective_point_height"]),
            ellipsoid=Ellipsoid(float(attrs["semi_major_axis"]), float(attrs["semi_minor_axis"])),
            sweep=sweep,
        )

    @property
    def satellite_distance(self) -> float:
        """Distance from the Earth's centre to the satellite, metres (``H`` in the PUG)."""
        return self.height + self.ellipsoid.a

    def on_ellipsoid(self, ellipsoid: Ellipsoid) -> GeosProjection:
        """The same satellite position intersected with another ellipsoid."""
        return replace(self, ellipsoid=ellipsoid, height=self.satellite_distance - ellipsoid.a)

    @cached_property
    def crs(self) -> pyproj.CRS:
        """The pyproj CRS (metres = scan angle × height)."""
        return pyproj.CRS.from_dict(
            {
                "proj": "geos",
                "h": self.height,
                "lon_0": self.lon_0,
                "sweep": self.sweep,
                "a": self.ellipsoid.a,
                "b": self.ellipsoid.b,
                "units": "m",
                "no_defs": True,
            }
        )

    @cached_property
    def _forward(self) -> pyproj.Transformer:
        return pyproj.Transformer.from_crs(self.crs.geodetic_crs, self.crs, always_xy=True)

    @cached_property
    def _inverse(self) -> pyproj.Transformer:
        return pyproj.Transformer.from_crs(self.crs, self.crs.geodetic_crs, always_xy=True)

    def scan_angles(self, lat: ArrayLike, lon: ArrayLike) -> tuple[Float, Float]:
        """Geodetic latitude/longitude (degrees) → scan angles ``(x, y)`` in radians.

        Points the satellite cannot see, and NaN inputs, give NaN.
        """
        xm, ym = self._forward.transform(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
        return _finite_or_nan(np.asarray(xm) / self.height), _finite_or_nan(np.asarray(ym) / self.height)

    def lonlat(self, x: ArrayLike, y: ArrayLike) -> tuple[Float, Float]:
        """Scan angles in radians → geodetic ``(lon, lat)`` in degrees; NaN off the disk."""
        xm = np.asarray(x, np.float64) * self.height
        ym = np.asarray(y, np.float64) * self.height
        lon, lat = self._inverse.transform(xm, ym)
        return _finite_or_nan(np.asarray(lon)), _finite_or_nan(np.asarray(lat))

    def on_disk(self, x: ArrayLike, y: ArrayLike) -> NDArray[np.bool_]:
        """Whether the line of sight at scan angles ``(x, y)`` hits the ellipsoid.

        Analytic (GOES-R PUG vol. 3, §4.2.8.1): the ray meets the ellipsoid when
        the quadratic ``a r² + b r + c = 0`` has a real root.
        """
        xa = np.asarray(x, np.float64)
        ya = np.asarray(y, np.float64)
        req, rpol, big_h = self.ellipsoid.a, self.ellipsoid.b, self.satellite_distance
        cos_x, sin_x, cos_y, sin_y = np.cos(xa), np.sin(xa), np.cos(ya), np.sin(ya)
        qa = sin_x**2 + cos_x**2 * (cos_y**2 + (req / rpol) ** 2 * sin_y**2)
        qb = -2.0 * big_h * cos_x * cos_y
        qc = big_h**2 - req**2
        return np.asarray(qb**2 - 4.0 * qa * qc >= 0.0)


@dataclass(frozen=True, eq=False)
class FixedGrid:
    """A rectangular block of the ABI fixed grid.

    Attributes
    ----------
    projection
        The satellite's geostationary projection.
    x, y
        Scan angles of pixel centres in radians, shape ``[W]`` and ``[H]``; ``x``
        increases west → east, ``y`` decreases north → south (row 0 is the top).
    """

    projection: GeosProjection
    x: Float
    y: Float

    def __post_init__(self) -> None:
        """Check that the grid is regular, which fractional indexing relies on."""
        for name, axis in (("x", self.x), ("y", self.y)):
            if axis.ndim != 1 or axis.size < 2:
                msg = f"fixed-grid {name} must be 1-D with at least 2 pixels, found shape {axis.shape}"
                raise ValueError(msg)
            steps = np.diff(axis)
            if not np.allclose(steps, steps[0], rtol=1e-4, atol=1e-9):
                msg = f"fixed-grid {name} is not regularly spaced (steps {steps.min():.3e}…{steps.max():.3e} rad)"
                raise ValueError(msg)

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)``."""
        return (self.y.size, self.x.size)

    @property
    def dx(self) -> float:
        """Column spacing in radians (positive)."""
        return float(self.x[1] - self.x[0])

    @property
    def dy(self) -> float:
        """Row spacing in radians (negative: rows run north to south)."""
        return float(self.y[1] - self.y[0])

    def lonlat(self) -> tuple[Float, Float]:
        """Longitude and latitude of every pixel centre, degrees, ``[H, W]``; NaN in space."""
        xx, yy = np.meshgrid(self.x, self.y)
        return self.projection.lonlat(xx, yy)

    def earth_mask(self) -> NDArray[np.bool_]:
        """``True`` where the pixel centre sees the Earth, ``[H, W]``."""
        return self.projection.on_disk(self.x[np.newaxis, :], self.y[:, np.newaxis])

    def rowcol(self, lat: ArrayLike, lon: ArrayLike, ellipsoid: Ellipsoid | None = None) -> tuple[Float, Float]:
        """Latitude/longitude → fractional ``(row, col)``; pixel centres are integers.

        Parameters
        ----------
        lat, lon
            Geodetic degrees.
        ellipsoid
            The ellipsoid the positions were navigated on; ``LIGHTNING_ELLIPSOID``
            for GLM. Defaults to the grid's own (GRS80).

        Returns
        -------
        row, col
            float64 arrays; NaN where the satellite cannot see the point. Values
            outside ``[-0.5, H-0.5)`` / ``[-0.5, W-0.5)`` are outside this block.
        """
        proj = self.projection if ellipsoid is None else self.projection.on_ellipsoid(ellipsoid)
        x, y = proj.scan_angles(lat, lon)
        return (y - self.y[0]) / self.dy, (x - self.x[0]) / self.dx

    def scan_angles_of(self, row: ArrayLike, col: ArrayLike) -> tuple[Float, Float]:
        """Fractional ``(row, col)`` → scan angles ``(x, y)`` in radians."""
        return (
            self.x[0] + np.asarray(col, np.float64) * self.dx,
            self.y[0] + np.asarray(row, np.float64) * self.dy,
        )


def _finite_or_nan(values: Float) -> Float:
    out = np.array(values, dtype=np.float64, copy=True)
    out[~np.isfinite(out)] = np.nan
    return out
