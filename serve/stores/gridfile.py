"""Probability grids as CF-1.8 NetCDF on the frame's own geostationary fixed grid.

The file carries the ``goes_imager_projection`` grid mapping (CF
``geostationary``, ``sweep_angle_axis = "x"``) and the ``x``/``y`` scan angles
(radians) of the ABI frame, so xarray/pyproj and satpy place it exactly where
the frame was, with no regridding. ``probability`` is stored as packed ``uint8``
percent (``scale_factor`` 0.01, 255 = missing: space pixels and pixels whose
input was missing everywhere) or as ``float32``. Scalar ``time`` (valid time =
scan start + 30 min) and ``forecast_reference_time`` (scan start) and the
provenance (model name and version, input files, GLM granules used and
missing) are written too.

The GLM flashes the grid was made from may ride along on a ``flash`` dimension:
``flash_lat``/``flash_lon`` (degrees, as GLM navigated them, i.e. on the
lightning ellipsoid) and ``flash_time`` (seconds since 1970, UTC), all float64.
The scan's band-13 brightness temperature may ride along as ``underlay``
(``uint8``, 0.75 K steps from 150 K, 255 missing; CF ``toa_brightness_temperature``),
the infrared layer of the map (:mod:`serve.products.georef`); grids written before it,
or from another band, have none (:meth:`GridFile.underlay` gives ``None``).

A grid written without flashes has no ``flash`` dimension; one written with an
empty set has a ``flash`` dimension of length 0 (which netCDF makes unlimited),
so "no flashes recorded" and "no flashes seen" stay apart.
:func:`read_flashes` gives empty arrays for both.

Besides whole-grid :func:`read_grid`, :class:`GridFile` reads parts of a grid
cheaply (geometry, one pixel, valid time, flashes) for point time series.

Writes go through :func:`foundation.files.atomic_path` (a uniquely named
temporary, ``fsync``, rename), so readers never see half a file, two workers
writing one grid leave one whole file, and writing the same grid again replaces
it (idempotent). Every netCDF4
call here holds :data:`ingest.ncio.NETCDF_LOCK` (HDF5 is not thread-safe).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import netCDF4
import numpy as np
from numpy.typing import ArrayLike, NDArray

from foundation.files import atomic_path
from foundation.utc import iso_utc
from ingest.events import GridKey
from ingest.geometry import FixedGrid, GeosProjection
from ingest.ncio import NETCDF_LOCK

EPOCH = "seconds since 1970-01-01 00:00:00"
ENCODINGS = ("uint8", "float32")
#: The missing value of packed ``uint8`` percent (valid values are 0..100).
MISSING_PERCENT = 255
#: The optional infrared underlay: its variable, and K per packed step from the offset (0..254 = 150..340.5 K).
UNDERLAY_VARIABLE = "underlay"
UNDERLAY_SCALE = 0.75
UNDERLAY_OFFSET = 150.0
#: Side of the square chunks ``probability`` is stored (and compressed) in, pixels.
CHUNK = 256
#: Keys of :func:`read_flashes`, and the file's variables they come from.
FLASH_VARIABLES = {"lat": "flash_lat", "lon": "flash_lon", "time": "flash_time"}
_FLASH_ATTRS: dict[str, dict[str, str]] = {
    "lat": {"standard_name": "latitude", "units": "degrees_north",
            "long_name": "GLM flash centroid latitude (lightning ellipsoid), input to this grid"},
    "lon": {"standard_name": "longitude", "units": "degrees_east",
            "long_name": "GLM flash centroid longitude (lightning ellipsoid), input to this grid"},
    "time": {"standard_name": "time", "units": EPOCH, "calendar": "standard",
             "long_name": "GLM flash time, input to this grid", "coordinates": "flash_lat flash_lon"},
}  # fmt: skip


class FlashesLike(Protocol):
    """Anything with equal-length ``lat``, ``lon`` (degrees) and ``time`` (s since 1970) arrays.

    :class:`featurize.examples.Flashes` and a GLM granule's flashes are such things.
    """

    @property
    def lat(self) -> Any: ...  # noqa: D102

    @property
    def lon(self) -> Any: ...  # noqa: D102

    @property
    def time(self) -> Any: ...  # noqa: D102


#: Flashes as attributes (:class:`FlashesLike`) or as a mapping with the same keys (what :func:`read_flashes` gives).
FlashArrays = FlashesLike | Mapping[str, ArrayLike]


@dataclass(frozen=True)
class GridMeta:
    """What a grid is: where, when, from what and by which model."""

    satellite: str
    sector: str
    scan_start: datetime
    valid_time: datetime
    model_name: str
    model_version: int
    abi_file: str
    glm_files: tuple[str, ...] = ()
    glm_missing: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> GridKey:
        """The grid's identity (satellite, sector, scan start, model version)."""
        return GridKey(self.satellite, self.sector, self.scan_start, self.model_name, self.model_version)

    @property
    def grid_id(self) -> str:
        """The idempotency key as text (:attr:`GridKey.grid_id <ingest.events.GridKey.grid_id>`)."""
        return self.key.grid_id


