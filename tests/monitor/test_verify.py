"""Live verification: the worker's rolling scores equal the offline verification scores on the same frames."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from featurize.examples import Flashes, LabelRule, frame_labels
from ingest.abi import AbiImage
from ingest.bus import InProcessBus
from ingest.events import FRAMES_TOPIC
from ingest.glm import GlmGranule
from ingest.readers import read_product
from ingest.synthetic import ScenarioConfig, simulate
from models.metrics import brier, contingency, reliability
from monitor.verify import LiveSkill, score_grid
from serve.scoring import EmbeddedScorer
from serve.stores.files import FileGridStore
from serve.worker.loop import NowcastWorker
from serve.worker.nowcast import nowcast_frame
from serve.worker.settings import WorkerSettings
from tests.support.clock import FakeClock
from tests.support.frames import publish_frames

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2024, 7, 31, 17, 0, tzinfo=UTC)


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_scores_add_up_and_empty_ones_are_nan() -> None:
    a = score_grid(np.array([[0.9, 0.1]], np.float32), np.array([[1, 0]], np.uint8))
    b = score_grid(np.array([[0.3, 0.6]], np.float32), np.array([[1, 1]], np.uint8))
    total = a + b
    assert (total.pixels, total.hits, total.misses) == (4, (3, 2), (0, 1))
    assert total.brier == pytest.approx((0.1**2 + 0.1**2 + 0.7**2 + 0.4**2) / 4, rel=1e-6)
    quiet = score_grid(np.array([[0.05]], np.float32), np.array([[0]], np.uint8))
    assert np.isnan(quiet.csi(0))  # nothing forecast, nothing happened: no skill to state, not 0
    skill = LiveSkill(window=2)
    for s in (quiet, a, b):
        skill.add("M2", s)
    assert gauge("ltgcast_live_csi", sector="M2", threshold="0.25") == pytest.approx((a + b).csi(0))
    with pytest.raises(ValueError, match="at least 1 grid"):
        LiveSkill(window=0)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return simulate(ScenarioConfig(out=tmp_path_factory.mktemp("verify"), sector="M1", start=START, minutes=52,
                                   seed=8))  # fmt: skip


@pytest.mark.slow
def test_live_scores_equal_the_offline_verification_of_the_same_frames(scenario: list[Path], tmp_path: Path) -> None:
    frames = sorted(p for p in scenario if "_ABI-" in p.name)[15:21]  # their 30 minutes end before the scenario does
    granules = sorted(p for p in scenario if "_GLM-" in p.name)
    bus = InProcessBus()
    publish_frames(bus, granules + frames, START + timedelta(minutes=53), topic=FRAMES_TOPIC)
    scorer = EmbeddedScorer(ROOT / "models" / "repository" / "lightning" / "1")
    clock = FakeClock(START + timedelta(minutes=55))
    settings = WorkerSettings(glm_deadline_s=0, verify_window=100)
    worker = NowcastWorker(bus, scorer, FileGridStore(tmp_path / "grids"), clock, settings)
    verified = gauge("ltgcast_live_verified_grids_total", sector="M1") or 0.0
    while worker.step(timeout_s=0):
        pass
    assert worker.outcomes["scored"] == 6
    assert not worker.awaiting  # all six verified
    assert gauge("ltgcast_live_verified_grids_total", sector="M1") == verified + 6

    # offline: score the same frames again and verify them as `ltgcast evaluate` does (models.metrics)
    p, y = scored_offline(frames, granules, scorer)
    assert y.sum() > 1000  # there was lightning to verify against
    for threshold in ("0.25", "0.50"):
        offline = contingency(p, y, float(threshold))
        for score in ("csi", "pod", "far"):
            live = gauge(f"ltgcast_live_{score}", sector="M1", threshold=threshold)
            assert live == pytest.approx(offline[score], rel=1e-9), (score, threshold)
    assert gauge("ltgcast_live_brier", sector="M1") == pytest.approx(brier(p, y), rel=1e-6)
    observed = reliability(p, y, bins=10)["observed"]
    for b, value in enumerate(observed):
        live = gauge("ltgcast_live_reliability_observed", sector="M1", bin=f"{b / 10:.1f}")
        assert live is not None
        assert (np.isnan(live) and value is None) or live == pytest.approx(value, rel=1e-9)


def test_a_grid_whose_glm_never_completes_is_given_up_and_counted(scenario: list[Path], tmp_path: Path) -> None:
    frame = sorted(p for p in scenario if "_ABI-" in p.name)[40]  # its 30 minutes run past the scenario's GLM
    granules = sorted(p for p in scenario if "_GLM-" in p.name)
    bus = InProcessBus()
    publish_frames(bus, [*granules, frame], START, topic=FRAMES_TOPIC)
    scorer = EmbeddedScorer(ROOT / "models" / "repository" / "lightning" / "1")
    clock = FakeClock(START + timedelta(minutes=55))
    worker = NowcastWorker(bus, scorer, FileGridStore(tmp_path / "g"), clock, WorkerSettings(glm_deadline_s=0))
    before = gauge("ltgcast_live_unverified_grids_total", sector="M1", reason="glm_incomplete") or 0.0
    while worker.step(timeout_s=0):
        pass
    assert len(worker.awaiting) == 1
    clock.advance(WorkerSettings().verify_deadline_s + 1800)
    worker.step(timeout_s=0)
    assert worker.awaiting == []
    assert gauge("ltgcast_live_unverified_grids_total", sector="M1", reason="glm_incomplete") == before + 1


@pytest.mark.slow
def test_live_verification_of_a_temporal_model_scores_the_grids_it_made(
    scenario: list[Path], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Live verification labels the stored grids, whatever their inputs: those of a trend model too, with and
    without the previous frame (frames 0-5 have none, 15-20 have frames 0-5)."""
    import json

    from serve.stores.gridfile import read_grid
    from tests.support.models import trend_repository

    abi = sorted(p for p in scenario if "_ABI-" in p.name)
    frames = abi[:6] + abi[15:21]
    granules = sorted(p for p in scenario if "_GLM-" in p.name)
    bus = InProcessBus()
    publish_frames(bus, granules + frames, START + timedelta(minutes=53), topic=FRAMES_TOPIC)
    scorer = EmbeddedScorer(trend_repository(tmp_path_factory) / "lightning" / "1")
    store = FileGridStore(tmp_path / "grids")
    worker = NowcastWorker(bus, scorer, store, FakeClock(START + timedelta(minutes=55)),
                           WorkerSettings(glm_deadline_s=0, verify_window=100))  # fmt: skip
    verified = gauge("ltgcast_live_verified_grids_total", sector="M1") or 0.0
    while worker.step(timeout_s=0):
        pass
    worker.close()
    assert (worker.outcomes["scored"], worker.outcomes["failed"]) == (12, 0)
    assert not worker.awaiting
    assert gauge("ltgcast_live_verified_grids_total", sector="M1") == verified + 12
    trends = [json.loads(read_grid(g.path)[1]["provenance"])["trend"] for g in store.grids("M1")]
    assert trends == ["missing"] * 6 + ["ok"] * 6

    p, y = scored_offline(frames, granules, scorer, previous=lambda k: k - 6 if k >= 6 else k)  # none: the frame itself
    assert y.sum() > 1000
    assert gauge("ltgcast_live_brier", sector="M1") == pytest.approx(brier(p, y), rel=1e-6)
    for threshold in ("0.25", "0.50"):
        offline = contingency(p, y, float(threshold))
        assert gauge("ltgcast_live_csi", sector="M1", threshold=threshold) == pytest.approx(offline["csi"], rel=1e-9)


def scored_offline(frames: list[Path], granules: list[Path], scorer: Any,
            previous: Callable[[int], int] | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The frames scored here and labelled as training labels them (:func:`featurize.examples.frame_labels`).

    ``previous`` maps a frame's index to its predecessor's, for a temporal model.
    """
    flashes = Flashes.concat([g.flashes for g in map(read_product, granules) if isinstance(g, GlmGranule)])
    images = [read_product(path) for path in frames]
    probabilities, labels = [], []
    for k, image in enumerate(images):
        assert isinstance(image, AbiImage)
        before = images[previous(k)].values if previous is not None else None
        p = nowcast_frame(image, flashes, scorer, before).probability
        y = frame_labels(image.grid, flashes.lat, flashes.lon, flashes.time, image.scan_start.timestamp(), LabelRule())
        ok = np.isfinite(p)
        probabilities.append(p[ok])
        labels.append(y[ok])
    return np.concatenate(probabilities), np.concatenate(labels)
