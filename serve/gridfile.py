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

Writes go to ``PATH.tmp`` and are renamed into place, so readers never see half
a file, and writing the same grid again replaces it (idempotent).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
from numpy.typing import NDArray

from ingest.geometry import FixedGrid
from ingest.ncio import iso_utc

EPOCH = "seconds since 1970-01-01 00:00:00"
ENCODINGS = ("uint8", "float32")


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
    def grid_id(self) -> str:
        """The idempotency key: satellite, sector, scan start and model version."""
        stamp = self.scan_start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        return f"{self.satellite}_{self.sector}_{stamp}_{self.model_name}-v{self.model_version}"


def write_grid(path: Path, probability: NDArray[np.floating[Any]], grid: FixedGrid, meta: GridMeta, *,
               encoding: str = "uint8") -> Path:  # fmt: skip
    """Write one probability grid; return ``path``."""
    if encoding not in ENCODINGS:
        msg = f"unknown probability encoding {encoding!r}; valid: {', '.join(ENCODINGS)}"
        raise ValueError(msg)
    if probability.shape != grid.shape:
        msg = f"probability shape {probability.shape} does not match the grid {grid.shape}"
        raise ValueError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    p = np.asarray(probability, np.float32)
    with netCDF4.Dataset(temporary, "w", format="NETCDF4") as ds:
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
        if encoding == "uint8":
            var = ds.createVariable("probability", "u1", ("y", "x"), zlib=True, complevel=4, fill_value=np.uint8(255))
            var.set_auto_maskandscale(False)
            packed = np.where(np.isfinite(p), np.rint(np.clip(p, 0, 1) * 100), 255).astype(np.uint8)
            var[:] = packed
            var.setncatts({"scale_factor": np.float32(0.01), "add_offset": np.float32(0.0),
                           "valid_range": np.array([0, 100], np.uint8)})  # fmt: skip
        else:
            var = ds.createVariable("probability", "f4", ("y", "x"), zlib=True, complevel=4, fill_value=np.nan)
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
    os.replace(temporary, path)
    return path


def read_grid(path: Path) -> tuple[NDArray[np.float32], dict[str, Any]]:
    """The probability ``[H, W]`` (NaN where missing) and the global attributes of a written grid."""
    with netCDF4.Dataset(path) as ds:
        var = ds.variables["probability"]
        var.set_auto_maskandscale(True)
        values = np.ma.filled(var[:].astype(np.float32), np.nan)
        return values, {k: ds.getncattr(k) for k in ds.ncattrs()}
