"""Drift: PSI and KS against the model card's reference, on a rolling window; a regime change is seen live."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from foundation.errors import ConfigError
from ingest.bus import InProcessBus
from ingest.events import FRAMES_TOPIC
from ingest.filenames import parse_filename
from ingest.synthetic import ScenarioConfig, simulate
from ltgcast.driftcal import DriftCalibration, calibrate_drift
from monitor.drift import (
    DEFAULT_PSI_THRESHOLD,
    MAX_GAP_S,
    DriftMonitor,
    RollingDrift,
    binned,
    calibrated_thresholds,
    ks,
    psi,
    psi_thresholds,
    window_of,
)
from serve.scoring import EmbeddedScorer
from serve.stores.files import FileGridStore
from serve.worker.loop import NowcastWorker
from serve.worker.settings import WorkerSettings
from tests.support.clock import FakeClock
from tests.support.frames import publish_frames
from tests.support.models import served_version

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2024, 7, 30, 17, 0, tzinfo=UTC)
EDGES = np.linspace(0.0, 1.0, 11)
MODEL = ROOT / "models" / "repository" / "lightning" / str(served_version())  # the default `ltgcast run` serves
MODEL_V1 = ROOT / "models" / "repository" / "lightning" / "1"


def reference(rng: np.random.Generator, centre: float) -> dict[str, dict[str, list[float]]]:
    values = rng.normal(centre, 0.1, 100_000)
    return {"ir": {"edges": EDGES.tolist(), "histogram": binned(values, EDGES).tolist()}}


SCENE = ((80, 80), 0.0, 0.0)


class Frames:
    """Consecutive 1-minute frames of one scene, as the monitor is given them."""

    def __init__(self) -> None:
        self.at = START.timestamp()

    def next(self) -> tuple[float, tuple[object, ...]]:
        self.at += 60.0
        return self.at, SCENE


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
    rng, clock = np.random.default_rng(1), Frames()
    card = {"drift_reference": reference(rng, 0.4)}
    monitor = DriftMonitor(window=3)
    assert monitor.observe("M2", 1, card, frame(rng, 0.4), *clock.next()) == {}  # one frame is a scene
    assert monitor.observe("M2", 1, card, frame(rng, 0.4), *clock.next()) == {}
    assert REGISTRY.get_sample_value("ltgcast_feature_psi", {"sector": "M2", "feature": "ir"}) is None
    calm = monitor.observe("M2", 1, card, frame(rng, 0.4), *clock.next())["ir"][0]
    assert calm < 0.05
    warm = [monitor.observe("M2", 1, card, frame(rng, 0.6), *clock.next())["ir"][0] for _ in range(3)]
    assert warm[0] < warm[1] < warm[2]  # the window fills with the new regime
    assert warm[2] > 1.0
    assert REGISTRY.get_sample_value("ltgcast_feature_psi", {"sector": "M2", "feature": "ir"}) == pytest.approx(warm[2])
    new_card = {"drift_reference": reference(rng, 0.6)}
    assert monitor.observe("M2", 2, new_card, frame(rng, 0.6), *clock.next()) == {}  # a new model, a new window
    assert REGISTRY.get_sample_value("ltgcast_feature_psi", {"sector": "M2", "feature": "ir"}) is None  # withdrawn
    monitor.observe("M2", 2, new_card, frame(rng, 0.6), *clock.next())
    after_swap = monitor.observe("M2", 2, new_card, frame(rng, 0.6), *clock.next())["ir"][0]
    assert after_swap < 0.05
    gauge = REGISTRY.get_sample_value("ltgcast_feature_psi", {"sector": "M2", "feature": "ir"})
    assert gauge == pytest.approx(after_swap)
    monitor.forget("M2")  # e.g. the next model has no drift reference
    for name in ("ltgcast_feature_psi", "ltgcast_feature_ks", "ltgcast_feature_psi_threshold"):
        assert REGISTRY.get_sample_value(name, {"sector": "M2", "feature": "ir"}) is None
    with pytest.raises(ValueError, match="at least 1 frame"):
        DriftMonitor(window=0)


def test_a_moved_sector_or_a_gap_starts_the_window_again() -> None:
    rng = np.random.default_rng(3)
    rolling = RollingDrift(reference(rng, 0.4), window=2)
    t = START.timestamp()
    rolling.add(frame(rng, 0.4), t, SCENE)
    assert set(rolling.add(frame(rng, 0.4), t + 60, SCENE)) == {"ir"}
    assert rolling.full
    rolling.add(frame(rng, 0.4), t + 120, ((80, 80), 5000.0, 0.0))  # the meso sector moved
    assert not rolling.full
    rolling.add(frame(rng, 0.4), t + 180, ((80, 80), 5000.0, 0.0))
    assert rolling.full
    rolling.add(frame(rng, 0.4), t + 180 + MAX_GAP_S + 1, ((80, 80), 5000.0, 0.0))  # an outage
    assert not rolling.full
    rolling.add(frame(rng, 0.4), t + 100, ((80, 80), 5000.0, 0.0))  # older than the last frame: a replay
    assert not rolling.full


def test_thresholds_and_window_come_from_the_sectors_calibration() -> None:
    rng, clock = np.random.default_rng(2), Frames()
    refs = {"ir": reference(rng, 0.4)["ir"], "ltg": reference(rng, 0.0)["ir"]}
    card = {"drift_reference": refs, "drift_thresholds": {"F": {"window_frames": 2, "psi": {"ir": 0.61}}}}
    monitor = DriftMonitor(window=12)
    assert monitor.observe("F", 1, card, frame(rng, 0.4), *clock.next()) == {}
    assert set(monitor.observe("F", 1, card, frame(rng, 0.4), *clock.next())) == {"ir", "ltg"}  # full at 2 frames
    threshold = {n: REGISTRY.get_sample_value("ltgcast_feature_psi_threshold", {"sector": "F", "feature": n})
                 for n in ("ir", "ltg")}  # fmt: skip
    assert threshold == {"ir": 0.61, "ltg": DEFAULT_PSI_THRESHOLD}  # calibrated; the default for the other
    assert psi_thresholds(card, "C") == {"ir": 0.25, "ltg": 0.25}  # C was not calibrated
    assert window_of(card, "C", 12) == 12


def test_calibrated_thresholds_sit_a_margin_above_normal_weather() -> None:
    natural = {"ir": 0.8, "ir_max_64": 0.1, "ltg": float("nan")}
    assert calibrated_thresholds(natural, margin=1.25) == {"ir": 1.0, "ir_max_64": 0.25, "ltg": 0.25}


class Recording(DriftMonitor):
    """The real monitor, keeping every full window's PSI."""

    def __init__(self) -> None:
        super().__init__()
        self.windows: list[dict[str, float]] = []

    def observe(self, sector: str, model_version: int, card: Any, channels: Any, at: float,
                scene: tuple[Any, ...]) -> dict[str, tuple[float, float]]:  # fmt: skip
        found = super().observe(sector, model_version, card, channels, at, scene)
        if found:
            self.windows.append({name: p for name, (p, _) in found.items()})
        return found


