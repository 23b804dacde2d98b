"""The file grid store: one CF NetCDF per grid under ``ROOT/<sector>/<YYYY-MM-DD>/<grid_id>.nc``.

Grid ids are ``<satellite>_<sector>_<YYYYmmddTHHMMSSZ>_<model>-v<version>``
(:class:`serve.gridfile.GridMeta`); a grid written again under the same id
replaces the file atomically, so replaying a frame never makes a second grid.
Every lookup parses the id against that grammar first, so no request can name a
path outside the store.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ingest.events import SECTORS, GridKey, GridView
from ingest.geometry import FixedGrid
from serve.gridfile import FlashArrays, GridMeta, write_grid

DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class StoredGrid(GridView):
    """A grid in the store: its key and its file (a view of :class:`~ingest.events.GridKey`)."""

    grid: GridKey
    path: Path

    @property
    def scan_start(self) -> datetime:
        """The frame's scan start (to the second)."""
        return self.grid.scan_start


def check_sector(sector: str) -> str:
    """``sector`` when it is an ABI sector; ``ValueError`` listing the valid ones otherwise.

    >>> check_sector("M3")
    Traceback (most recent call last):
    ...
    ValueError: sector must be one of C, F, M1, M2; found 'M3'
    """
    if sector not in SECTORS:
        msg = f"sector must be one of {', '.join(SECTORS)}; found {sector!r}"
        raise ValueError(msg)
    return sector


def parse_grid_id(grid_id: str) -> GridKey:
    """The key a grid id names; ``ValueError`` naming the expected form otherwise (:meth:`GridKey.parse`).

    >>> parse_grid_id("G19_M1_20240615T200024Z_lightning-v3").model_version
    3
    """
    return GridKey.parse(grid_id)


def _day_within(name: str, first: date, last: date | None) -> bool:
    """Whether a ``YYYY-MM-DD`` day folder lies in ``[first, last]``; other names never do."""
    try:
        day = datetime.strptime(name, "%Y-%m-%d").replace(tzinfo=UTC).date()
    except ValueError:
        return False
    return first <= day and (last is None or day <= last)


class FileGridStore:
    """Grids as NetCDF files under one root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: GridKey) -> Path:
        return self.root / key.sector / f"{key.scan_start:%Y-%m-%d}" / f"{key.grid_id}.nc"

    def put(self, probability: NDArray[np.floating[Any]], grid: FixedGrid, meta: GridMeta, *,
            encoding: str = "uint8", flashes: FlashArrays | None = None) -> StoredGrid:  # fmt: skip
        """Write (or rewrite) the grid of ``meta``, with the GLM ``flashes`` it was made from when given."""
        key = meta.key
        path = write_grid(self._path(key), probability, grid, meta, encoding=encoding, flashes=flashes)
        return StoredGrid(key, path)

    def get(self, grid_id: str) -> StoredGrid | None:
        """The stored grid with this id, or ``None``; ``ValueError`` for an id that is not one."""
        key = GridKey.parse(grid_id)
        path = self._path(key)
        if not path.is_file():
            return None
        return StoredGrid(key, path)

    def grids(self, sector: str) -> list[StoredGrid]:
        """Every grid of a sector, oldest scan first (ties: lower model version first)."""
        return self._scan((self.root / sector).glob("*/*.nc") if (self.root / sector).is_dir() else [])

    def grids_between(self, sector: str, since: datetime, until: datetime | None = None) -> list[StoredGrid]:
        """The grids of a sector scanned in ``[since, until]`` (no upper bound when ``until`` is ``None``).

        Only the day folders that can hold such scans are listed. ``ValueError``
        for naive datetimes.
        """
        for name, when in (("since", since), ("until", until)):
            if when is not None and when.utcoffset() is None:
                msg = f"{name} must be a timezone-aware datetime; found naive {when.isoformat()}"
                raise ValueError(msg)
        folder = self.root / sector
        first = since.astimezone(UTC).date()
        last = None if until is None else until.astimezone(UTC).date()
        days = [d for d in (folder.iterdir() if folder.is_dir() else []) if _day_within(d.name, first, last)]
        found = self._scan(path for day in days for path in day.glob("*.nc"))
        return [g for g in found if since <= g.scan_start and (until is None or g.scan_start <= until)]

    def sectors(self) -> list[str]:
        """The sectors that have a folder in the store, in sector order (C, F, M1, M2)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name in SECTORS)

    @staticmethod
    def _scan(paths: Iterable[Path]) -> list[StoredGrid]:
        found = []
        for path in paths:
            try:
                key = GridKey.parse(path.stem)
            except ValueError:
                continue  # not ours (a temporary, a stray file)
            found.append(StoredGrid(key, path))
        return sorted(found, key=lambda g: g.grid.order)

    def _days(self, sector: str) -> list[Path]:
        folder = self.root / sector
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.is_dir() and DAY.match(p.name))

    def latest(self, sector: str) -> StoredGrid | None:
        """The newest grid of a sector, or ``None`` (only the newest day folder holding a grid is listed)."""
        for day in reversed(self._days(sector)):
            grids = self._scan(day.glob("*.nc"))
            if grids:
                return grids[-1]
        return None

    def prune(self, keep: timedelta) -> int:
        """Remove each sector's day folders that end more than ``keep`` before its newest grid; return how many.

        Measured from the newest grid rather than the clock, so a replay of an old archive keeps its grids.
        """
        removed = 0
        for sector in self.sectors():
            newest = self.latest(sector)
            if newest is None:
                continue
            cutoff = (newest.scan_start - keep).date()
            for day in self._days(sector):
                if date.fromisoformat(day.name) < cutoff:
                    shutil.rmtree(day)
                    removed += 1
        return removed
