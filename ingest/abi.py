"""ABI imagery readers: L1b radiances (``Rad``) and L2 cloud and moisture imagery (``CMI``).

One class per product, each a few small steps: open, check the file is the band
its name says, decode, calibrate, mask. The result is an :class:`AbiImage`.

Calibration
-----------
* Emissive bands 7–16, L1b: radiance ``L`` (mW m⁻² sr⁻¹ (cm⁻¹)⁻¹) → brightness
  temperature with the file's own Planck constants::

      T = (fk2 / ln(fk1 / L + 1) - bc1) / bc2

  ``L <= 0`` has no brightness temperature and becomes NaN.
* Reflective bands 1–6, L1b: reflectance factor ``R = kappa0 · L``.
* L2 ``CMI`` is already calibrated (K for bands 7–16, reflectance factor for 1–6).

Masking
-------
A pixel becomes NaN when it is fill or outside ``valid_range``, when its
``DQF`` is not in ``good_dqf`` (default: 0 good and 1 conditionally usable), or
when its line of sight misses the Earth. The counts of each reason are kept on
the image for the monitor.

What a reader verifies
----------------------
Before any array is read (:class:`~foundation.errors.FrameShapeError`, stage ``shape``):

* ``Rad``/``CMI`` has dimensions ``(y, x)`` and at least 2 × 2 and at most the
  full sector at the band's resolution (:func:`sector_shape`: full disk
  5424 × 5424, CONUS 1500 × 2500, mesoscale 500 × 500 at 2 km; × 2 for the
  1-km bands 1, 3 and 5, × 4 for the 0.5-km band 2 — GOES-R PUG vol. 3 and
  satpy's ``areas.yaml``). Smaller blocks of a sector (subsets) are accepted.
* ``DQF`` has the data variable's shape, ``x`` and ``y`` its columns and rows;
  ``band_id``, ``band_wavelength``, ``t`` and the calibration constants are scalars.

After that (:class:`~foundation.errors.FrameDecodeError`, stage ``decode``):

* the band is 1–16 and ``band_id`` and ``platform_ID`` are the ones the name claims;
* ``t`` (mid-scan) lies inside the scan window of the name (± :data:`SCAN_TIME_SLACK_S`);
* the projection is GOES-R's: ``sweep_angle_axis`` ``x``, GRS80 semi-axes,
  perspective height 35 786 023 m (± :data:`HEIGHT_TOLERANCE_M`), origin longitude
  in [-180, 180];
* ``x`` and ``y`` are finite, inside ±:data:`MAX_SCAN_ANGLE_RAD`, regularly spaced
  west→east and north→south with one of ABI's pixel pitches (:data:`ABI_PITCH_RAD`);
* the packing attributes are sane (:mod:`ingest.ncio`), the Planck constants
  (emissive) or ``kappa0`` (reflective) are finite and positive, ``CMI`` units fit the band.

Finally (:class:`~foundation.errors.FrameEmptyError`, stage ``empty``): at least
``min_valid_share`` (default :data:`MIN_VALID_SHARE`) of the pixels on the
Earth's disk must be valid, or the frame is refused rather than published as
a grid of NaN.

Memory
------
The image is decoded, calibrated and masked in blocks of whole rows of at most
:data:`BLOCK_PIXELS` pixels, so reading a frame costs its float32 image
(4 bytes a pixel) plus a bounded working set (about 65 bytes a pixel of one
block, with the HDF5 chunk cache), whatever the frame's size. The budget is
4 bytes a pixel + 320 MiB of resident memory added by one read. Measured
(peak resident set added, on this project's 2-core box): CONUS 2 km 131 MiB,
full disk 2 km 275 MiB, and the largest product accepted, a 0.5-km full disk
of band 2 (21696 × 21696), 2052 MiB in 19.5 s. Reading everything at once in
float64, as before, took 62 bytes a pixel: 224 MiB for CONUS, 28 GiB for the
0.5-km full disk.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import netCDF4
import numpy as np
from numpy.typing import NDArray

from foundation.errors import FrameDecodeError, FrameEmptyError, FrameShapeError
from foundation.utc import iso_utc
from ingest.filenames import GoesFilename, parse_filename
from ingest.geometry import GRS80, FixedGrid, GeosProjection
from ingest.ncio import (
    attribute,
    check_scalar,
    check_shape,
    decode,
    decode_int,
    decode_time,
    open_dataset,
    scalar,
    variable,
)

#: ABI bands whose L1b radiances calibrate to brightness temperature.
EMISSIVE_BANDS = frozenset(range(7, 17))
#: The Planck-constant variables of an emissive-band L1b file, in the order of :func:`brightness_temperature`.
PLANCK_VARIABLES = ("planck_fk1", "planck_fk2", "planck_bc1", "planck_bc2")
#: DQF values kept by default: good_pixel_qf and conditionally_usable_pixel_qf.
DEFAULT_GOOD_DQF = (0, 1)
#: Least share of the pixels on the Earth's disk that must be valid for a frame to be published.
#: Real frames hold more than 99 % (every sample here; the limb and space are not counted). Half
#: a disk missing is no routine quirk but a broken or all-fill file, and a grid drawn from it would
#: be mostly NaN; a partial frame with some scan swaths missing (more than half kept) still helps.
MIN_VALID_SHARE = 0.5

#: Full-sector (rows, columns) at 2 km (GOES-R PUG vol. 3; satpy ``areas.yaml``): full disk, CONUS, mesoscale.
SECTOR_SHAPE_2KM = {"F": (5424, 5424), "C": (1500, 2500), "M1": (500, 500), "M2": (500, 500)}
SECTOR_NAMES = {"F": "full disk", "C": "CONUS", "M1": "mesoscale (M1)", "M2": "mesoscale (M2)"}
#: Nominal resolution (km at the sub-satellite point) of the bands that are not 2 km.
FINE_BANDS_KM = {1: 1.0, 2: 0.5, 3: 1.0, 5: 1.0}
#: Fixed-grid pixel pitch in radians by resolution in km (56, 28 and 14 microradians).
ABI_PITCH_RAD = {2.0: 56e-6, 1.0: 28e-6, 0.5: 14e-6}
#: Largest scan angle a fixed-grid pixel centre can have: the full disk spans ±0.151872 rad and
#: the Earth's limb is at about ±0.1519 rad.
MAX_SCAN_ANGLE_RAD = 0.16
#: GOES-R's perspective point height (m) and how far a file's may stray from it.
PERSPECTIVE_HEIGHT_M = 35_786_023.0
HEIGHT_TOLERANCE_M = 10_000.0
#: How far ``t`` (the mid-scan time) may lie outside the scan window of the file name.
SCAN_TIME_SLACK_S = 1.0
#: Pixels decoded at a time (rounded to whole rows and to the variable's chunk rows): the working set.
BLOCK_PIXELS = 1 << 21


def band_resolution_km(band: int) -> float:
    """Nominal resolution of an ABI band in km: 0.5 (band 2), 1 (1, 3, 5) or 2 (the others).

    >>> band_resolution_km(2), band_resolution_km(13)
    (0.5, 2.0)
    """
    return FINE_BANDS_KM.get(band, 2.0)


def sector_shape(sector: str, band: int) -> tuple[int, int]:
    """The (rows, columns) of a whole ``sector`` scan in ``band``: the 2-km shape times 2 or 4.

    >>> sector_shape("F", 13), sector_shape("C", 2), sector_shape("M1", 1)
    ((5424, 5424), (6000, 10000), (1000, 1000))
    """
    factor = round(2.0 / band_resolution_km(band))
    rows, cols = SECTOR_SHAPE_2KM[sector]
    return rows * factor, cols * factor


@dataclass(frozen=True)
class PixelAccounting:
    """Why pixels are missing. Counts are disjoint and sum to the image size.

    ``space`` pixels are off the Earth's disk; the others are on it.
    """

    valid: int
    fill: int
    bad_dqf: int
    nonphysical: int
    space: int

    @property
    def earth(self) -> int:
        """Pixels on the Earth's disk."""
        return self.valid + self.fill + self.bad_dqf + self.nonphysical


