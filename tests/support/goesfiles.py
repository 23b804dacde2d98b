"""Write small, real-format GOES-R files into a test's tmp_path.

Layouts come from the NOAA templates in ingest/formats; only the values the
test cares about are set, so each test states its known answer explicitly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np

from ingest.abi import PLANCK_VARIABLES
from ingest.filenames import abi_filename, glm_filename
from ingest.formats import load_template, write_product
from ingest.glm import TIME_OFFSET_VARIABLES
from ingest.synthetic import BAND13, J2000

START = datetime(2024, 6, 15, 18, 1, 17, 800000, tzinfo=UTC)
STEP = 5.6e-5


def write_abi_l1b(
    directory: Path,
    radiance: np.ndarray,
    *,
    dqf: np.ndarray | None = None,
    x0: float = -0.02,
    y0: float = 0.09,
    band: int = 13,
    band_id: int | None = None,
    platform: str = "G16",
    lon_0: float = -75.0,
    kappa0: float = np.nan,
    sector: str = "C",
    start: datetime = START,
    drop: tuple[str, ...] = (),
) -> Path:
    """An ABI L1b file whose ``Rad`` (physical radiance) and ``DQF`` are exactly those given."""
    rows, cols = radiance.shape
    end = start + timedelta(seconds=158.5)
    path = directory / abi_filename(
        sector=sector, mode=6, band=band, satellite=platform, scan_start=start, scan_end=end, created=end
    )
    template = load_template("abi_l1b_rad")
    if drop:
        template = {**template, "variables": [v for v in template["variables"] if v["name"] not in drop]}
    values: dict[str, Any] = {
        "Rad": radiance,
        "DQF": np.zeros(radiance.shape, np.int8) if dqf is None else dqf,
        "x": x0 + STEP * np.arange(cols),
        "y": y0 - STEP * np.arange(rows),
        "band_id": [band if band_id is None else band_id],
        "kappa0": kappa0,
        "t": (start - J2000).total_seconds(),
        **{k: BAND13[k] for k in PLANCK_VARIABLES},
    }
    attrs: dict[str, dict[str, Any]] = {
        "Rad": {"scale_factor": np.float32(BAND13["scale_factor"]), "add_offset": np.float32(BAND13["add_offset"])},
        "x": {"scale_factor": np.float32(STEP), "add_offset": np.float32(x0)},
        "y": {"scale_factor": np.float32(-STEP), "add_offset": np.float32(y0)},
        "goes_imager_projection": {"longitude_of_projection_origin": np.float64(lon_0)},
    }
    write_product(
        path,
        template,
        dimensions={"y": rows, "x": cols},
        global_attrs={"platform_ID": platform, "dataset_name": path.name, "orbital_slot": "GOES-East"},
        values=values,
        attrs=attrs,
    )
    return path


def write_glm(
    directory: Path,
    *,
    lat: list[float],
    lon: list[float],
    offsets_s: list[float],
    encoding: str = "2020",
    start: datetime = datetime(2024, 6, 15, 18, 2, tzinfo=UTC),
    platform: str = "G16",
    area_km2: float = 300.0,
    energy_j: float = 5e-15,
    flash_count: int | None = None,
    unsigned_attr: str | None = "keep",
) -> Path:
    """A GLM granule with one group and one event per flash at the given places and times.

    ``encoding='2018'`` writes signed int16 × 2 ms offsets and areas in km²;
    ``'2020'`` the unsigned ×3.814756e-4 − 5 s offsets and areas in m².
    ``unsigned_attr='drop'`` removes ``_Unsigned`` from the time offsets,
    ``'add'`` declares it where the values are signed.
    """
    end = start + timedelta(seconds=20)
    path = directory / glm_filename(satellite=platform, scan_start=start, scan_end=end, created=end)
    n = len(lat)
    ids = np.arange(1, n + 1)
    t = np.asarray(offsets_s, dtype=np.float64)
    stamp = f"{start:%Y-%m-%d %H:%M:%S}.000"
    if encoding == "2018":
        time_attrs: dict[str, Any] = {
            "scale_factor": np.float32(2.0),
            "add_offset": np.float32(0.0),
            "units": f"milliseconds since {stamp}",
            "_Unsigned": None,
        }
        scale = 1000.0
        area_scale = 1.0
        area_attrs = {"units": "km2", "scale_factor": np.float32(0.15163901), "add_offset": np.float32(63.095734)}
    else:
        time_attrs = {"units": f"seconds since {stamp}"}
        scale = 1.0
        area_scale = 1e6
        area_attrs = {"units": "m2"}
    values: dict[str, Any] = {name: t * scale for name in TIME_OFFSET_VARIABLES}
    values |= {
        "event_id": ids, "event_lat": lat, "event_lon": lon, "event_energy": np.full(n, energy_j / 4),
        "event_parent_group_id": ids, "group_id": ids, "group_lat": lat, "group_lon": lon,
        "group_area": np.full(n, area_km2 * area_scale), "group_energy": np.full(n, energy_j / 2),
        "group_parent_flash_id": ids, "group_quality_flag": np.zeros(n),
        "flash_id": ids, "flash_lat": lat, "flash_lon": lon, "flash_area": np.full(n, area_km2 * area_scale),
        "flash_energy": np.full(n, energy_j), "flash_quality_flag": np.zeros(n),
        "product_time": (start - J2000).total_seconds(),
        "flash_count": (n if flash_count is None else flash_count) or np.nan,
        "group_count": n or np.nan, "event_count": n or np.nan,
    }  # fmt: skip
    attrs = {name: time_attrs for name in TIME_OFFSET_VARIABLES} | {"flash_area": area_attrs, "group_area": area_attrs}
    write_product(
        path,
        load_template("glm_l2_lcfa"),
        dimensions={"number_of_flashes": n, "number_of_groups": n, "number_of_events": n},
        global_attrs={"platform_ID": platform, "dataset_name": path.name},
        values=values,
        attrs=attrs,
    )
    if unsigned_attr in ("add", "drop"):  # change the declaration after packing, as the faulty files did
        with netCDF4.Dataset(path, "a") as ds:
            for name in TIME_OFFSET_VARIABLES:
                if unsigned_attr == "add":
                    ds[name].setncattr("_Unsigned", "true")
                else:
                    ds[name].delncattr("_Unsigned")
    return path
