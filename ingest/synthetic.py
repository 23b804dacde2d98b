"""Synthetic GOES-R scenarios in NOAA's exact file format.

:func:`simulate` writes ABI L1b ``Rad`` band-13 frames and GLM LCFA 20-second
granules for one sector, named and laid out like NOAA's (the layouts come from
real files, see :mod:`ingest.formats`), so every reader, source and test runs
on them exactly as on real data.

The weather is simple but learnable:

* clear sky whose brightness temperature falls with latitude, with smooth
  mesoscale texture and 0.3 K sensor noise;
* drifting semi-transparent cirrus shields, cold but never electrified;
* convective cells that are born, drift with a steering wind, grow, **cool at
  the top for 10–30 minutes before their first flash**, mature (coldest tops,
  most flashes, an anvil spreading downstream), merge when they touch, and
  decay; about 30 % never get cold enough to produce lightning;
* space pixels beyond the limb in the full-disk sector.

Lightning is placed consistently with GLM's navigation: a flash at ABI pixel
``(row, col)`` of its cell is written at the latitude/longitude where that
line of sight meets the lightning ellipsoid (see :mod:`ingest.geometry`).

Cadence (ABI Mode 6): full disk every 10 min, CONUS every 5 min, mesoscale every
minute; GLM every 20 s. The same seed gives byte-identical data values.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ingest.abi import PLANCK_VARIABLES, radiance_from_brightness_temperature
from ingest.filenames import abi_filename, format_goes_time, glm_filename
from ingest.formats import load_template, write_product
from ingest.geometry import LIGHTNING_ELLIPSOID, FixedGrid, GeosProjection
from ingest.glm import TIME_OFFSET_VARIABLES

log = logging.getLogger(__name__)

J2000 = datetime(2000, 1, 1, 12, tzinfo=UTC)
FD_SIZE = 5424
FD_STEP = 5.6e-5  # rad per 2-km IR pixel
FD_EDGE = 0.151844  # rad, centre of the first full-disk pixel
GLM_SECONDS = 20.0

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


@dataclass(frozen=True)
class Slot:
    """An orbital slot: projection origin, sub-satellite longitude, CONUS origin in the full disk."""

    lon_0: float
    subpoint_lon: float
    conus_row: int
    conus_col: int


#: CONUS (1500 × 2500) is a fixed block of the full disk, different per slot.
SLOTS = {
    "GOES-East": Slot(-75.0, -75.2, 422, 902),
    "GOES-West": Slot(-137.0, -137.2, 422, 1462),
    "GOES-Test": Slot(-89.5, -89.5, 452, 1372),
}


@dataclass(frozen=True)
class Sector:
    """An ABI scan sector: size, scene name, cadence and Mode-6 scan timing (s)."""

    code: str
    scene_id: str
    rows: int
    cols: int
    cadence_s: int
    offset_s: float
    duration_s: float
    storm_density: float  # storms alive at once per million pixels


SECTORS = {
    "F": Sector("F", "Full Disk", FD_SIZE, FD_SIZE, 600, 20.3, 579.6, 3.0),
    "C": Sector("C", "CONUS", 1500, 2500, 300, 77.8, 158.5, 12.0),
    "M1": Sector("M1", "Mesoscale", 500, 500, 60, 24.5, 5.8, 100.0),
    "M2": Sector("M2", "Mesoscale", 500, 500, 60, 54.5, 5.8, 100.0),
}


@dataclass(frozen=True)
class ScenarioConfig:
    """What to simulate. ``meso_center`` (lat, lon) places a mesoscale sector."""

    out: Path
    sector: str
    start: datetime
    minutes: int
    seed: int
    satellite: str = "G19"
    slot: str = "GOES-East"
    meso_center: tuple[float, float] = (35.0, -97.5)
    glm: bool = True
    spin_up_minutes: int = 90
    cloud_top_offset_k: float = 0.0  # a regime change for drift tests: every cloud top (cirrus, anvil, core) warmer

    def __post_init__(self) -> None:
        """Reject impossible scenarios at once, naming the valid choices."""
        if self.sector not in SECTORS:
            msg = f"unknown sector {self.sector!r}; valid: {', '.join(SECTORS)}"
            raise ValueError(msg)
        if self.slot not in SLOTS:
            msg = f"unknown orbital slot {self.slot!r}; valid: {', '.join(SLOTS)}"
            raise ValueError(msg)
        if self.start.tzinfo is None:
            msg = "start must be timezone-aware UTC"
            raise ValueError(msg)
        if self.minutes <= 0:
            msg = f"minutes must be positive, got {self.minutes}"
            raise ValueError(msg)


@dataclass
class Cell:
    """One convective cell; times in minutes since it was born, position in sector pixels."""

    id: int
    row: float
    col: float
    v_row: float
    v_col: float
    growth: float  # minutes of cooling before the first flash
    mature: float
    decay: float
    t_min: float  # coldest top, K
    r_max: float  # pixels
    rate_max: float  # flashes per minute at maturity
    age: float = 0.0

    @property
    def lifetime(self) -> float:
        """Total minutes from birth to dissipation."""
        return self.growth + self.mature + self.decay

    @property
    def electrified(self) -> bool:
        """Whether the top gets cold enough (below the onset temperature) to flash."""
        return self.t_min < ONSET_K

    def core_bt(self) -> float:
        """Brightness temperature at the top of the cell now, K."""
        a, g = self.age, self.growth
        onset = max(self.t_min, ONSET_K)  # electrified cells reach ONSET_K exactly at their first flash
        if a < g:
            return BIRTH_K + (onset - BIRTH_K) * a / g
        if a < g + self.mature:
            return onset + (self.t_min - onset) * min(1.0, (a - g) / 10.0)
        return self.t_min + (DEATH_K - self.t_min) * min(1.0, (a - g - self.mature) / self.decay)

    def radius(self) -> float:
        """Core radius now, pixels."""
        return max(2.0, self.r_max * min(1.0, 0.3 + 0.7 * self.age / max(self.growth, 1.0)))

    def flash_rate(self) -> float:
        """Flashes per minute now."""
        a, g = self.age, self.growth
        if not self.electrified or a < g:
            return 0.0
        if a < g + self.mature:
            return self.rate_max * min(1.0, 0.2 + (a - g) / 5.0)
        return self.rate_max * max(0.0, 1.0 - 2.0 * (a - g - self.mature) / self.decay)


BIRTH_K = 262.0
ONSET_K = 236.0
DEATH_K = 258.0


@dataclass
class _State:
    rng: np.random.Generator
    cells: list[Cell] = field(default_factory=list)
    next_id: int = 1
    wind: tuple[float, float] = (0.0, 1.0)
    flash_id: int = 0
    group_id: int = 0
    event_id: int = 0


def sector_grid(config: ScenarioConfig) -> FixedGrid:
    """The fixed grid of the configured sector (2-km IR pixels)."""
    sector, slot = SECTORS[config.sector], SLOTS[config.slot]
    projection = GeosProjection(lon_0=slot.lon_0, height=35786023.0)
    if sector.code == "F":
        row0, col0 = 0, 0
    elif sector.code == "C":
        row0, col0 = slot.conus_row, slot.conus_col
    else:
        x, y = projection.scan_angles(config.meso_center[0], config.meso_center[1])
        if not (np.isfinite(x) and np.isfinite(y)):
            msg = f"mesoscale centre {config.meso_center} is not visible from {config.slot}"
            raise ValueError(msg)
        col0 = round((float(x) + FD_EDGE) / FD_STEP) - sector.cols // 2
        row0 = round((FD_EDGE - float(y)) / FD_STEP) - sector.rows // 2
    xs = -FD_EDGE + FD_STEP * (col0 + np.arange(sector.cols, dtype=np.float64))
    ys = FD_EDGE - FD_STEP * (row0 + np.arange(sector.rows, dtype=np.float64))
    return FixedGrid(projection, xs, ys)


def simulate(config: ScenarioConfig) -> list[Path]:
    """Write the scenario's ABI frames and GLM granules; return the paths written.

    Also writes ``truth.jsonl``: per ABI frame, the state of every cell (pixel
    position, top temperature, flash rate), for tests and demos.
    """
    config.out.mkdir(parents=True, exist_ok=True)
    world = _World(config)
    written: list[Path] = []
    with (config.out / "truth.jsonl").open("w", encoding="utf-8") as truth:
        for kind, when in world.schedule():
            if kind == "abi":
                path, cells = world.write_frame(when)
                truth.write(json.dumps({"frame": path.name, "scan_start": when.isoformat(), "cells": cells}) + "\n")
            else:
                path = world.write_granule(when)
            written.append(path)
    log.info("simulate: wrote %d files to %s", len(written), config.out)
    return written


class _World:
    """The evolving weather of one scenario and the writers of its files."""

    def __init__(self, config: ScenarioConfig) -> None:
        self.config = config
        self.sector = SECTORS[config.sector]
        self.slot = SLOTS[config.slot]
        self.grid = sector_grid(config)
        rng = np.random.default_rng(config.seed)
        speed, heading = rng.uniform(0.6, 1.8), rng.uniform(-0.5, 0.5)  # px/min, mostly eastward
        self.state = _State(rng=rng, wind=(speed * math.sin(heading), speed * math.cos(heading)))
        self.earth = self.grid.earth_mask()
        self.background = self._background(rng)
        self.cirrus = self._cirrus(rng)
        self.clock = config.start - timedelta(minutes=config.spin_up_minutes)
        self.lightning_projection = self.grid.projection.on_ellipsoid(LIGHTNING_ELLIPSOID)

    # ---- schedule -------------------------------------------------------------------------
    def schedule(self) -> Iterator[tuple[str, datetime]]:
        """(kind, time) of every file in time order, advancing the weather as it goes."""
        end = self.config.start + timedelta(minutes=self.config.minutes)
        frames = list(_frame_starts(self.sector, self.config.start, end))
        granules = [self.config.start + timedelta(seconds=GLM_SECONDS * i) for i in range(self.config.minutes * 3)]
        events = sorted([("glm", t) for t in granules] * self.config.glm + [("abi", t) for t in frames], key=_key)
        for kind, when in events:
            self._advance_to(when)
            yield kind, when

    def _advance_to(self, when: datetime) -> None:
        while self.clock + timedelta(seconds=GLM_SECONDS) <= when:
            self._step(GLM_SECONDS / 60.0)
            self.clock += timedelta(seconds=GLM_SECONDS)

    def _step(self, dt: float) -> None:
        state = self.state
        mean_life = 75.0
        rate = self.sector.storm_density * self.earth.sum() / 1e6 / mean_life
        for _ in range(state.rng.poisson(rate * dt)):
            state.cells.append(self._new_cell())
        for cell in state.cells:
            cell.age += dt
            cell.row += cell.v_row * dt
            cell.col += cell.v_col * dt
        self._merge()
        rows, cols = self.grid.shape
        state.cells = [
            c for c in state.cells if c.age < c.lifetime and -50 < c.row < rows + 50 and -50 < c.col < cols + 50
        ]

    def _new_cell(self) -> Cell:
        state, rng = self.state, self.state.rng
        mature = [c for c in state.cells if c.age > c.growth]
        if mature and rng.random() < 0.4:  # new towers near old outflow: clusters and merges
            parent = mature[rng.integers(len(mature))]
            row, col = parent.row + rng.normal(0, 2.5 * parent.r_max), parent.col + rng.normal(0, 2.5 * parent.r_max)
        else:
            earth_rows, earth_cols = np.nonzero(self.earth[::16, ::16])
            pick = rng.integers(earth_rows.size)
            row, col = earth_rows[pick] * 16 + rng.uniform(0, 16), earth_cols[pick] * 16 + rng.uniform(0, 16)
        electrified = rng.random() < 0.7
        cell = Cell(
            id=state.next_id,
            row=float(row),
            col=float(col),
            v_row=state.wind[0] + rng.normal(0, 0.25),
            v_col=state.wind[1] + rng.normal(0, 0.25),
            growth=float(rng.uniform(10, 30)),
            mature=float(rng.uniform(15, 45)),
            decay=float(rng.uniform(15, 30)),
            t_min=float(rng.uniform(195, 222) if electrified else rng.uniform(240, 252)),
            r_max=float(rng.uniform(6, 22)),
            rate_max=float(rng.uniform(2, 25) if electrified else 0.0),
        )
        state.next_id += 1
        return cell

    def _merge(self) -> None:
        cells = self.state.cells
        if len(cells) < 2:
            return
        pos = np.array([(c.row, c.col) for c in cells])
        radius = np.array([c.radius() for c in cells])
        dist = np.hypot(pos[:, None, 0] - pos[None, :, 0], pos[:, None, 1] - pos[None, :, 1])
        touching = np.triu(dist < 0.6 * (radius[:, None] + radius[None, :]), k=1)
        gone: set[int] = set()
        for i, j in zip(*np.nonzero(touching), strict=True):
            if i in gone or j in gone:
                continue
            big, small = (cells[i], cells[j]) if radius[i] >= radius[j] else (cells[j], cells[i])
            big.r_max = min(35.0, big.r_max + 0.4 * small.r_max)
            big.rate_max = big.rate_max + 0.5 * small.rate_max
            big.t_min = min(big.t_min, small.t_min)
            big.mature += 10.0
            gone.add(j if big is cells[i] else i)
        self.state.cells = [c for k, c in enumerate(cells) if k not in gone]

    # ---- fields ---------------------------------------------------------------------------
    def _background(self, rng: np.random.Generator) -> NDArray[np.float32]:
        """Clear-sky brightness temperature (K): colder poleward, with smooth texture."""
        _, lat = self.grid.lonlat()
        clear = 303.0 - 0.45 * np.abs(np.nan_to_num(lat) - 12.0)
        texture = _smooth_noise(rng, self.grid.shape, cell=48, sigma=2.5)
        field = np.clip(clear + texture, 235.0, 310.0).astype(np.float32)
        field[~self.earth] = np.nan
        return field

    def _cirrus(self, rng: np.random.Generator) -> list[dict[str, float]]:
        rows, cols = self.grid.shape
        count = max(2, int(self.sector.storm_density * rows * cols / 1e6 / 3))
        return [
            {
                "row": float(rng.uniform(0, rows)),
                "col": float(rng.uniform(0, cols)),
                "r": float(rng.uniform(30, 120)),
                "opacity": float(rng.uniform(0.35, 0.75)),
                "t": float(rng.uniform(222, 240)),
            }
            for _ in range(count)
        ]

    def render(self) -> NDArray[np.float32]:
        """Band-13 brightness temperature of the sector now, K; NaN in space."""
        bt = self.background.copy()
        minutes = (self.clock - self.config.start).total_seconds() / 60.0
        warmer = self.config.cloud_top_offset_k
        for cirrus in self.cirrus:
            row = cirrus["row"] + self.state.wind[0] * minutes
            col = cirrus["col"] + self.state.wind[1] * minutes
            _blend(bt, row, col, cirrus["r"], cirrus["t"] + warmer, cirrus["opacity"])
        for cell in self.state.cells:
            r, top = cell.radius(), cell.core_bt() + warmer
            if cell.age > cell.growth:  # anvil spreading downstream, warmer than the core
                norm = math.hypot(cell.v_row, cell.v_col) or 1.0
                _blend(bt, cell.row + cell.v_row / norm * r, cell.col + cell.v_col / norm * r, 1.8 * r, top + 14, 1.0)
            _blend(bt, cell.row, cell.col, r, top, 1.0)
        bt += self.state.rng.normal(0.0, 0.3, bt.shape).astype(np.float32)
        return bt

    # ---- writers ----------------------------------------------------------------------------
    def write_frame(self, scan_start: datetime) -> tuple[Path, list[dict[str, Any]]]:
        """Write one ABI L1b band-13 file for the scan starting at ``scan_start``."""
        bt = self.render()
        k = BAND13
        radiance = radiance_from_brightness_temperature(bt.astype(np.float64), *(k[n] for n in PLANCK_VARIABLES))
        scan_end = scan_start + timedelta(seconds=self.sector.duration_s)
        created = scan_end + timedelta(seconds=float(self.state.rng.uniform(20, 40)))
        name = abi_filename(
            sector=self.sector.code,
            mode=6,
            band=13,
            satellite=self.config.satellite,
            scan_start=scan_start,
            scan_end=scan_end,
            created=created,
        )
        path = self.config.out / name
        _write_abi(path, self, radiance, scan_start, scan_end, created)
        cells = [
            {
                "id": c.id,
                "row": round(c.row, 2),
                "col": round(c.col, 2),
                "age_min": round(c.age, 2),
                "growth_min": round(c.growth, 2),
                "core_bt": round(c.core_bt(), 2),
                "radius_px": round(c.radius(), 2),
                "flash_rate_per_min": round(c.flash_rate(), 3),
            }
            for c in self.state.cells
        ]
        return path, cells

    def write_granule(self, start: datetime) -> Path:
        """Write one 20-second GLM LCFA granule starting at ``start``."""
        end = start + timedelta(seconds=GLM_SECONDS)
        lightning = _Lightning.generate(self, start)
        created = end + timedelta(seconds=float(self.state.rng.uniform(1, 3)))
        path = self.config.out / glm_filename(
            satellite=self.config.satellite, scan_start=start, scan_end=end, created=created
        )
        _write_glm(path, self, lightning, start, end, created)
        return path


def _key(item: tuple[str, datetime]) -> tuple[datetime, int]:
    return (item[1], 0 if item[0] == "glm" else 1)


def _frame_starts(sector: Sector, start: datetime, end: datetime) -> Iterator[datetime]:
    """Mode-6 scan starts of ``sector`` in ``[start, end)``."""
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    first = math.floor((start - day).total_seconds() / sector.cadence_s)
    when = day + timedelta(seconds=first * sector.cadence_s + sector.offset_s)
    while when < end:
        if when >= start:
            yield when
        when += timedelta(seconds=sector.cadence_s)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int, sigma: float) -> NDArray[np.float64]:
    """Bilinearly interpolated coarse Gaussian noise: texture on a ``cell``-pixel scale."""
    rows, cols = shape
    coarse = rng.normal(0.0, sigma, (rows // cell + 2, cols // cell + 2))
    r = np.arange(rows) / cell
    c = np.arange(cols) / cell
    r0, c0 = r.astype(int), c.astype(int)
    fr, fc = (r - r0)[:, None], (c - c0)[None, :]
    top = coarse[r0][:, c0] * (1 - fc) + coarse[r0][:, c0 + 1] * fc
    bottom = coarse[r0 + 1][:, c0] * (1 - fc) + coarse[r0 + 1][:, c0 + 1] * fc
    return np.asarray(top * (1 - fr) + bottom * fr)


def _blend(bt: NDArray[np.float32], row: float, col: float, radius: float, top: float, opacity: float) -> None:
    """Blend a Gaussian cloud of top temperature ``top`` into ``bt`` in place (colder wins)."""
    rows, cols = bt.shape
    half = int(3 * radius) + 1
    r0, r1 = max(0, int(row) - half), min(rows, int(row) + half + 1)
    c0, c1 = max(0, int(col) - half), min(cols, int(col) + half + 1)
    if r0 >= r1 or c0 >= c1:
        return
    rr = (np.arange(r0, r1) - row)[:, None]
    cc = (np.arange(c0, c1) - col)[None, :]
    weight = (opacity * np.exp(-(rr**2 + cc**2) / (radius**2))).astype(np.float32)
    window = bt[r0:r1, c0:c1]
    np.minimum(window, window + weight * (np.float32(top) - window), out=window)


@dataclass
class _Lightning:
    """Flashes, groups and events of one granule, in physical units."""

    flash: dict[str, NDArray[Any]]
    group: dict[str, NDArray[Any]]
    event: dict[str, NDArray[Any]]

    @classmethod
    def generate(cls, world: _World, start: datetime) -> _Lightning:
        """Draw this granule's flashes from every electrified cell's current rate."""
        rng, state = world.state.rng, world.state
        rows: list[NDArray[np.float64]] = []
        for cell in state.cells:
            count = rng.poisson(cell.flash_rate() * GLM_SECONDS / 60.0)
            if count:
                spread = 0.35 * cell.radius()
                rows.append(
                    np.column_stack([cell.row + rng.normal(0, spread, count), cell.col + rng.normal(0, spread, count)])
                )
        centres = np.concatenate(rows) if rows else np.empty((0, 2))
        centre_lon, centre_lat = _pixel_to_lightning_lonlat(world, centres)
        visible = np.isfinite(centre_lon)
        return _build_hierarchy(world, centres[visible], centre_lon[visible], centre_lat[visible])


def _pixel_to_lightning_lonlat(
    world: _World, pix: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Sector pixel (row, col) → lon/lat where that line of sight meets the lightning ellipsoid."""
    x, y = world.grid.scan_angles_of(pix[:, 0], pix[:, 1])
    return world.lightning_projection.lonlat(x, y)