def through_the_worker(scenario: list[Path], tmp_path: Path, card: dict[str, Any] | None = None,
                       model: Path = MODEL) -> Recording:  # fmt: skip
    """Every frame of ``scenario`` through the real worker and the default model; the monitor that saw them."""
    end = max(parse_filename(p.name).scan_start for p in scenario)
    bus = InProcessBus()
    paths = sorted(p for p in scenario if "_GLM-" in p.name) + sorted(p for p in scenario if "_ABI-" in p.name)
    publish_frames(bus, paths, end + timedelta(minutes=1), topic=FRAMES_TOPIC)
    scorer = EmbeddedScorer(model)
    if card is not None:
        scorer.card = card
    clock = FakeClock(end + timedelta(minutes=2))
    monitor = Recording()
    worker = NowcastWorker(bus, scorer, FileGridStore(tmp_path / "grids"), clock, WorkerSettings(glm_deadline_s=0),
                           drift=monitor)  # fmt: skip
    while worker.step(timeout_s=0):
        worker.wait_monitoring()  # as at the sector's cadence: no frame is left out of the drift window
    worker.close()  # waits for the drift thread to take every frame
    assert worker.outcomes["scored"] == sum("_ABI-" in p.name for p in scenario)
    return monitor


def scenario(tmp_path: Path, warmer: float, minutes: int = 40, seed: int = 41, start: datetime = START) -> list[Path]:
    return simulate(ScenarioConfig(out=tmp_path / f"sim{seed}-{warmer:g}", sector="M1", start=start, minutes=minutes,
                                   seed=seed, cloud_top_offset_k=warmer))  # fmt: skip


