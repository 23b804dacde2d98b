"""The file grid store: idempotent ids, newest first, no path outside the root, nothing from the future."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ingest.geometry import FixedGrid, GeosProjection
from serve.stores.files import FileGridStore
from serve.stores.gridfile import GridMeta, read_grid


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


def test_prune_keeps_the_days_near_the_clock(tmp_path: Path) -> None:
    store = FileGridStore(tmp_path, now=lambda: datetime(2024, 6, 4, 23, 50, tzinfo=UTC))
    grid = small_grid()
    for day in (1, 2, 4):
        t = datetime(2024, 6, day, 23, 50, tzinfo=UTC)
        store.put(np.zeros((4, 6), np.float32), grid, GridMeta("G19", "M1", t, t + timedelta(minutes=30),
                                                               "lightning", 1, f"f{day}.nc"))  # fmt: skip
    (tmp_path / "M1" / "notes").mkdir()
    assert store.prune(timedelta(days=1)) == 2  # June 1 and 2 end before June 3 23:50, a day before the clock
    assert [g.scan_start.day for g in store.grids("M1")] == [4]
    assert (tmp_path / "M1" / "notes").is_dir()
    assert store.latest("M1") is not None
    assert store.prune(timedelta(days=1)) == 0


def put_at(store: FileGridStore, when: datetime) -> None:
    meta = GridMeta("G19", "M1", when, when + timedelta(minutes=30), "lightning", 1, "f.nc")
    store.put(np.zeros((4, 6), np.float32), small_grid(), meta)


def test_a_grid_from_the_future_is_never_listed_and_never_prunes_the_real_ones(tmp_path: Path) -> None:
    store = FileGridStore(tmp_path)  # the system clock
    real = [datetime(2024, 6, 15, 20, m, 24, tzinfo=UTC) for m in (1, 2)]
    for when in real:
        put_at(store, when)
    forged = datetime(2099, 6, 15, 20, 0, 24, tzinfo=UTC)
    put_at(store, forged)
    latest = store.latest("M1")
    assert latest is not None
    assert latest.scan_start == real[-1]
    assert [g.scan_start for g in store.grids("M1")] == real
    assert [g.scan_start for g in store.grids_between("M1", real[0])] == real  # lists and point series
    assert [g.scan_start for g in store.grids_between("M1", real[0], forged)] == real
    assert store.grids_between("M1", forged) == []
    assert store.get("G19_M1_20990615T200024Z_lightning-v1") is not None  # by id it is still there
    assert store.prune(timedelta(days=7)) == 0  # the real day holds the newest real grid: kept
    assert [g.scan_start for g in store.grids("M1")] == real


def test_the_future_is_measured_from_the_stores_clock_with_a_tolerance(tmp_path: Path) -> None:
    now = datetime(2024, 6, 15, 20, 2, 30, tzinfo=UTC)
    store = FileGridStore(tmp_path, now=lambda: now)
    for minute in (1, 7, 8):  # 20:07:24 is 294 s ahead (within 300 s), 20:08:24 is 354 s ahead
        put_at(store, datetime(2024, 6, 15, 20, minute, 24, tzinfo=UTC))
    put_at(store, datetime(2024, 6, 16, 0, 0, 24, tzinfo=UTC))  # a whole day folder in the future
    latest = store.latest("M1")
    assert latest is not None
    assert latest.scan_start.minute == 7
    assert [g.scan_start.minute for g in store.grids_between("M1", now - timedelta(hours=1))] == [1, 7]
    strict = FileGridStore(tmp_path, now=lambda: now, future_tolerance_s=0.0)
    assert [g.scan_start.minute for g in strict.grids("M1")] == [1]


def test_prune_never_removes_the_newest_day_of_a_replay(tmp_path: Path) -> None:
    store = FileGridStore(tmp_path, now=lambda: datetime(2024, 6, 10, 12, 0, tzinfo=UTC))
    for day in (1, 2, 4):
        put_at(store, datetime(2024, 6, day, 23, 50, tzinfo=UTC))
    put_at(store, datetime(2099, 6, 1, tzinfo=UTC))
    (tmp_path / "M1" / "2024-99-99").mkdir()  # named like a day, but none: left alone
    assert store.prune(timedelta(days=1)) == 2  # June 1 and 2; June 4 holds the newest grid before the clock
    assert sorted(p.name for p in (tmp_path / "M1").iterdir()) == ["2024-06-04", "2024-99-99", "2099-06-01"]
    latest = store.latest("M1")
    assert latest is not None
    assert latest.scan_start.day == 4
