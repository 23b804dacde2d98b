"""Synthetic GOES-R scenarios in NOAA's exact file format.

:func:`simulate` writes ABI L1b ``Rad`` band-13 frames and GLM LCFA 20-second
granules for one sector, named and laid out like NOAA's (the layouts come from
real files, see :mod:`ingest.formats`), so every reader, source and test runs
on them exactly as on real data.

One module per job:

* :mod:`ingest.synthetic.scenario`: what to simulate (orbital slots, ABI sectors
  and their fixed grids, :class:`ScenarioConfig`);
* :mod:`ingest.synthetic.weather`: the weather model (clouds, storm cells, steering
  winds, flash rates, the flash/group/event hierarchy), with the ranges it covers
  and their sources;
* :mod:`ingest.synthetic.writer`: NOAA's files (names, ABI L1b and GLM LCFA
  layouts, band-13 packing, time encodings);
* this module: the driver, which advances the weather on the ABI Mode-6 and GLM
  schedules and hands each frame and granule to the writer.

Cadence (ABI Mode 6): full disk every 10 min, CONUS every 5 min, mesoscale every
minute; GLM every 20 s. The same seed gives byte-identical data values.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ingest.synthetic.scenario import (
    FD_EDGE,
    FD_SIZE,
    FD_STEP,
    GLM_SECONDS,
    SECTORS,
    SLOTS,
    ScenarioConfig,
    Sector,
    Slot,
    sector_grid,
)
from ingest.synthetic.weather import Cell, Lightning, Weather
from ingest.synthetic.writer import BAND13, J2000, NoaaWriter, seeded_uuid

__all__ = [
    "BAND13",
    "FD_EDGE",
    "FD_SIZE",
    "FD_STEP",
    "GLM_SECONDS",
    "J2000",
    "SECTORS",
    "SLOTS",
    "Cell",
    "ScenarioConfig",
    "Sector",
    "Slot",
    "sector_grid",
    "simulate",
]

log = logging.getLogger(__name__)


def simulate(config: ScenarioConfig) -> list[Path]:
    """Write the scenario's ABI frames and GLM granules; return the paths written.

    Also writes ``truth.jsonl``: per ABI frame, the state of every cell (pixel
    position, top temperature, flash rate), for tests and demos.
    """
    config.out.mkdir(parents=True, exist_ok=True)
    scenario = _Scenario(config)
    written: list[Path] = []
    with (config.out / "truth.jsonl").open("w", encoding="utf-8") as truth:
        for kind, when in scenario.schedule():
            if kind == "abi":
                path, cells = scenario.write_frame(when)
                truth.write(json.dumps({"frame": path.name, "scan_start": when.isoformat(), "cells": cells}) + "\n")
            else:
                path = scenario.write_granule(when)
            written.append(path)
    log.info("simulate: wrote %d files to %s", len(written), config.out)
    return written


class _Scenario:
    """One scenario run: its weather, its writer, and the schedule that interleaves them.

    The weather's random stream also draws each file's creation delay and id, right after the
    weather that goes into the file, so the same seed gives the same files.
    """

    def __init__(self, config: ScenarioConfig) -> None:
        self.config = config
        self.sector = SECTORS[config.sector]
        self.weather = Weather(config)
        self.writer = NoaaWriter(config, self.weather.grid, self.weather.earth)

    def schedule(self) -> Iterator[tuple[str, datetime]]:
        """(kind, time) of every file in time order, advancing the weather as it goes."""
        end = self.config.start + timedelta(minutes=self.config.minutes)
        frames = list(_frame_starts(self.sector, self.config.start, end))
        granules = [self.config.start + timedelta(seconds=GLM_SECONDS * i) for i in range(self.config.minutes * 3)]
        events = sorted([("glm", t) for t in granules] * self.config.glm + [("abi", t) for t in frames], key=_key)
        for kind, when in events:
            self.weather.advance_to(when)
            yield kind, when

    def write_frame(self, scan_start: datetime) -> tuple[Path, list[dict[str, Any]]]:
        """Write one ABI L1b band-13 file for the scan starting at ``scan_start``; return it and the cells' truth."""
        bt = self.weather.render()
        scan_end = scan_start + timedelta(seconds=self.sector.duration_s)
        created = scan_end + timedelta(seconds=float(self.weather.rng.uniform(20, 40)))
        path = self.writer.abi(bt, scan_start, scan_end, created, seeded_uuid(self.weather.rng))
        return path, self.weather.truth()

    def write_granule(self, start: datetime) -> Path:
        """Write one 20-second GLM LCFA granule starting at ``start``."""
        end = start + timedelta(seconds=GLM_SECONDS)
        lightning = Lightning.generate(self.weather, start)
        created = end + timedelta(seconds=float(self.weather.rng.uniform(1, 3)))
        return self.writer.glm(lightning, start, end, created, seeded_uuid(self.weather.rng))


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
