"""NOAA's files for the synthetic scenarios: names, ABI L1b and GLM L2 LCFA layouts, time encodings.

:class:`NoaaWriter` turns what :mod:`ingest.synthetic.weather` made (a band-13 brightness temperature
field, a granule's flashes, groups and events) into files named and laid out like NOAA's (the layouts come
from real files, see :mod:`ingest.formats`): band-13 radiance packed as NOAA packs it, NOAA's global
attributes, J2000 times. It draws no random numbers: creation times and file ids come from the caller.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ingest.abi import PLANCK_VARIABLES, radiance_from_brightness_temperature
from ingest.filenames import abi_filename, format_goes_time, glm_filename
from ingest.formats import load_template, write_product
from ingest.geometry import FixedGrid
from ingest.glm import TIME_OFFSET_VARIABLES
from ingest.synthetic.scenario import FD_STEP, SECTORS, SLOTS, ScenarioConfig, Slot
from ingest.synthetic.weather import Lightning

J2000 = datetime(2000, 1, 1, 12, tzinfo=UTC)

#: Band 13 (10.3 µm) constants of the GOES-16 ABI as carried by NOAA's files, and its packing.
BAND13 = {
    "planck_fk1": 10803.3,
    "planck_fk2": 1392.74,
    "planck_bc1": 0.0755,
    "planck_bc2": 0.99975,
    "wavelength_um": 10.33,
    "scale_factor": 0.15307,
    "add_offset": -1.6443,
}


def _j2000(when: datetime) -> float:
    return (when - J2000).total_seconds()


def _goes_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 100_000}Z"


def seeded_uuid(rng: np.random.Generator) -> str:
    """A version-4 UUID drawn from ``rng``: a file's ``id`` attribute, the same for the same seed."""
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


