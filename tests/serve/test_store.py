"""The file grid store: idempotent ids, newest first, no path outside the root."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ingest.geometry import FixedGrid, GeosProjection
from serve.gridfile import GridMeta, read_grid
from serve.store import FileGridStore


def small_grid() -> FixedGrid:
    step = 5.6e-5
    return FixedGrid(
        GeosProjection(lon_0=-75.0, height=35786023.0), 0.01 + step * np.arange(6), 0.05 - step * np.arange(4)
    )


def meta(minute: int, version: int = 1) -> GridMeta:
    t = datetime(2024, 6, 15, 20, minute, 24, tzinfo=UTC)
    return GridMeta("G19", "M1", t, t + timedelta(minutes=30), "lightning", version, f"frame{minute}.nc")


def test_a_replayed_grid_replaces_the_first_and_latest_is_the_newest(tmp_path: Path) -> None:
    store = FileGridStore(tmp_path)
    grid = small_grid()
    first = store.put(np.full((4, 6), 0.2, np.float32), grid, meta(1))
    again = store.put(np.full((4, 6), 0.3, np.float32), grid, meta(1))
    assert first.path == again.path
    assert len(list(tmp_path.rglob("*.nc"))) == 1
    assert float(read_grid(again.path)[0][0, 0]) == pytest.approx(0.3)
    store.put(np.zeros((4, 6), np.float32), grid, meta(3))
    store.put(np.zeros((4, 6), np.float32), grid, meta(2))
    (tmp_path / "M1" / "2024-06-15" / "notes.nc").write_text("not a grid")
    assert [g.scan_start.minute for g in store.grids("M1")] == [1, 2, 3]
    latest = store.latest("M1")
    assert latest is not None
    assert latest.grid_id == "G19_M1_20240615T200324Z_lightning-v1"
    assert store.latest("C") is None
    assert store.get("G19_M1_20240615T200224Z_lightning-v1") is not None
    assert store.get("G19_M1_20240615T200224Z_lightning-v9") is None


def test_ids_that_are_not_grid_ids_never_become_paths(tmp_path: Path) -> None:
    store = FileGridStore(tmp_path / "store")
    for bad in ("../secret", "G19_M1_20240615T200224Z_lightning-v1/../../x", "G19_M1_2024_lightning-v1", ""):
        with pytest.raises(ValueError, match="grid id must look like"):
            store.get(bad)


def test_grids_between_picks_scans_in_the_window_across_days(tmp_path: Path) -> None:
    store = FileGridStore(tmp_path)
    grid = small_grid()
    late = datetime(2024, 6, 15, 23, 58, 24, tzinfo=UTC)
    for when in (late, late + timedelta(minutes=4), late + timedelta(days=1)):  # 23:58, 00:02 and 23:58 next day
        store.put(np.zeros((4, 6), np.float32), grid, GridMeta("G19", "M1", when, when, "lightning", 1, "f.nc"))
    store.put(np.zeros((4, 6), np.float32), grid, meta(1))  # 20:01 the first day
    (tmp_path / "M1" / "notes").mkdir()
    window = store.grids_between("M1", late, late + timedelta(minutes=4))  # both ends inclusive
    assert [g.scan_start for g in window] == [late, late + timedelta(minutes=4)]
    after = store.grids_between("M1", late + timedelta(seconds=1))
    assert [g.scan_start for g in after] == [late + timedelta(minutes=4), late + timedelta(days=1)]
    assert store.grids_between("C", late) == []
    assert store.sectors() == ["M1"]
    assert FileGridStore(tmp_path / "absent").sectors() == []
    with pytest.raises(ValueError, match="until must be a timezone-aware datetime"):
        store.grids_between("M1", late, datetime(2024, 6, 16))  # noqa: DTZ001


def test_prune_keeps_the_days_near_the_newest_grid(tmp_path: Path) -> None:
    store = FileGridStore(tmp_path)
    grid = small_grid()
    for day in (1, 2, 4):
        t = datetime(2024, 6, day, 23, 50, tzinfo=UTC)
        store.put(np.zeros((4, 6), np.float32), grid, GridMeta("G19", "M1", t, t + timedelta(minutes=30),
                                                               "lightning", 1, f"f{day}.nc"))  # fmt: skip
    (tmp_path / "M1" / "notes").mkdir()
    assert store.prune(timedelta(days=1)) == 2  # June 1 and 2 end before June 3 23:50
    assert [g.scan_start.day for g in store.grids("M1")] == [4]
    assert (tmp_path / "M1" / "notes").is_dir()
    assert store.latest("M1") is not None
    assert store.prune(timedelta(days=1)) == 0
