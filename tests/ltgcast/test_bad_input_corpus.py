"""The bad-input corpus: every kind of bad file we know, generated into one spool and fed to ``ltgcast run``.

One embedded service (:class:`ltgcast.service.Service`, run in-process as tests/ltgcast/test_service.py runs it)
takes the whole corpus: each bad file must end in ``STATE/quarantine/<day>/<name>.reason.json`` with its stage
and a reason naming what was wrong, with a dead letter on the bus, and never become a grid; the good frame
dropped after them (with its GLM) must still be scored. Each case is written by the project's own writers
(``tests/support/goesfiles.py``, ``ingest.formats``, the synthetic scenario), so a case is a real-format file that is
wrong in exactly one way.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from foundation.clock import wait_until
from ingest.events import DEADLETTER_TOPIC, DeadLetterEvent
from ingest.filenames import abi_filename
from ingest.formats import load_template, write_product
from ltgcast.latency import deliver
from ltgcast.service import Service, ServiceSettings
from tests.support.goesfiles import START, write_abi_l1b
from tests.support.models import served_version

ROOT = Path(__file__).resolve().parents[2]
RADIANCE = np.full((4, 5), 100.0, np.float32)  # a valid CONUS block (G16, band 13) when nothing else is wrong


@dataclass(frozen=True)
class Case:
    """One bad file: how to make it (in the spool, or beside it), and the stage and reason it must be refused with."""

    what: str
    make: Callable[[Path, Path, int], Path]  # (spool, outside, minute) -> the path in the spool
    stage: str
    reason: str


def at(minute: int) -> datetime:
    """A distinct scan start for each case (its file name is its key)."""
    return START + timedelta(minutes=minute)


def truncated(spool: Path, outside: Path, minute: int) -> Path:
    whole = write_abi_l1b(outside, RADIANCE, start=at(minute))
    path = spool / whole.name
    path.write_bytes(whole.read_bytes()[:3000])
    return path


def random_bytes(spool: Path, outside: Path, minute: int) -> Path:
    path = spool / write_abi_l1b(outside, RADIANCE, start=at(minute)).name
    path.write_bytes(np.random.default_rng(minute).bytes(5000))
    return path


def empty_file(spool: Path, outside: Path, minute: int) -> Path:
    path = spool / write_abi_l1b(outside, RADIANCE, start=at(minute)).name
    path.write_bytes(b"")
    return path


def wrong_band(spool: Path, outside: Path, minute: int) -> Path:
    return write_abi_l1b(spool, RADIANCE, band_id=2, start=at(minute))  # the seed's accidental visible band


def missing_variable(spool: Path, outside: Path, minute: int) -> Path:
    return write_abi_l1b(spool, RADIANCE, drop=("Rad",), start=at(minute))


def future_dated(spool: Path, outside: Path, minute: int) -> Path:
    return write_abi_l1b(spool, RADIANCE, start=datetime(2099, 6, 15, 18, minute, 17, tzinfo=UTC))


def link_outside(spool: Path, outside: Path, minute: int) -> Path:
    target = write_abi_l1b(outside, RADIANCE, start=at(minute))  # a real frame, outside the spool
    path = spool / target.name
    path.symlink_to(target)
    return path


def link_to_passwd(spool: Path, outside: Path, minute: int) -> Path:
    path = spool / write_abi_l1b(outside, RADIANCE, start=at(minute)).name
    path.symlink_to("/etc/passwd")
    return path


def huge_declared_shape(spool: Path, outside: Path, minute: int) -> Path:
    start = at(minute)
    end = start + timedelta(seconds=158.5)
    path = spool / abi_filename(sector="C", mode=6, band=13, satellite="G16", scan_start=start, scan_end=end,
                                created=end)  # fmt: skip
    write_product(path, load_template("abi_l1b_rad"), dimensions={"y": 6000, "x": 10000},
                  global_attrs={"platform_ID": "G16", "dataset_name": path.name},
                  values={"band_id": [13]})  # declared 4 × CONUS each way; the data stay unwritten  # fmt: skip
    return path


def all_fill(spool: Path, outside: Path, minute: int) -> Path:
    return write_abi_l1b(spool, np.full((4, 5), np.nan, np.float32), start=at(minute))  # every pixel is fill


CASES = (
    Case("truncated", truncated, "decode", "cannot open as NetCDF-4"),
    Case("random bytes", random_bytes, "decode", "cannot open as NetCDF-4"),
    Case("empty file", empty_file, "decode", "cannot open as NetCDF-4"),
    Case("wrong band", wrong_band, "decode", "file name says band 13, band_id says 2"),
    Case("missing variable", missing_variable, "decode", "missing variable 'Rad'"),
    Case("future-dated", future_dated, "future", "expected at most 600 s ahead (--future-tolerance-s)"),
    Case("link to a frame outside the spool", link_outside, "spool", "is a symbolic link (to /"),
    Case("link to /etc/passwd", link_to_passwd, "spool", "is a symbolic link (to /etc/passwd)"),
    Case("huge declared Rad", huge_declared_shape, "shape", "declares shape (6000, 10000)"),
    Case("all-fill frame", all_fill, "empty", "0 of 20 earth pixels are valid"),
)


def reasons(state: Path) -> dict[str, dict[str, Any]]:
    return {p.name.removesuffix(".reason.json"): json.loads(p.read_text())
            for p in (state / "quarantine").glob("*/*.reason.json")}  # fmt: skip


@pytest.mark.slow
def test_every_bad_file_is_quarantined_with_its_stage_and_the_next_good_frame_is_scored(
    meso_scenario: Path, tmp_path: Path
) -> None:
    spool, outside = tmp_path / "spool", tmp_path / "outside"
    spool.mkdir()
    outside.mkdir()
    bad = {case.make(spool, outside, minute).name: case for minute, case in enumerate(CASES, start=1)}
    assert len(bad) == len(CASES)
    state = tmp_path / "state"
    settings = ServiceSettings().replaced(source=f"dir:{spool}?settle_s=0.2", store=tmp_path / "grids", state=state,
                                          model_base=ROOT / "models" / "repository", http=("127.0.0.1", 0),
                                          watch=False, poll_interval_s=0.2, glm_deadline_s=5.0, max_age_s=0.0,
                                          future_tolerance_s=600.0)  # fmt: skip
    service = Service(settings).start()
    good = sorted(meso_scenario.glob("OR_ABI-*.nc"))[-1]
    try:
        wait_until(lambda: set(bad) <= set(reasons(state)), "a reason file for every bad file", limit_s=120.0)
        for path in sorted(meso_scenario.glob("OR_GLM-*.nc")) + [good]:  # after the bad ones: a replay goes on
            deliver(path, spool)
        newest = wait_until(lambda: service.store.latest("M1"), "the grid of the good frame", limit_s=120.0)
        letters = [DeadLetterEvent.from_json(m.value) for m in service.bus.messages(DEADLETTER_TOPIC)]
        checkpoint = service.checkpoint
    finally:
        service.stop()

    kept = reasons(state)
    for name, case in bad.items():
        assert (case.what, kept[name]["stage"]) == (case.what, case.stage)
        assert case.reason in kept[name]["reason"], (case.what, kept[name]["reason"])
    assert {(d.name, d.stage) for d in letters} == {(name, case.stage) for name, case in bad.items()}
    copies = {p.name for p in (state / "quarantine").glob("*/*") if not p.name.endswith(".reason.json")}
    links = {name for name, case in bad.items() if case.stage == "spool"}
    assert copies == set(bad) - links  # the bytes of a link's target are never read, let alone copied
    passwd = Path("/etc/passwd").read_bytes()
    assert all(p.read_bytes() != passwd for p in (state / "quarantine").glob("*/*"))
    assert "ahead of the clock" in kept[next(n for n, c in bad.items() if c.stage == "future")]["reason"]

    assert newest.path.parent.parent.name == "M1"
    assert newest.grid_id == f"G19_M1_{newest.scan_start:%Y%m%dT%H%M%S}Z_lightning-v{served_version()}"
    assert service.worker.outcomes["scored"] == 1
    assert service.worker.outcomes["failed"] == 0
    assert not list((tmp_path / "grids").glob("C/*/*.nc"))  # no bad file became a grid
    assert checkpoint is not None
    assert checkpoint.entries[good.name].outcome == "announced"  # not `late` after the file from 2099
    assert {checkpoint.entries[name].outcome for name in bad} == {"quarantined"}
    # The service's store has the service's clock: a grid from the future (as made before the ingest refused
    # such files) never becomes the latest one.
    forged = newest.path.parent.parent / "2099-06-15" / newest.path.name.replace(f"{newest.scan_start:%Y%m%d}",
                                                                                  "20990615")  # fmt: skip
    forged.parent.mkdir()
    shutil.copy(newest.path, forged)
    assert (service.store.future_tolerance_s, service.worker.settings.future_tolerance_s) == (600.0, 600.0)
    assert service.store.latest("M1") == newest
    assert [g.grid_id for g in service.store.grids("M1")] == [newest.grid_id]