@dataclass(frozen=True, eq=False)
class AbiImage:
    """One calibrated ABI band on its native fixed grid.

    Attributes
    ----------
    values
        float32 ``[H, W]``; K for emissive bands, reflectance factor (1) for
        reflective bands; NaN where missing.
    quantity
        ``'brightness_temperature'`` or ``'reflectance_factor'``.
    units
        ``'K'`` or ``'1'``.
    """

    path: str
    name: GoesFilename
    values: NDArray[np.float32]
    quantity: str
    units: str
    band: int
    wavelength_um: float
    grid: FixedGrid
    platform: str
    orbital_slot: str
    scene: str
    accounting: PixelAccounting
    dqf_counts: dict[int, int]

    @property
    def scan_start(self) -> datetime:
        """Scan start, aware UTC."""
        return self.name.scan_start

    @property
    def scan_end(self) -> datetime:
        """Scan end, aware UTC."""
        return self.name.scan_end

    @property
    def valid_fraction(self) -> float:
        """Fraction of all pixels that carry a value."""
        return self.accounting.valid / self.values.size


def brightness_temperature(
    radiance: NDArray[np.float64], fk1: float, fk2: float, bc1: float, bc2: float
) -> NDArray[np.float64]:
    """Radiance → brightness temperature (K) by the inverse Planck function.

    Parameters
    ----------
    radiance
        Spectral radiance, mW m-2 sr-1 (cm-1)-1, any shape. Values ``<= 0`` or
        NaN give NaN.
    fk1, fk2, bc1, bc2
        The file's ``planck_fk1`` (mW m-2 sr-1 (cm-1)-1), ``planck_fk2`` (K),
        ``planck_bc1`` (K) and ``planck_bc2`` (1).

    Examples
    --------
    >>> round(float(brightness_temperature(np.array([100.0]), 10803.3, 1392.74, 0.0755, 0.99975)[0]), 3)
    296.854
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        positive = np.where(radiance > 0.0, radiance, np.nan)
        return (fk2 / np.log(fk1 / positive + 1.0) - bc1) / bc2


def radiance_from_brightness_temperature(
    bt: NDArray[np.float64], fk1: float, fk2: float, bc1: float, bc2: float
) -> NDArray[np.float64]:
    """Brightness temperature (K) → radiance; the exact inverse of :func:`brightness_temperature`."""
    return fk1 / (np.exp(fk2 / (bc1 + bc2 * bt)) - 1.0)


class _AbiReader:
    """Shared steps of the ABI readers; subclasses name the variable and calibrate."""

    data_variable: ClassVar[str]
    family: ClassVar[str]

    def __init__(self, good_dqf: tuple[int, ...] = DEFAULT_GOOD_DQF, min_valid_share: float = MIN_VALID_SHARE) -> None:
        if not 0.0 <= min_valid_share <= 1.0:
            msg = f"min_valid_share must be a share in [0, 1], found {min_valid_share!r}"
            raise ValueError(msg)
        self.good_dqf = good_dqf
        self.min_valid_share = min_valid_share

    def read(self, path: str | Path) -> AbiImage:
        """Read, calibrate and mask one file, after the checks listed in the module docstring."""
        name = parse_filename(path)
        if name.family != self.family:
            raise FrameDecodeError(str(path), f"expected a {self.family} file, the name says {name.family}")
        with open_dataset(path) as ds:
            self._check_shapes(ds, name)
            band = self._check_identity(ds, name)
            _check_scan_time(ds, name)
            grid = read_fixed_grid(ds)
            image, accounting, dqf_counts, (quantity, units) = self._decode_blocks(ds, band, grid)
            self._check_valid_share(ds, accounting)
            return AbiImage(
                path=str(path),
                name=name,
                values=image,
                quantity=quantity,
                units=units,
                band=band,
                wavelength_um=float(decode(variable(ds, "band_wavelength")).reshape(-1)[0]),
                grid=grid,
                platform=str(attribute(ds, "platform_ID")),
                orbital_slot=str(getattr(ds, "orbital_slot", "unknown")),
                scene=str(getattr(ds, "scene_id", name.sector)),
                accounting=accounting,
                dqf_counts=dqf_counts,
            )

    def _check_shapes(self, ds: netCDF4.Dataset, name: GoesFilename) -> None:
        """Declared shapes against the sector and band of the name; nothing is read."""
        band, sector = name.band, name.sector
        if band is None or sector is None or not 1 <= band <= 16:
            raise FrameDecodeError(ds.filepath(), f"expected an ABI band 1-16 and a sector, the name says {band}")
        limit = sector_shape(sector, band)
        what = f"a {SECTOR_NAMES[sector]} frame of band {band} ({band_resolution_km(band):g} km)"
        data = variable(ds, self.data_variable)
        found = tuple(int(n) for n in data.shape)
        if tuple(data.dimensions) != ("y", "x") or not all(2 <= n <= m for n, m in zip(found, limit, strict=True)):
            msg = (
                f"variable {self.data_variable!r} declares shape {found} over {tuple(data.dimensions)}; "
                f"expected at most {limit} (and at least (2, 2)) over ('y', 'x') for {what}"
            )
            raise FrameShapeError(ds.filepath(), msg)
        check_shape(variable(ds, "DQF"), found, f"the {self.data_variable} {found} of {what}")
        check_shape(variable(ds, "y"), found[:1], f"the {self.data_variable} {found} of {what}")
        check_shape(variable(ds, "x"), found[1:], f"the {self.data_variable} {found} of {what}")
        for scalar_name in ("band_id", "band_wavelength", "t"):
            check_scalar(variable(ds, scalar_name))

    def _decode_blocks(
        self, ds: netCDF4.Dataset, band: int, grid: FixedGrid
    ) -> tuple[NDArray[np.float32], PixelAccounting, dict[int, int], tuple[str, str]]:
        """Decode, calibrate and mask blocks of rows into one float32 image (see "Memory" above)."""
        data_var, dqf_var = variable(ds, self.data_variable), variable(ds, "DQF")
        image = np.empty(grid.shape, np.float32)
        totals: Counter[str] = Counter()
        dqf_counts: Counter[int] = Counter()
        labels = ("", "")
        whole_on_disk = _all_on_disk(grid)
        for rows in _row_blocks(data_var, grid.shape):
            stored = decode(data_var, index=rows)
            physical, quantity, units = self.calibrate(ds, band, stored)
            dqf = decode_int(dqf_var, index=rows)
            if whole_on_disk:  # a CONUS or mesoscale block: no pixel can look into space
                space = np.zeros((len(range(*rows.indices(grid.shape[0]))), grid.shape[1]), bool)
            else:
                space = ~grid.projection.on_disk(grid.x[np.newaxis, :], grid.y[rows, np.newaxis])
            image[rows], accounting = _mask(stored, physical, dqf, space, self.good_dqf)
            totals.update({f.name: getattr(accounting, f.name) for f in fields(PixelAccounting)})
            dqf_counts.update(_flag_counts(dqf))
            labels = (quantity, units)
        accounting = PixelAccounting(**{f.name: totals[f.name] for f in fields(PixelAccounting)})
        return image, accounting, dict(sorted(dqf_counts.items())), labels

    def _check_valid_share(self, ds: netCDF4.Dataset, accounting: PixelAccounting) -> None:
        """Refuse a frame with fewer valid earth pixels than ``min_valid_share`` (stage ``empty``)."""
        share = accounting.valid / accounting.earth if accounting.earth else 0.0
        if share < self.min_valid_share or accounting.valid == 0:
            msg = (
                f"{accounting.valid} of {accounting.earth} earth pixels are valid ({share:.1%}), expected at least "
                f"{self.min_valid_share:.0%} (fill {accounting.fill}, bad DQF {accounting.bad_dqf}, "
                f"nonphysical {accounting.nonphysical}; {accounting.space} in space)"
            )
            raise FrameEmptyError(ds.filepath(), msg)

    def _check_identity(self, ds: netCDF4.Dataset, name: GoesFilename) -> int:
        """The band and platform inside the file must be the ones its name claims."""
        band = int(decode_int(variable(ds, "band_id")).reshape(-1)[0])
        if band != name.band:
            raise FrameDecodeError(ds.filepath(), f"file name says band {name.band}, band_id says {band}")
        platform = str(attribute(ds, "platform_ID"))
        if platform != name.satellite:
            raise FrameDecodeError(ds.filepath(), f"file name says {name.satellite}, platform_ID says {platform}")
        return band

    def calibrate(
        self, ds: netCDF4.Dataset, band: int, stored: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], str, str]:
        """Physical values from the unpacked data variable ``stored``, with quantity and units."""
        raise NotImplementedError


class AbiL1bRadReader(_AbiReader):
    """ABI L1b radiances: ``Rad`` → brightness temperature (7–16) or reflectance factor (1–6)."""

    data_variable = "Rad"
    family = "ABI-L1b-Rad"

    def calibrate(
        self, ds: netCDF4.Dataset, band: int, stored: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], str, str]:
        """Calibrate radiance with the file's own constants."""
        radiance = stored
        if band in EMISSIVE_BANDS:
            constants = [scalar(ds, name) for name in PLANCK_VARIABLES]
            if not all(np.isfinite(constants)):
                raise FrameDecodeError(ds.filepath(), f"band {band} is emissive but its Planck constants are fill")
            fk1, fk2, _, bc2 = constants
            if min(fk1, fk2, bc2) <= 0.0:
                msg = f"band {band}: expected positive planck_fk1, planck_fk2 and planck_bc2, found {constants}"
                raise FrameDecodeError(ds.filepath(), msg)
            return brightness_temperature(radiance, *constants), "brightness_temperature", "K"
        kappa0 = scalar(ds, "kappa0")
        if not np.isfinite(kappa0):
            raise FrameDecodeError(ds.filepath(), f"band {band} is reflective but kappa0 is fill")
        if kappa0 <= 0.0:
            raise FrameDecodeError(ds.filepath(), f"band {band}: expected a positive kappa0, found {kappa0!r}")
        with np.errstate(over="ignore"):
            return radiance * kappa0, "reflectance_factor", "1"