def _build_hierarchy(
    world: _World, centres: NDArray[np.float64], centre_lon: NDArray[np.float64], centre_lat: NDArray[np.float64]
) -> _Lightning:
    """Flashes at ``centres`` (sector pixels; their lightning-ellipsoid lon/lat given) → groups → events."""
    rng, state = world.state.rng, world.state
    n = centres.shape[0]
    t0 = np.asarray(rng.uniform(0.0, GLM_SECONDS - 1.5, n), dtype=np.float64)
    n_groups = np.minimum(1 + rng.geometric(0.15, n), 40)
    group_flash = np.repeat(np.arange(n), n_groups)
    group_time = t0[group_flash] + rng.uniform(0.0, 1.2, group_flash.size)
    n_events = 1 + rng.poisson(1.8, group_flash.size)
    event_group = np.repeat(np.arange(group_flash.size), n_events)
    pix = centres[group_flash][event_group] + rng.normal(0, 3.0, (event_group.size, 2))
    lon, lat = _pixel_to_lightning_lonlat(world, pix)
    off_disk = ~np.isfinite(lon)  # events spread past the limb fall back to their flash centre
    event_flash = group_flash[event_group]
    lon[off_disk], lat[off_disk] = centre_lon[event_flash[off_disk]], centre_lat[event_flash[off_disk]]
    energy = rng.lognormal(math.log(3e-15), 0.7, event_group.size)
    event_time = group_time[event_group] + rng.uniform(0, 0.002, event_group.size)

    def per(owner: NDArray[np.int64], size: int, values: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(np.bincount(owner, weights=values, minlength=size), dtype=np.float64)

    g_energy = per(event_group, group_flash.size, energy)
    g_lat = per(event_group, group_flash.size, energy * lat) / np.maximum(g_energy, 1e-30)
    g_lon = per(event_group, group_flash.size, energy * lon) / np.maximum(g_energy, 1e-30)
    f_energy = per(group_flash, n, g_energy)
    f_lat = per(group_flash, n, g_energy * g_lat) / np.maximum(f_energy, 1e-30)
    f_lon = per(group_flash, n, g_energy * g_lon) / np.maximum(f_energy, 1e-30)
    g_area = n_events * 70.0
    f_area = per(group_flash, n, g_area.astype(np.float64)) * 0.6 + 30.0
    t_first = np.full(n, np.inf)
    t_last = np.full(n, -np.inf)
    np.minimum.at(t_first, group_flash, group_time)
    np.maximum.at(t_last, group_flash, group_time)
    flash_ids = (state.flash_id + np.arange(n)) % 65535 + 1
    group_ids = state.group_id + np.arange(group_flash.size) + 1
    event_ids = state.event_id + np.arange(event_group.size) + 1
    state.flash_id += n
    state.group_id += group_flash.size
    state.event_id += event_group.size
    return _Lightning(
        flash={"id": flash_ids, "lat": f_lat, "lon": f_lon, "t_first": t_first, "t_last": t_last,
               "energy": f_energy, "area": f_area},
        group={"id": group_ids, "lat": g_lat, "lon": g_lon, "time": group_time, "energy": g_energy,
               "area": g_area, "parent": flash_ids[group_flash]},
        event={"id": event_ids, "lat": lat, "lon": lon, "time": event_time, "energy": energy,
               "parent": group_ids[event_group]},
    )  # fmt: skip


def _j2000(when: datetime) -> float:
    return (when - J2000).total_seconds()


def _goes_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 100_000}Z"