def write_grid(path: Path, probability: NDArray[np.floating[Any]], grid: FixedGrid, meta: GridMeta, *,
               encoding: str = "uint8", flashes: FlashArrays | None = None,
               underlay: NDArray[np.floating[Any]] | None = None) -> Path:  # fmt: skip
    """Write one probability grid; return ``path``.

    ``flashes``, when given, are the GLM flashes the grid was made from
    (``lat``/``lon`` degrees, ``time`` seconds since 1970; equal lengths, possibly
    empty; as attributes or mapping keys); they are stored as float64 on the
    ``flash`` dimension.

    ``underlay``, when given, is the band-13 (10.3 µm) brightness temperature
    of the same scan in K, ``[H, W]``, NaN where missing: the map's infrared
    underlay. It is stored as variable ``underlay``, ``uint8`` packed with
    :data:`UNDERLAY_SCALE` K per step from :data:`UNDERLAY_OFFSET` K (so
    150..340.5 K; colder and warmer values are clipped), fill
    :data:`MISSING_PERCENT`, zlib level 1 (cheap: on a real-texture CONUS
    1500 x 2500 frame it added 0.06 s to a 0.10 s write and 1.1 MB to 0.65 MB).
    """
    columns = None if flashes is None else _flash_columns(flashes)
    if encoding not in ENCODINGS:
        msg = f"unknown probability encoding {encoding!r}; valid: {', '.join(ENCODINGS)}"
        raise ValueError(msg)
    if probability.shape != grid.shape:
        msg = f"probability shape {probability.shape} does not match the grid {grid.shape}"
        raise ValueError(msg)
    p = np.asarray(probability, np.float32)
    if underlay is not None and np.shape(underlay) != grid.shape:
        msg = f"underlay shape {np.shape(underlay)} does not match the grid {grid.shape}"
        raise ValueError(msg)
    with atomic_path(path) as temporary, NETCDF_LOCK, netCDF4.Dataset(temporary, "w", format="NETCDF4") as ds:
        ds.setncatts(
            {
                "Conventions": "CF-1.8",
                "title": "ltgcast probability of lightning in the next 30 minutes",
                "institution": "ltgcast",
                "source": f"{meta.model_name} version {meta.model_version}",
                "summary": "Probability of at least one GLM flash within the 16x16-pixel box around each pixel "
                "during the 30 minutes after the ABI scan start.",
                "platform": meta.satellite,
                "scene_id": meta.sector,
                "grid_id": meta.grid_id,
                "model_name": meta.model_name,
                "model_version": np.int32(meta.model_version),
                "input_abi_file": meta.abi_file,
                "input_glm_files": " ".join(meta.glm_files),
                "input_glm_granules_used": np.int32(len(meta.glm_files)),
                "input_glm_granules_missing": np.int32(meta.glm_missing),
                "date_created": iso_utc(datetime.now(UTC)),
                "provenance": json.dumps(meta.extra, sort_keys=True),
            }
        )
        if columns is not None:
            _write_flashes(ds, columns)
        height, width = grid.shape
        ds.createDimension("y", height)
        ds.createDimension("x", width)
        for name, axis, values in (("x", "X", grid.x), ("y", "Y", grid.y)):
            v = ds.createVariable(name, "f8", (name,))
            v[:] = values
            v.setncatts(
                {
                    "axis": axis,
                    "units": "rad",
                    "standard_name": f"projection_{name}_coordinate",
                    "long_name": f"GOES fixed grid projection {name}-coordinate (scan angle)",
                }
            )
        proj = grid.projection
        mapping = ds.createVariable("goes_imager_projection", "i4")
        mapping.setncatts(
            {
                "grid_mapping_name": "geostationary",
                "perspective_point_height": proj.height,
                "semi_major_axis": proj.ellipsoid.a,
                "semi_minor_axis": proj.ellipsoid.b,
                "inverse_flattening": proj.ellipsoid.a / (proj.ellipsoid.a - proj.ellipsoid.b),
                "latitude_of_projection_origin": 0.0,
                "longitude_of_projection_origin": proj.lon_0,
                "sweep_angle_axis": proj.sweep,
            }
        )
        for name, standard, when in (
            ("time", "time", meta.valid_time),
            ("forecast_reference_time", "forecast_reference_time", meta.scan_start),
        ):
            t = ds.createVariable(name, "f8")
            t.assignValue(when.timestamp())
            t.setncatts({"units": EPOCH, "calendar": "standard", "standard_name": standard})
        chunks = (min(height, CHUNK), min(width, CHUNK))  # a point read inflates one chunk, not the grid
        if encoding == "uint8":
            var = ds.createVariable("probability", "u1", ("y", "x"), zlib=True, complevel=4,
                                    fill_value=np.uint8(MISSING_PERCENT), chunksizes=chunks)  # fmt: skip
            var.set_auto_maskandscale(False)
            var[:] = pack_percent(p)
            var.setncatts({"scale_factor": np.float32(0.01), "add_offset": np.float32(0.0),
                           "valid_range": np.array([0, 100], np.uint8)})  # fmt: skip
        else:
            var = ds.createVariable("probability", "f4", ("y", "x"), zlib=True, complevel=4, fill_value=np.nan,
                                    chunksizes=chunks)  # fmt: skip
            var[:] = p
            var.setncattr("valid_range", np.array([0.0, 1.0], np.float32))
        var.setncatts(
            {
                "long_name": "probability of lightning in the next 30 minutes",
                "units": "1",
                "grid_mapping": "goes_imager_projection",
                "coordinates": "time forecast_reference_time",
            }
        )
        if underlay is not None:
            _write_underlay(ds, underlay, chunks)
    return path