class AbiL2CmipReader(_AbiReader):
    """ABI L2 cloud and moisture imagery: ``CMI`` is already K (7–16) or reflectance factor (1–6)."""

    data_variable = "CMI"
    family = "ABI-L2-CMIP"

    def calibrate(
        self, ds: netCDF4.Dataset, band: int, stored: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], str, str]:
        """Check the ``CMI`` units agree with the band; the values are already physical."""
        units = str(attribute(variable(ds, "CMI"), "units"))
        expected = "K" if band in EMISSIVE_BANDS else "1"
        if units != expected:
            raise FrameDecodeError(ds.filepath(), f"band {band} CMI should be in {expected!r}, found {units!r}")
        quantity = "brightness_temperature" if expected == "K" else "reflectance_factor"
        return stored, quantity, units


def read_fixed_grid(ds: netCDF4.Dataset) -> FixedGrid:
    """The fixed grid of an ABI file: projection attributes and scaled ``x``/``y``, checked for sanity."""
    projection = _read_projection(ds)
    x, y = decode(variable(ds, "x")), decode(variable(ds, "y"))
    for axis_name, axis in (("x", x), ("y", y)):
        if not (np.isfinite(axis).all() and np.abs(axis).max(initial=0.0) <= MAX_SCAN_ANGLE_RAD):
            bounds = f"{np.nanmin(axis, initial=np.inf):.6g}…{np.nanmax(axis, initial=-np.inf):.6g}"
            msg = (
                f"fixed-grid {axis_name} should be finite scan angles within ±{MAX_SCAN_ANGLE_RAD} rad, found {bounds}"
            )
            raise FrameDecodeError(ds.filepath(), msg)
    try:
        grid = FixedGrid(projection, x, y)
    except ValueError as exc:
        raise FrameDecodeError(ds.filepath(), str(exc)) from exc
    if not (
        grid.dx > 0 > grid.dy
        and any(np.isclose([grid.dx, -grid.dy], p, rtol=0.01).all() for p in ABI_PITCH_RAD.values())
    ):
        pitches = ", ".join(f"{p * 1e6:g}" for p in ABI_PITCH_RAD.values())
        found = f"dx {grid.dx:.4g}, dy {grid.dy:.4g} rad"
        msg = f"fixed-grid steps should be +p (x) and -p (y) with p one of {pitches} µrad, found {found}"
        raise FrameDecodeError(ds.filepath(), msg)
    return grid