@pytest.mark.slow
def test_cloud_tops_15_k_warmer_drive_psi_over_the_calibrated_thresholds_in_the_worker(tmp_path: Path) -> None:
    thresholds = psi_thresholds(EmbeddedScorer(MODEL).card, "M1")
    calibrated = EmbeddedScorer(MODEL).card["drift_thresholds"]["M1"]["psi"]
    assert thresholds == pytest.approx(calibrated)  # the committed card's calibration
    normal = through_the_worker(scenario(tmp_path / "normal", 0.0), tmp_path / "normal")
    warm = through_the_worker(scenario(tmp_path / "warm", 15.0), tmp_path / "warm")
    assert len(normal.windows) == len(warm.windows) == 40 - 12 + 1

    def over(window: dict[str, float]) -> set[str]:
        return {name for name, p in window.items() if p > thresholds[name]}

    assert [over(w) for w in normal.windows if over(w)] == []  # a normal day never crosses a threshold
    drifted = [over(w) for w in warm.windows if over(w)]
    assert len(drifted) >= 10, drifted  # v2: 29 of the 29 windows on this machine
    cold = "ir_coldfrac_64"
    assert any(cold in names for names in drifted)
    peak = max(w[cold] for w in warm.windows)
    assert REGISTRY.get_sample_value("ltgcast_feature_psi_threshold", {"sector": "M1", "feature": cold}) \
        == pytest.approx(thresholds[cold])  # fmt: skip
    assert peak > thresholds[cold] > max(w[cold] for w in normal.windows)


@pytest.mark.slow
def test_the_calibration_replays_frames_as_the_live_worker_sees_them(tmp_path: Path) -> None:
    """``calibrate_drift`` on a 20-minute day equals the PSI the worker's monitor exported on the same frames."""
    paths = scenario(tmp_path, 0.0, minutes=20, seed=7)
    # version 1 (no ir_trend): every frame of a 20-minute day counts; a temporal model's calibration leaves out
    # the frames without a predecessor, which the worker monitors without their trend
    card = json.loads((MODEL_V1 / "model_card.json").read_text(encoding="utf-8"))
    card["drift_thresholds"] = {"M1": {"window_frames": 6}}
    live = through_the_worker(paths, tmp_path, card, model=MODEL_V1)
    settings = DriftCalibration(archive=f"dir:{tmp_path / 'sim7-0'}", start=START, end=START + timedelta(hours=1),
                                cache=tmp_path / "cache", sector="M1", window=6, margin=1.1)  # fmt: skip
    block = calibrate_drift(card, settings)
    assert block["calibration"]["frames"] == 20
    assert block["calibration"]["windows"] == len(live.windows) == 20 - 6 + 1
    for name in card["drift_reference"]:
        largest = max(w[name] for w in live.windows)
        assert block["natural_psi"][name]["max"] == pytest.approx(largest, abs=1e-4)
        assert block["psi"][name] == pytest.approx(max(0.25, 1.1 * largest), abs=1e-3)
    with pytest.raises(ConfigError, match="no run of 30 readable frames"):
        calibrate_drift(card, replace(settings, window=30))
    with pytest.raises(ConfigError, match="holds no M2 band 13 frames"):
        calibrate_drift(card, replace(settings, sector="M2"))