def _write_underlay(ds: netCDF4.Dataset, kelvin: NDArray[np.floating[Any]], chunks: tuple[int, int]) -> None:
    var = ds.createVariable(UNDERLAY_VARIABLE, "u1", ("y", "x"), zlib=True, complevel=1,
                            fill_value=np.uint8(MISSING_PERCENT), chunksizes=chunks)  # fmt: skip
    var.set_auto_maskandscale(False)
    var[:] = pack_underlay(kelvin)
    var.setncatts({"scale_factor": np.float32(UNDERLAY_SCALE), "add_offset": np.float32(UNDERLAY_OFFSET),
                   "valid_range": np.array([0, 254], np.uint8), "standard_name": "toa_brightness_temperature",
                   "units": "K", "long_name": "ABI band 13 (10.3 um) brightness temperature of the scan, "
                   "quantized for the map underlay", "grid_mapping": "goes_imager_projection"})  # fmt: skip


def pack_underlay(kelvin: NDArray[np.floating[Any]]) -> NDArray[np.uint8]:
    """Brightness temperature (K, NaN = missing) as the ``underlay`` bytes; 255 where NaN.

    >>> pack_underlay(np.array([150.0, 300.0, 400.0, np.nan])).tolist()
    [0, 200, 254, 255]
    """
    t = np.asarray(kelvin, np.float32)
    packed = np.rint(np.clip((np.nan_to_num(t, nan=UNDERLAY_OFFSET) - UNDERLAY_OFFSET) / UNDERLAY_SCALE, 0, 254))
    return np.where(np.isfinite(t), packed, MISSING_PERCENT).astype(np.uint8)


