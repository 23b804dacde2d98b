"""The file grid store: one CF NetCDF per grid under ``ROOT/<sector>/<YYYY-MM-DD>/<grid_id>.nc``.

Grid ids are ``<satellite>_<sector>_<YYYYmmddTHHMMSSZ>_<model>-v<version>``
(:class:`serve.stores.gridfile.GridMeta`); a grid written again under the same id
replaces the file atomically, so replaying a frame never makes a second grid.
Every lookup parses the id against that grammar first, so no request can name a
path outside the store.

The store has a clock (``now``; system time by default). A grid whose scan
starts more than ``future_tolerance_s`` after it (made from a mislabelled or
forged file before ingest refused such files) is ignored by every listing —
:meth:`~FileGridStore.grids`, :meth:`~FileGridStore.grids_between` (the API's
lists and point series) and :meth:`~FileGridStore.latest` — so it can never
become "the latest grid"; :meth:`~FileGridStore.get` still finds it by id.
Retention (:meth:`~FileGridStore.prune`) is measured from the clock and never
removes the day folder of a sector's newest grid.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from foundation.clock import FUTURE_TOLERANCE_S
from ingest.events import SECTORS, GridKey, GridView
from ingest.geometry import FixedGrid
from serve.stores.gridfile import FlashArrays, GridMeta, write_grid

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


def _day_of(name: str) -> date | None:
    """The day a ``YYYY-MM-DD`` folder name stands for, or ``None`` for any other name."""
    try:
        return datetime.strptime(name, "%Y-%m-%d").replace(tzinfo=UTC).date()
    except ValueError:
        return None


def _day_within(name: str, first: date, last: date | None) -> bool:
    """Whether a ``YYYY-MM-DD`` day folder lies in ``[first, last]``; other names never do."""
    day = _day_of(name)
    return day is not None and first <= day and (last is None or day <= last)


def _system_now() -> datetime:
    return datetime.now(UTC)


class FileGridStore:
    """Grids as NetCDF files under one root.

    Parameters
    ----------
    root
        The store's folder.
    now
        The clock (a service passes its ``clock.now``; system time by default).
    future_tolerance_s
        Grids scanned more than this many seconds after ``now()`` are ignored by every listing.
    """

    def __init__(self, root: Path, *, now: Callable[[], datetime] | None = None,
                 future_tolerance_s: float = FUTURE_TOLERANCE_S) -> None:  # fmt: skip
        self.root = root
        self.now = now or _system_now
        self.future_tolerance_s = future_tolerance_s

    def horizon(self) -> datetime:
        """The latest scan start the listings show: now plus the tolerance (later grids are from the future)."""
        return self.now() + timedelta(seconds=self.future_tolerance_s)

    def _path(self, key: GridKey) -> Path:
        return self.root / key.sector / f"{key.scan_start:%Y-%m-%d}" / f"{key.grid_id}.nc"

    def put(self, probability: NDArray[np.floating[Any]], grid: FixedGrid, meta: GridMeta, *,
            encoding: str = "uint8", flashes: FlashArrays | None = None,
            underlay: NDArray[np.floating[Any]] | None = None) -> StoredGrid:  # fmt: skip
        """Write (or rewrite) the grid of ``meta``, with the GLM ``flashes`` it was made from when given.

        ``underlay``: the scan's band-13 brightness temperature in K for the map's
        infrared layer (:func:`serve.stores.gridfile.write_grid`); left out when ``None``.
        """
        key = meta.key
        path = write_grid(self._path(key), probability, grid, meta, encoding=encoding, flashes=flashes,
                          underlay=underlay)  # fmt: skip
        return StoredGrid(key, path)

    def get(self, grid_id: str) -> StoredGrid | None:
        """The stored grid with this id, or ``None``; ``ValueError`` for an id that is not one."""
        key = GridKey.parse(grid_id)
        path = self._path(key)
        if not path.is_file():
            return None
        return StoredGrid(key, path)

    def grids(self, sector: str) -> list[StoredGrid]:
        """Every grid of a sector up to :meth:`horizon`, oldest scan first (ties: lower model version first)."""
        horizon = self.horizon()
        found = self._scan((self.root / sector).glob("*/*.nc") if (self.root / sector).is_dir() else [])
        return [g for g in found if g.scan_start <= horizon]

    def grids_between(self, sector: str, since: datetime, until: datetime | None = None) -> list[StoredGrid]:
        """The grids of a sector scanned in ``[since, until]`` (``until`` ``None``: up to :meth:`horizon`).

        Only the day folders that can hold such scans are listed; grids beyond
        :meth:`horizon` are left out whatever ``until`` says. ``ValueError`` for
        naive datetimes.
        """
        for name, when in (("since", since), ("until", until)):
            if when is not None and when.utcoffset() is None:
                msg = f"{name} must be a timezone-aware datetime; found naive {when.isoformat()}"
                raise ValueError(msg)
        folder = self.root / sector
        horizon = self.horizon()
        until = horizon if until is None else min(until, horizon)
        first, last = since.astimezone(UTC).date(), until.astimezone(UTC).date()
        days = [d for d in (folder.iterdir() if folder.is_dir() else []) if _day_within(d.name, first, last)]
        found = self._scan(path for day in days for path in day.glob("*.nc"))
        return [g for g in found if since <= g.scan_start <= until]

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
        """The newest grid of a sector up to :meth:`horizon`, or ``None``.

        Only the newest day folders are listed, down to the first holding such a grid.
        """
        horizon = self.horizon()
        for day in reversed(self._days(sector)):
            named = _day_of(day.name)
            if named is None or named > horizon.date():
                continue  # a day wholly in the future
            grids = [g for g in self._scan(day.glob("*.nc")) if g.scan_start <= horizon]
            if grids:
                return grids[-1]
        return None

    def prune(self, keep: timedelta) -> int:
        """Remove each sector's day folders that end more than ``keep`` before now; return how many.

        Measured from the clock, never from the newest grid (one grid named in 2099 would otherwise remove every
        real day). The day folder holding a sector's newest grid (up to :meth:`horizon`) is always kept, so a
        replay of an old archive keeps at least its newest day; to keep a whole replay, do not prune
        (``ltgcast run --keep-days 0``). Day folders in the future are left alone (and ignored by the listings).
        """
        cutoff = (self.now() - keep).date()
        removed = 0
        for sector in self.sectors():
            newest = self.latest(sector)
            keep_day = None if newest is None else newest.path.parent
            for day in self._days(sector):
                named = _day_of(day.name)
                if named is not None and named < cutoff and day != keep_day:
                    shutil.rmtree(day)
                    removed += 1
        return removed
