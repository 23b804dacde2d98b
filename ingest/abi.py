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
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar

import netCDF4
import numpy as np
from numpy.typing import NDArray

from ingest.errors import FrameDecodeError
from ingest.filenames import GoesFilename, parse_filename
from ingest.geometry import FixedGrid, GeosProjection
from ingest.ncio import attribute, decode, decode_int, open_dataset, scalar, variable

#: ABI bands whose L1b radiances calibrate to brightness temperature.
EMISSIVE_BANDS = frozenset(range(7, 17))
#: The Planck-constant variables of an emissive-band L1b file, in the order of :func:`brightness_temperature`.
PLANCK_VARIABLES = ("planck_fk1", "planck_fk2", "planck_bc1", "planck_bc2")
#: DQF values kept by default: good_pixel_qf and conditionally_usable_pixel_qf.
DEFAULT_GOOD_DQF = (0, 1)


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
    with np.errstate(divide="ignore", invalid="ignore"):
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

    def __init__(self, good_dqf: tuple[int, ...] = DEFAULT_GOOD_DQF) -> None:
        self.good_dqf = good_dqf

    def read(self, path: str | Path) -> AbiImage:
        """Read, calibrate and mask one file."""
        name = parse_filename(path)
        if name.family != self.family:
            raise FrameDecodeError(str(path), f"expected a {self.family} file, the name says {name.family}")
        with open_dataset(path) as ds:
            band = self._check_identity(ds, name)
            grid = read_fixed_grid(ds)
            data_var = variable(ds, self.data_variable)
            stored = decode(data_var)
            physical, quantity, units = self.calibrate(ds, band, stored)
            dqf = decode_int(variable(ds, "DQF"))
            if stored.shape != grid.shape or dqf.shape != grid.shape:
                msg = f"{self.data_variable} {stored.shape} and DQF {dqf.shape} must match the grid {grid.shape}"
                raise FrameDecodeError(str(path), msg)
            image, accounting = _mask(stored, physical, dqf, grid, self.good_dqf)
            values, counts = np.unique(dqf, return_counts=True)
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
                dqf_counts={int(v): int(c) for v, c in zip(values, counts, strict=True)},
            )

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
            return brightness_temperature(radiance, *constants), "brightness_temperature", "K"
        kappa0 = scalar(ds, "kappa0")
        if not np.isfinite(kappa0):
            raise FrameDecodeError(ds.filepath(), f"band {band} is reflective but kappa0 is fill")
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
    """The fixed grid of an ABI file: projection attributes and scaled ``x``/``y``."""
    proj_var = variable(ds, "goes_imager_projection")
    attrs = {k: proj_var.getncattr(k) for k in proj_var.ncattrs()}
    try:
        projection = GeosProjection.from_attributes(attrs)
    except KeyError as exc:
        raise FrameDecodeError(ds.filepath(), f"goes_imager_projection lacks attribute {exc}") from exc
    if projection.sweep != "x":
        raise FrameDecodeError(ds.filepath(), f"expected sweep_angle_axis 'x' (GOES-R), found {projection.sweep!r}")
    return FixedGrid(projection, decode(variable(ds, "x")), decode(variable(ds, "y")))


def _mask(
    stored: NDArray[np.float64],
    physical: NDArray[np.float64],
    dqf: NDArray[np.int64],
    grid: FixedGrid,
    good_dqf: tuple[int, ...],
) -> tuple[NDArray[np.float32], PixelAccounting]:
    """Apply the masking rules in order (space, fill, DQF, nonphysical) and count each.

    ``stored`` is the unpacked data variable (NaN = fill or out of valid range).
    """
    space = ~grid.earth_mask()
    fill = ~space & np.isnan(stored)
    bad_dqf = ~space & ~fill & ~np.isin(dqf, good_dqf)
    nonphysical = ~space & ~fill & ~bad_dqf & ~np.isfinite(physical)
    image = physical.astype(np.float32)
    image[space | fill | bad_dqf | nonphysical] = np.nan
    accounting = PixelAccounting(
        valid=int(np.isfinite(image).sum()),
        fill=int(fill.sum()),
        bad_dqf=int(bad_dqf.sum()),
        nonphysical=int(nonphysical.sum()),
        space=int(space.sum()),
    )
    return image, accounting