def _flash_columns(flashes: FlashArrays) -> dict[str, NDArray[np.float64]]:
    def column(key: str) -> NDArray[np.float64]:
        values = flashes[key] if isinstance(flashes, Mapping) else getattr(flashes, key)
        return np.asarray(values, np.float64).reshape(-1)

    columns = {key: column(key) for key in FLASH_VARIABLES}
    sizes = {key: values.size for key, values in columns.items()}
    if len(set(sizes.values())) != 1:
        msg = f"flash lat, lon and time must have equal lengths; found {sizes}"
        raise ValueError(msg)
    return columns


def _write_flashes(ds: netCDF4.Dataset, columns: dict[str, NDArray[np.float64]]) -> None:
    count = columns["time"].size
    ds.setncattr("input_glm_flashes", np.int32(count))
    ds.createDimension("flash", count)  # 0 makes it unlimited: netCDF has no fixed empty dimension
    for key, name in FLASH_VARIABLES.items():
        var = ds.createVariable(name, "f8", ("flash",), zlib=True, complevel=4, shuffle=True)
        var.setncatts(_FLASH_ATTRS[key])
        if count:
            var[:] = columns[key]


def pack_percent(probability: NDArray[np.floating[Any]]) -> NDArray[np.uint8]:
    """Probability (NaN = missing) as ``uint8`` whole percent, clipped to [0, 1]; :data:`MISSING_PERCENT` where NaN.

    >>> pack_percent(np.array([0.004, 0.5, 1.2, np.nan])).tolist()
    [0, 50, 100, 255]
    """
    return np.where(np.isfinite(probability), np.rint(np.clip(probability, 0, 1) * 100), MISSING_PERCENT).astype(
        np.uint8
    )