def _seeded_uuid(world: _World) -> str:
    return str(uuid.UUID(bytes=world.state.rng.bytes(16), version=4))


def _write_abi(
    path: Path, world: _World, radiance: NDArray[np.float64], start: datetime, end: datetime, created: datetime
) -> None:
    template = load_template("abi_l1b_rad")
    grid, slot, k = world.grid, world.slot, BAND13
    rows, cols = grid.shape
    valid = np.isfinite(radiance)
    dqf = np.where(valid, 0, 3).astype(np.int8)
    rad_good = radiance[valid]
    lon, lat = grid.projection.lonlat(grid.x[[0, -1, cols // 2, cols // 2]], grid.y[[rows // 2, rows // 2, 0, -1]])
    x_span, y_span = (float(grid.x[0]), float(grid.x[-1])), (float(grid.y[0]), float(grid.y[-1]))
    rad_range = np.array([k["add_offset"], k["add_offset"] + 4094 * k["scale_factor"]], dtype=np.float32)
    globals_ = {
        "dataset_name": path.name,
        "orbital_slot": world.config.slot,
        "platform_ID": world.config.satellite,
        "scene_id": world.sector.scene_id,
        "timeline_id": "ABI Mode 6",
        "production_site": "WCDAS",
        "date_created": _goes_time(created),
        "time_coverage_start": _goes_time(start),
        "time_coverage_end": _goes_time(end),
        "id": _seeded_uuid(world),
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
        "missing_pixel_count": int((~valid & world.earth).sum()),
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
            "input_ABI_L0_data": f"OR_ABI-L0-{world.sector.code[0]}-M6_{world.config.satellite}"
            f"_s{format_goes_time(start)}_e{format_goes_time(end)}_c*.nc"},
        **{name: {"valid_range": rad_range} for name in (
            "min_radiance_value_of_valid_pixels", "max_radiance_value_of_valid_pixels",
            "mean_radiance_value_of_valid_pixels")},
    }  # fmt: skip
    write_product(path, template, dimensions={"y": rows, "x": cols}, global_attrs=globals_, values=values, attrs=attrs)


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


def _write_glm(path: Path, world: _World, ltg: _Lightning, start: datetime, end: datetime, created: datetime) -> None:
    template = load_template("glm_l2_lcfa")
    slot = world.slot
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
        "input_GLM_L0_data": f"OR_GLM-L0_{world.config.satellite}_s{format_goes_time(start)}"
        f"_e{format_goes_time(end)}_c*.nc"
    }
    globals_ = {
        "dataset_name": path.name,
        "orbital_slot": world.config.slot,
        "platform_ID": world.config.satellite,
        "production_site": "WCDAS",
        "date_created": _goes_time(created),
        "time_coverage_start": _goes_time(start),
        "time_coverage_end": _goes_time(end),
        "id": _seeded_uuid(world),
    }
    dims = {"number_of_flashes": f["id"].size, "number_of_groups": g["id"].size, "number_of_events": e["id"].size}
    write_product(path, template, dimensions=dims, global_attrs=globals_, values=values, attrs=attrs)
