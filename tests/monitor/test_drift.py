"""Drift: PSI and KS against the model card's reference, on a rolling window; a regime change is seen live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from ingest.bus import InProcessBus
from ingest.events import FRAMES_TOPIC, FrameEvent
from ingest.filenames import parse_filename
from ingest.synthetic import ScenarioConfig, simulate
from ingest.testing import FakeClock
from monitor.drift import DriftMonitor, binned, ks, psi
from serve.scoring import EmbeddedScorer
from serve.store import FileGridStore
from serve.worker import NowcastWorker, WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2024, 7, 30, 17, 0, tzinfo=UTC)
EDGES = np.linspace(0.0, 1.0, 11)


def reference(rng: np.random.Generator, centre: float) -> dict[str, dict[str, list[float]]]:
    values = rng.normal(centre, 0.1, 100_000)
    return {"ir": {"edges": EDGES.tolist(), "histogram": binned(values, EDGES).tolist()}}


def frame(rng: np.random.Generator, centre: float) -> dict[str, np.ndarray]:
    ir = rng.normal(centre, 0.1, (80, 80)).astype(np.float32)
    return {"ir": ir, "ltg": np.zeros_like(ir)}


def test_psi_and_ks_are_zero_for_the_same_distribution_and_grow_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    ref = binned(rng.normal(0.4, 0.1, 100_000), EDGES)
    same, shifted = binned(rng.normal(0.4, 0.1, 50_000), EDGES), binned(rng.normal(0.6, 0.1, 50_000), EDGES)
    assert psi(ref, same) < 0.01
    assert psi(ref, shifted) > 1.0
    assert ks(ref, same) < 0.01
    assert ks(ref, shifted) == pytest.approx(0.68, abs=0.05)  # Φ(1) − Φ(−1) for a one-sigma shift
    assert np.isnan(psi(ref, np.zeros_like(ref)))


def test_the_window_rolls_and_starts_again_for_a_new_model() -> None:
    rng = np.random.default_rng(1)
    card = reference(rng, 0.4)
    monitor = DriftMonitor(window=3)
    for _ in range(3):
        calm = monitor.observe("M1", 1, card, frame(rng, 0.4))["ir"][0]
    assert calm < 0.05
    warm = [monitor.observe("M1", 1, card, frame(rng, 0.6))["ir"][0] for _ in range(3)]
    assert warm[0] < warm[1] < warm[2]  # the window fills with the new regime
    assert warm[2] > 1.0
    after_swap = monitor.observe("M1", 2, reference(rng, 0.6), frame(rng, 0.6))["ir"][0]
    assert after_swap < 0.05  # a new model, a new reference, a new window
    gauge = REGISTRY.get_sample_value("ltgcast_feature_psi", {"sector": "M1", "feature": "ir"})
    assert gauge == pytest.approx(after_swap)
    with pytest.raises(ValueError, match="at least 1 frame"):
        DriftMonitor(window=0)


def run(tmp_path: Path, warmer: float) -> dict[str, float]:
    """Five M1 frames through the real worker and the default model; the PSI per feature afterwards."""
    paths = simulate(ScenarioConfig(out=tmp_path / f"sim{warmer:g}", sector="M1", start=START, minutes=20, seed=41,
                                    cloud_top_offset_k=warmer))  # fmt: skip
    bus = InProcessBus()
    for path in sorted(p for p in paths if "_GLM-" in p.name) + sorted(p for p in paths if "_ABI-" in p.name)[-5:]:
        event = FrameEvent.of(parse_filename(path), uri=str(path), source_uri=str(path), size=path.stat().st_size,
                              ingest_time=START + timedelta(minutes=21))  # fmt: skip
        bus.publish(FRAMES_TOPIC, event.key, event.to_json())
    scorer = EmbeddedScorer(ROOT / "models" / "repository" / "lightning" / "1")
    store, clock = FileGridStore(tmp_path / f"grids{warmer:g}"), FakeClock(START + timedelta(minutes=22))
    worker = NowcastWorker(bus, scorer, store, clock, WorkerSettings(glm_deadline_s=0), drift=DriftMonitor(window=5))
    while worker.step(timeout_s=0):
        pass
    worker.close()  # waits for the drift thread to take every frame
    assert worker.outcomes["scored"] == 5
    return {n: REGISTRY.get_sample_value("ltgcast_feature_psi", {"sector": "M1", "feature": n}) or 0.0
            for n in scorer.card["drift_reference"]}  # fmt: skip


@pytest.mark.slow
def test_cloud_tops_15_k_warmer_drive_the_cold_fraction_psi_over_the_alert_threshold(tmp_path: Path) -> None:
    normal, warm = run(tmp_path, 0.0), run(tmp_path, 15.0)
    assert normal["ir_coldfrac_64"] < 0.25 < warm["ir_coldfrac_64"]
    for name in ("ir_coldfrac_64", "ir_max_16", "ir_max_64", "ir_mean_64"):
        assert warm[name] > normal[name] + 0.1