class NoaaWriter:
    """Writes one scenario's ABI and GLM files into ``config.out``, named and laid out like NOAA's.

    ``grid`` is the sector's fixed grid and ``earth`` its earth-disk mask (``[H, W]``), both as the
    weather model holds them.
    """

    def __init__(self, config: ScenarioConfig, grid: FixedGrid, earth: NDArray[np.bool_]) -> None:
        self.config = config
        self.sector = SECTORS[config.sector]
        self.slot = SLOTS[config.slot]
        self.grid = grid
        self.earth = earth

    def abi(self, bt: NDArray[np.float32], start: datetime, end: datetime, created: datetime, file_id: str) -> Path:
        """Write one ABI L1b band-13 ``Rad`` file of ``bt`` (brightness temperature, K, NaN in space); return it."""
        k = BAND13
        radiance = radiance_from_brightness_temperature(bt.astype(np.float64), *(k[n] for n in PLANCK_VARIABLES))
        name = abi_filename(
            sector=self.sector.code,
            mode=6,
            band=13,
            satellite=self.config.satellite,
            scan_start=start,
            scan_end=end,
            created=created,
        )
        path = self.config.out / name
        self._write_abi(path, radiance, start, end, created, file_id)
        return path

    def glm(self, ltg: Lightning, start: datetime, end: datetime, created: datetime, file_id: str) -> Path:
        """Write one GLM L2 LCFA granule of ``ltg``'s flashes, groups and events; return its path."""
        path = self.config.out / glm_filename(
            satellite=self.config.satellite, scan_start=start, scan_end=end, created=created
        )
        self._write_glm(path, ltg, start, end, created, file_id)
        return path

    def _write_abi(
        self, path: Path, radiance: NDArray[np.float64], start: datetime, end: datetime, created: datetime, file_id: str
    ) -> None:
        template = load_template("abi_l1b_rad")
        grid, slot, k = self.grid, self.slot, BAND13
        rows, cols = grid.shape
        valid = np.isfinite(radiance)
        dqf = np.where(valid, 0, 3).astype(np.int8)
        rad_good = radiance[valid]
        lon, lat = grid.projection.lonlat(grid.x[[0, -1, cols // 2, cols // 2]], grid.y[[rows // 2, rows // 2, 0, -1]])
        x_span, y_span = (float(grid.x[0]), float(grid.x[-1])), (float(grid.y[0]), float(grid.y[-1]))
        rad_range = np.array([k["add_offset"], k["add_offset"] + 4094 * k["scale_factor"]], dtype=np.float32)
        globals_ = {
            "dataset_name": path.name,
            "orbital_slot": self.config.slot,
            "platform_ID": self.config.satellite,
            "scene_id": self.sector.scene_id,
            "timeline_id": "ABI Mode 6",
            "production_site": "WCDAS",
            "date_created": _goes_time(created),
            "time_coverage_start": _goes_time(start),
            "time_coverage_end": _goes_time(end),
            "id": file_id,
            "summary": "Single emissive band ABI L1b Radiance Products are digital maps of outgoing radiance values "
            "at the top of the atmosphere for IR bands.",
        }
        pixel = f"{FD_STEP:.6f}"
        values: dict[str, Any] = {
            "Rad": radiance,
            "DQF": dqf,
            "t": _j2000(start + (end - start) / 2),
            "y": grid.y,
            "x": grid.x,
            "time_bounds": [_j2000(start), _j2000(end)],
            "y_image": float(np.mean(y_span)),
            "y_image_bounds": [y_span[0] + FD_STEP / 2, y_span[1] - FD_STEP / 2],
            "x_image": float(np.mean(x_span)),
            "x_image_bounds": [x_span[0] - FD_STEP / 2, x_span[1] + FD_STEP / 2],
            "nominal_satellite_subpoint_lon": slot.subpoint_lon,
            "band_id": [13],
            "band_wavelength": [k["wavelength_um"]],
            "esun": np.nan,
            "kappa0": np.nan,
            **{name: k[name] for name in PLANCK_VARIABLES},
            "valid_pixel_count": int(valid.sum()),
            "missing_pixel_count": int((~valid & self.earth).sum()),
            "min_radiance_value_of_valid_pixels": float(rad_good.min()) if rad_good.size else np.nan,
            "max_radiance_value_of_valid_pixels": float(rad_good.max()) if rad_good.size else np.nan,
            "mean_radiance_value_of_valid_pixels": float(rad_good.mean()) if rad_good.size else np.nan,
            "std_dev_radiance_value_of_valid_pixels": float(rad_good.std()) if rad_good.size else np.nan,
            "earth_sun_distance_anomaly_in_AU": 1.0,
        }
        attrs: dict[str, dict[str, Any]] = {
            "Rad": {"scale_factor": np.float32(k["scale_factor"]), "add_offset": np.float32(k["add_offset"]),
                    "resolution": f"y: {pixel} rad x: {pixel} rad"},
            "DQF": {"percent_good_pixel_qf": np.float32(valid.mean()),
                    "percent_no_value_pixel_qf": np.float32(1 - valid.mean())},
            "y": {"scale_factor": np.float32(-FD_STEP), "add_offset": np.float32(grid.y[0])},
            "x": {"scale_factor": np.float32(FD_STEP), "add_offset": np.float32(grid.x[0])},
            "goes_imager_projection": {"longitude_of_projection_origin": np.float64(slot.lon_0)},
            "geospatial_lat_lon_extent": _extent(lat, lon, slot),
            "algorithm_dynamic_input_data_container": {
                "input_ABI_L0_data": f"OR_ABI-L0-{self.sector.code[0]}-M6_{self.config.satellite}"
                f"_s{format_goes_time(start)}_e{format_goes_time(end)}_c*.nc"},
            **{name: {"valid_range": rad_range} for name in (
                "min_radiance_value_of_valid_pixels", "max_radiance_value_of_valid_pixels",
                "mean_radiance_value_of_valid_pixels")},
        }  # fmt: skip
        write_product(
            path, template, dimensions={"y": rows, "x": cols}, global_attrs=globals_, values=values, attrs=attrs
        )

    def _write_glm(
        self, path: Path, ltg: Lightning, start: datetime, end: datetime, created: datetime, file_id: str
    ) -> None:
        template = load_template("glm_l2_lcfa")
        slot = self.slot
        units = f"seconds since {start:%Y-%m-%d %H:%M:%S}.000"
        f, g, e = ltg.flash, ltg.group, ltg.event
        values: dict[str, Any] = {
            "event_id": e["id"], "event_time_offset": e["time"], "event_lat": e["lat"], "event_lon": e["lon"],
            "event_energy": e["energy"], "event_parent_group_id": e["parent"],
            "group_id": g["id"], "group_time_offset": g["time"], "group_frame_time_offset": g["time"],
            "group_lat": g["lat"], "group_lon": g["lon"], "group_area": g["area"] * 1e6, "group_energy": g["energy"],
            "group_parent_flash_id": g["parent"], "group_quality_flag": np.zeros(g["id"].size),
            "flash_id": f["id"], "flash_time_offset_of_first_event": f["t_first"],
            "flash_time_offset_of_last_event": f["t_last"], "flash_frame_time_offset_of_first_event": f["t_first"],
            "flash_frame_time_offset_of_last_event": f["t_last"], "flash_lat": f["lat"], "flash_lon": f["lon"],
            "flash_area": f["area"] * 1e6, "flash_energy": f["energy"], "flash_quality_flag": np.zeros(f["id"].size),
            "product_time": _j2000(start), "product_time_bounds": [_j2000(start), _j2000(end)],
            # NOAA writes fill, not 0, in the counts of an empty granule (valid_range starts at 1)
            **{f"{k}_count": v["id"].size or np.nan for k, v in (("event", e), ("group", g), ("flash", f))},
            "nominal_satellite_subpoint_lon": slot.subpoint_lon, "lon_field_of_view": slot.lon_0,
            "lon_field_of_view_bounds": [slot.lon_0 - 64.4, slot.lon_0 + 64.0],
            "yaw_flip_flag": 0,
        }  # fmt: skip
        attrs: dict[str, dict[str, Any]] = {name: {"units": units} for name in TIME_OFFSET_VARIABLES}
        attrs["event_lon"] = {"add_offset": np.float32(slot.lon_0 - 66.56)}
        attrs["algorithm_dynamic_input_data_container"] = {
            "input_GLM_L0_data": f"OR_GLM-L0_{self.config.satellite}_s{format_goes_time(start)}"
            f"_e{format_goes_time(end)}_c*.nc"
        }
        globals_ = {
            "dataset_name": path.name,
            "orbital_slot": self.config.slot,
            "platform_ID": self.config.satellite,
            "production_site": "WCDAS",
            "date_created": _goes_time(created),
            "time_coverage_start": _goes_time(start),
            "time_coverage_end": _goes_time(end),
            "id": file_id,
        }
        dims = {"number_of_flashes": f["id"].size, "number_of_groups": g["id"].size, "number_of_events": e["id"].size}
        write_product(path, template, dimensions=dims, global_attrs=globals_, values=values, attrs=attrs)


def _extent(lat: NDArray[np.float64], lon: NDArray[np.float64], slot: Slot) -> dict[str, Any]:
    def f(v: float) -> np.float32:
        return np.float32(v if np.isfinite(v) else -999.0)

    return {
        "geospatial_westbound_longitude": f(lon[0]),
        "geospatial_eastbound_longitude": f(lon[1]),
        "geospatial_northbound_latitude": f(lat[2]),
        "geospatial_southbound_latitude": f(lat[3]),
        "geospatial_lon_nadir": np.float32(slot.lon_0),
    }
