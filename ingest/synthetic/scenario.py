"""What a synthetic scenario is: orbital slots, ABI scan sectors, their fixed grids and :class:`ScenarioConfig`.

Cadence (ABI Mode 6): full disk every 10 min, CONUS every 5 min, mesoscale every
minute; GLM every 20 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ingest.geometry import FixedGrid, GeosProjection

FD_SIZE = 5424
FD_STEP = 5.6e-5  # rad per 2-km IR pixel
FD_EDGE = 0.151844  # rad, centre of the first full-disk pixel
GLM_SECONDS = 20.0


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
