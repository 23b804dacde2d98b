"""Input quality through the real worker: NaN on the Earth's disk is measured, space never counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from prometheus_client import REGISTRY

from ingest.abi import AbiImage, PixelAccounting
from ingest.bus import InProcessBus
from ingest.events import FRAMES_TOPIC
from ingest.readers import read_product
from ingest.synthetic import ScenarioConfig, simulate
from monitor.quality import InputQuality, record_prediction
from serve.scoring import EmbeddedScorer
from serve.stores.files import FileGridStore
from serve.worker.loop import NowcastWorker
from serve.worker.settings import WorkerSettings
from tests.support.clock import FakeClock
from tests.support.frames import publish_frames

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2024, 6, 15, 20, 0, tzinfo=UTC)


def nan_fraction(reason: str) -> float | None:
    labels = {"satellite": "G19", "sector": "C", "band": "13", "reason": reason}
    return REGISTRY.get_sample_value("ltgcast_input_nan_fraction", labels)


@pytest.fixture(scope="module")
def conus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One simulated CONUS band-13 frame: its top-left corner is beyond the limb (space)."""
    paths = simulate(ScenarioConfig(out=tmp_path_factory.mktemp("conus"), sector="C", start=START, minutes=5,
                                    seed=4, glm=False))  # fmt: skip
    return next(p for p in paths if "_ABI-" in p.name)


def score(frame: Path, tmp_path: Path) -> None:
    bus = InProcessBus()
    publish_frames(bus, [frame], START + timedelta(minutes=6), topic=FRAMES_TOPIC, uri=frame.resolve().as_uri(),
                   source_uri=frame.as_uri())  # fmt: skip
    scorer = EmbeddedScorer(ROOT / "models" / "repository" / "lightning" / "1")
    clock = FakeClock(START + timedelta(minutes=7))
    worker = NowcastWorker(bus, scorer, FileGridStore(tmp_path / "grids"), clock, WorkerSettings(glm_deadline_s=0))
    while worker.step(timeout_s=0):
        pass
    assert worker.outcomes["scored"] == 1


@pytest.mark.slow
def test_injected_nan_raises_the_metric_by_its_share_of_the_earth(conus: Path, tmp_path: Path) -> None:
    clean = read_product(conus)
    assert isinstance(clean, AbiImage)
    assert clean.accounting.space > 0  # the CONUS corner beyond the limb
    score(conus, tmp_path / "clean")
    assert nan_fraction("all") == pytest.approx(InputQuality.of(clean.accounting).nan)
    baseline = nan_fraction("all")
    assert baseline is not None
    assert baseline < 1e-6  # the simulator writes no fill on the disk: space is not missing data

    broken = tmp_path / conus.name
    broken.write_bytes(conus.read_bytes())
    rows, cols = slice(700, 720), slice(1200, 1300)  # 2000 pixels over the central US, all on the disk
    with netCDF4.Dataset(broken, "r+") as ds:
        rad = ds.variables["Rad"]
        rad.set_auto_maskandscale(False)
        block = rad[rows, cols]
        block[:] = rad.getncattr("_FillValue")
        rad[rows, cols] = block
    injected = read_product(broken)
    assert isinstance(injected, AbiImage)
    assert injected.accounting.fill - clean.accounting.fill == 2000
    score(broken, tmp_path / "broken")
    earth = injected.accounting.earth
    assert nan_fraction("all") == pytest.approx(baseline + 2000 / earth, rel=1e-9)
    assert nan_fraction("fill") == pytest.approx(injected.accounting.fill / earth, rel=1e-9)
    assert nan_fraction("all") != pytest.approx(baseline + 2000 / (1500 * 2500), rel=1e-6)  # not a share of all


def test_quality_of_a_frame_that_is_all_space_is_zero_not_a_division_by_zero() -> None:
    assert InputQuality.of(PixelAccounting(valid=0, fill=0, bad_dqf=0, nonphysical=0, space=100)).nan == 0.0


def test_prediction_metrics_leave_out_pixels_without_input() -> None:
    p = np.array([[0.2, 0.6], [np.nan, 0.8]], np.float32)
    assert record_prediction("M2", 3, p) == pytest.approx(np.mean([0.2, 0.6, 0.8]))
    mean = REGISTRY.get_sample_value("ltgcast_prediction_mean", {"sector": "M2", "model_version": "3"})
    assert mean == pytest.approx(float(np.float32(0.2) + np.float32(0.6) + np.float32(0.8)) / 3)
    above = REGISTRY.get_sample_value("ltgcast_prediction_above_fraction", {"sector": "M2", "level": "0.50"})
    assert above == pytest.approx(2 / 3)