def _read_projection(ds: netCDF4.Dataset) -> GeosProjection:
    """GOES-R's geostationary projection from ``goes_imager_projection``: sweep x, GRS80, its height."""
    proj_var = variable(ds, "goes_imager_projection")
    attrs = {k: proj_var.getncattr(k) for k in proj_var.ncattrs()}
    try:
        projection = GeosProjection.from_attributes(attrs)
    except KeyError as exc:
        raise FrameDecodeError(ds.filepath(), f"goes_imager_projection lacks attribute {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise FrameDecodeError(ds.filepath(), f"goes_imager_projection attributes are not numbers ({exc})") from exc
    if projection.sweep != "x":
        raise FrameDecodeError(ds.filepath(), f"expected sweep_angle_axis 'x' (GOES-R), found {projection.sweep!r}")
    checks = (
        ("longitude_of_projection_origin", projection.lon_0, 0.0, 180.0),
        ("perspective_point_height", projection.height, PERSPECTIVE_HEIGHT_M, HEIGHT_TOLERANCE_M),
        ("semi_major_axis", projection.ellipsoid.a, GRS80.a, 1.0),
        ("semi_minor_axis", projection.ellipsoid.b, GRS80.b, 1.0),
    )
    for attr_name, value, nominal, tolerance in checks:
        if not abs(value - nominal) <= tolerance:
            msg = f"goes_imager_projection {attr_name} should be {nominal:g} ± {tolerance:g}, found {value!r}"
            raise FrameDecodeError(ds.filepath(), msg)
    return projection


def _check_scan_time(ds: netCDF4.Dataset, name: GoesFilename) -> None:
    """``t`` (mid-scan) must lie in the scan window the file name states."""
    var = variable(ds, "t")
    mid = float(decode_time(var).reshape(-1)[0])
    low = name.scan_start.timestamp() - SCAN_TIME_SLACK_S
    high = name.scan_end.timestamp() + SCAN_TIME_SLACK_S
    if not low <= mid <= high:
        found = iso_utc(mid) if np.isfinite(mid) and abs(mid) < 1e11 else repr(mid)
        msg = (
            f"variable 't' (mid-scan) is {found}; expected within the scan {iso_utc(name.scan_start)}"
            f"…{iso_utc(name.scan_end)} of the file name (± {SCAN_TIME_SLACK_S:g} s)"
        )
        raise FrameDecodeError(ds.filepath(), msg)


def _row_blocks(var: netCDF4.Variable[Any], shape: tuple[int, int]) -> list[slice]:
    """Slices of whole rows of at most :data:`BLOCK_PIXELS` pixels (one row at least).

    Blocks are a whole number of the variable's chunk rows when a chunk is shorter than a
    block, so each chunk is decompressed once; the file's chunking never enlarges a block.
    """
    chunking = var.chunking()
    chunk_rows = max(int(chunking[0]), 1) if isinstance(chunking, list | tuple) and chunking else 1
    rows, cols = shape
    per_block = max(BLOCK_PIXELS // max(cols, 1), 1)
    if chunk_rows <= per_block:
        per_block -= per_block % chunk_rows
    return [slice(start, min(start + per_block, rows)) for start in range(0, rows, per_block)]


def _flag_counts(dqf: NDArray[np.int64]) -> dict[int, int]:
    """How many pixels carry each DQF value (a histogram for the usual small flags, a sort otherwise).

    >>> _flag_counts(np.array([[0, 0, 3], [1, 0, -2]]))
    {-2: 1, 0: 3, 1: 1, 3: 1}
    """
    if dqf.size and 0 <= dqf.min() and dqf.max() < 256:
        counts = np.bincount(dqf.ravel())
        return {int(v): int(counts[v]) for v in np.flatnonzero(counts)}
    values, counts = np.unique(dqf, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


def _all_on_disk(grid: FixedGrid) -> bool:
    """Whether every pixel of ``grid`` sees the Earth: its four corners do.

    Exact for the GOES-R geometry: a row at scan angle ``y`` sees the Earth for ``|x| <= g(y)``, an interval
    around 0 that narrows as ``|y|`` grows (GOES-R PUG vol. 3, §4.2.8.1, solved for ``tan x``), so the corners
    of a rectangle of scan angles are its points closest to the limb.
    """
    corners_x = np.array([grid.x[0], grid.x[-1], grid.x[0], grid.x[-1]])
    corners_y = np.array([grid.y[0], grid.y[0], grid.y[-1], grid.y[-1]])
    return bool(grid.projection.on_disk(corners_x, corners_y).all())


def _mask(
    stored: NDArray[np.float64],
    physical: NDArray[np.float64],
    dqf: NDArray[np.int64],
    space: NDArray[np.bool_],
    good_dqf: tuple[int, ...],
) -> tuple[NDArray[np.float32], PixelAccounting]:
    """Apply the masking rules in order (space, fill, DQF, nonphysical) and count each.

    ``stored`` is the unpacked data variable (NaN = fill or out of valid range);
    ``space`` is ``True`` where the line of sight misses the Earth.
    """
    fill = ~space & np.isnan(stored)
    good = np.zeros(dqf.shape, bool)
    for flag in good_dqf:  # a few flags: cheaper than np.isin's sort
        good |= dqf == flag
    bad_dqf = ~space & ~fill & ~good
    with np.errstate(over="ignore", invalid="ignore"):
        image = physical.astype(np.float32)
    nonphysical = ~space & ~fill & ~bad_dqf & ~np.isfinite(image)
    image[space | fill | bad_dqf | nonphysical] = np.nan
    accounting = PixelAccounting(
        valid=int(np.isfinite(image).sum()),
        fill=int(fill.sum()),
        bad_dqf=int(bad_dqf.sum()),
        nonphysical=int(nonphysical.sum()),
        space=int(space.sum()),
    )
    return image, accounting