def unpack_percent(packed: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Inverse of :func:`pack_percent`: float32 probability, NaN where :data:`MISSING_PERCENT`.

    >>> unpack_percent(np.array([0, 50, 255], np.uint8)).tolist()
    [0.0, 0.5, nan]
    """
    out = packed.astype(np.float32) / np.float32(100)
    out[packed == MISSING_PERCENT] = np.nan
    return out


def read_grid(path: Path) -> tuple[NDArray[np.float32], dict[str, Any]]:
    """The probability ``[H, W]`` (NaN where missing) and the global attributes of a written grid."""
    with NETCDF_LOCK, netCDF4.Dataset(path) as ds:
        var = ds.variables["probability"]
        var.set_auto_maskandscale(True)
        values = np.ma.filled(var[:].astype(np.float32), np.nan)
        return values, {k: ds.getncattr(k) for k in ds.ncattrs()}


def _plain(value: Any) -> Any:
    """A NetCDF attribute as a plain Python value (numpy scalars and arrays become numbers and lists)."""
    return value.tolist() if isinstance(value, np.ndarray | np.generic) else value


class GridFile:
    """A written grid opened for partial reads; a context manager, used by one thread.

    Only what is asked for is read: :meth:`point` slices one pixel out of the
    (compressed, chunked) ``probability`` variable instead of decoding the grid.
    While open it holds :data:`ingest.ncio.NETCDF_LOCK`, as every netCDF4 use here
    does (writes and :func:`read_grid` too), so close it promptly.

    Raises
    ------
    OSError
        The file is missing or not NetCDF-4.
    ValueError
        A variable a grid file must have is missing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        NETCDF_LOCK.acquire()  # held until close(): HDF5 is not thread-safe
        try:
            self._ds = netCDF4.Dataset(str(path), mode="r")
        except BaseException:
            NETCDF_LOCK.release()
            raise
        self._ds.set_auto_maskandscale(False)

    def __enter__(self) -> GridFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the file and let other threads use netCDF4 again."""
        try:
            self._ds.close()
        finally:
            NETCDF_LOCK.release()

    def _var(self, name: str) -> Any:
        try:
            return self._ds.variables[name]
        except KeyError as exc:
            msg = f"{self.path}: expected a grid file with variable {name!r}; found {sorted(self._ds.variables)}"
            raise ValueError(msg) from exc

    def projection(self) -> GeosProjection:
        """The satellite projection from ``goes_imager_projection``."""
        mapping = self._var("goes_imager_projection")
        return GeosProjection.from_attributes({k: mapping.getncattr(k) for k in mapping.ncattrs()})

    def geometry_key(self) -> tuple[Any, ...]:
        """A hashable key equal for two files with the same geometry, read without the full axes.

        The axes are regular (:class:`FixedGrid` checks it), so the projection,
        sizes and end points of ``x`` and ``y`` determine them.
        """
        x, y = self._var("x"), self._var("y")
        ends = (float(x[0]), float(x[-1]), float(y[0]), float(y[-1]))
        return (self.projection(), x.shape[0], y.shape[0], *ends)

    def geometry(self) -> FixedGrid:
        """The fixed grid (scan angles and projection) the probabilities lie on."""
        x = np.asarray(self._var("x")[:], np.float64)
        y = np.asarray(self._var("y")[:], np.float64)
        return FixedGrid(self.projection(), x, y)

    def point(self, row: int, col: int) -> float | None:
        """The probability in ``[0, 1]`` at one pixel, or ``None`` where it is missing.

        Reads that one value only; ``IndexError`` outside the grid.
        """
        var = self._var("probability")
        height, width = var.shape
        if not (0 <= row < height and 0 <= col < width):
            msg = f"pixel ({row}, {col}) is outside the {height} x {width} grid of {self.path}"
            raise IndexError(msg)
        raw = var[row, col]
        fill = var.getncattr("_FillValue") if "_FillValue" in var.ncattrs() else None
        if not np.isfinite(raw) or (fill is not None and raw == fill):
            return None
        scale = float(var.getncattr("scale_factor")) if "scale_factor" in var.ncattrs() else 1.0
        offset = float(var.getncattr("add_offset")) if "add_offset" in var.ncattrs() else 0.0
        return round(float(raw) * scale + offset, 6)

    def valid_time(self) -> datetime:
        """The valid time (the ``time`` variable), UTC."""
        return datetime.fromtimestamp(float(self._var("time").getValue()), UTC)

    def attributes(self) -> dict[str, Any]:
        """The global attributes as plain Python values, plus times and shape; no probabilities are read.

        Added: ``valid_time`` and ``forecast_reference_time`` (ISO 8601 UTC) and
        ``shape`` (``[H, W]``).
        """
        attrs = {k: _plain(self._ds.getncattr(k)) for k in self._ds.ncattrs()}
        reference = float(self._var("forecast_reference_time").getValue())
        attrs.update(
            valid_time=iso_utc(self.valid_time()),
            forecast_reference_time=iso_utc(reference),
            shape=[int(n) for n in self._var("probability").shape],
        )
        return attrs

    def meta(self) -> GridMeta:
        """The :class:`GridMeta` the grid was written with (its ``extra`` from the provenance attribute)."""
        attrs = self.attributes()
        try:
            key = GridKey.parse(str(attrs["grid_id"]))
            glm = str(attrs.get("input_glm_files", ""))
            return GridMeta(
                satellite=key.satellite, sector=key.sector,
                scan_start=datetime.fromtimestamp(float(self._var("forecast_reference_time").getValue()), UTC),
                valid_time=self.valid_time(), model_name=key.model_name, model_version=key.model_version,
                abi_file=str(attrs["input_abi_file"]), glm_files=tuple(glm.split()) if glm else (),
                glm_missing=int(attrs["input_glm_granules_missing"]), extra=json.loads(attrs.get("provenance", "{}")),
            )  # fmt: skip
        except (KeyError, ValueError, TypeError) as exc:
            msg = f"{self.path}: not a grid file ltgcast wrote ({type(exc).__name__}: {exc})"
            raise ValueError(msg) from exc

    def probability(self) -> NDArray[np.float32]:
        """The whole probability grid ``[H, W]``, NaN where missing."""
        var = self._var("probability")
        var.set_auto_maskandscale(True)
        try:
            return np.ma.filled(var[:].astype(np.float32), np.nan)
        finally:
            var.set_auto_maskandscale(False)

    def has_underlay(self) -> bool:
        """Whether the grid carries the infrared ``underlay`` (grids written before it do not)."""
        return UNDERLAY_VARIABLE in self._ds.variables

    def underlay(self) -> NDArray[np.float32] | None:
        """The band-13 brightness temperature ``[H, W]`` in K (NaN where missing), or ``None`` without one."""
        if not self.has_underlay():
            return None
        var = self._ds.variables[UNDERLAY_VARIABLE]
        var.set_auto_maskandscale(True)
        try:
            return np.ma.filled(var[:].astype(np.float32), np.nan)
        finally:
            var.set_auto_maskandscale(False)

    def flashes(self) -> dict[str, NDArray[np.float64]]:
        """The GLM flashes stored with the grid; empty arrays when it has none."""
        variables = self._ds.variables
        return {
            key: np.asarray(variables[name][:], np.float64) if name in variables else np.zeros(0, np.float64)
            for key, name in FLASH_VARIABLES.items()
        }


def load_grid(path: Path) -> tuple[NDArray[np.float32], FixedGrid, GridMeta]:
    """A written grid whole: probability ``[H, W]`` (NaN where missing), its fixed grid and its metadata.

    What a grid store needs to put the grid again elsewhere (the Redis back-fill).
    ``OSError`` or ``ValueError`` when the file is not a grid ltgcast wrote.
    """
    with GridFile(path) as grid:
        return grid.probability(), grid.geometry(), grid.meta()


def read_geometry(path: Path) -> FixedGrid:
    """The fixed grid of a written grid file (from ``x``, ``y`` and ``goes_imager_projection``)."""
    with GridFile(path) as grid:
        return grid.geometry()


def read_attributes(path: Path) -> dict[str, Any]:
    """A written grid's global attributes with its ``valid_time``, ``forecast_reference_time`` and ``shape``.

    Reads no probabilities (:meth:`GridFile.attributes`).
    """
    with GridFile(path) as grid:
        return grid.attributes()


def read_underlay(path: Path) -> NDArray[np.float32] | None:
    """The infrared underlay of a written grid in K (NaN where missing); ``None`` when it was written without one."""
    with GridFile(path) as grid:
        return grid.underlay()


def read_point(path: Path, row: int, col: int) -> float | None:
    """The probability at pixel ``(row, col)`` of a written grid, ``None`` where missing; reads one value."""
    with GridFile(path) as grid:
        return grid.point(row, col)


def read_flashes(path: Path) -> dict[str, NDArray[np.float64]]:
    """The GLM flashes written with a grid: ``lat``, ``lon`` (degrees) and ``time`` (s since 1970), float64 ``[N]``.

    Empty arrays when the grid was written without flashes (older grid files too).
    """
    with GridFile(path) as grid:
        return grid.flashes()
