"""The dense comparison: scores from per-frame histograms against sklearn, bootstrap intervals, the CLI end to end."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from ingest.synthetic import ScenarioConfig, simulate
from ltgcast.cli import main
from models.compare import (
    BINS,
    CSI_THRESHOLDS,
    LEVELS,
    SIZE,
    Tally,
    auc_tie_bound,
    compare_units,
    constant_statistics,
    frame_statistics,
    lead_time_intervals,
    scores,
    unpack,
)
from models.metrics import contingency, reliability

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "repository" / "lightning" / "1"


def _forecast(rng: np.random.Generator, n: int, skill: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes with a ~10 % base rate and probabilities that know something about them."""
    y = (rng.uniform(size=n) < 0.1).astype(np.uint8)
    logit = -2.2 + skill * (y - 0.1) * 2 + rng.normal(0, 1, n)
    return 1.0 / (1.0 + np.exp(-logit)), y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_histogram_auc_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p, y = _forecast(rng, 20_000)
    v = unpack(frame_statistics(p, y))
    auc = float(scores(frame_statistics(p, y), 0.1)["roc_auc"])
    exact = roc_auc_score(y, p)
    # Tolerance: pixels in one of the 1000 bins count as ties; the error is bounded by auc_tie_bound (about 1e-3).
    bound = float(auc_tie_bound(v["pos"], v["neg"]))
    assert bound < 2e-3
    assert auc == pytest.approx(exact, abs=bound)
    assert auc == pytest.approx(exact, abs=1e-3)


def test_histogram_auc_is_exact_on_bin_edges_and_for_ties() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 5000)
    p = rng.integers(0, BINS, 5000) / BINS  # every value on a bin's lower edge: ties are real ties, as sklearn counts
    assert float(scores(frame_statistics(p, y), 0.5)["roc_auc"]) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    persistence = (rng.uniform(size=5000) < 0.3).astype(float)
    got = float(scores(frame_statistics(persistence, y), 0.5)["roc_auc"])
    assert got == pytest.approx(roc_auc_score(y, persistence), abs=1e-12)


def test_brier_skill_thresholds_and_reliability_match_the_references() -> None:
    rng = np.random.default_rng(4)
    p, y = _forecast(rng, 30_000)
    r = scores(frame_statistics(p, y), climatology=0.12)
    assert float(r["brier"]) == pytest.approx(brier_score_loss(y, p), rel=1e-12)
    reference = brier_score_loss(y, np.full_like(p, 0.12))
    assert float(r["brier_skill"]) == pytest.approx(1 - brier_score_loss(y, p) / reference, rel=1e-10)
    for level in LEVELS:  # the thresholds are bin edges: the contingency table is exact
        expected = contingency(p, y, level)
        for key in ("csi", "pod", "far"):
            assert float(r[f"{key}@{level:g}"]) == pytest.approx(expected[key], rel=1e-12), (level, key)
    best = max(CSI_THRESHOLDS, key=lambda t: contingency(p, y, t)["csi"])
    assert float(r["best_csi_threshold"]) == best
    assert float(r["best_csi"]) == pytest.approx(contingency(p, y, best)["csi"], rel=1e-12)
    curve = reliability(p, y)
    assert float(r["ece"]) == pytest.approx(curve["ece"], rel=1e-9)
    for key in ("observed", "forecast"):
        values = [np.nan if v is None else v for v in curve[key]]
        assert r[f"reliability_{key}"].tolist() == pytest.approx(values, rel=1e-12, nan_ok=True), key


def test_statistics_add_up_over_frames() -> None:
    rng = np.random.default_rng(5)
    parts = [_forecast(rng, n) for n in (100, 2000, 7)]
    summed = sum(frame_statistics(p, y) for p, y in parts)
    whole = frame_statistics(np.concatenate([p for p, _ in parts]), np.concatenate([y for _, y in parts]))
    assert np.allclose(summed, whole, rtol=1e-12, atol=1e-9)
    s = constant_statistics(0.0983, [2107.0], [211.0])
    p = np.full(2107, 0.0983)
    y = np.zeros(2107)
    y[:211] = 1
    assert np.allclose(s[0], frame_statistics(p, y), rtol=1e-12, atol=1e-9)
    assert float(scores(s[0], 0.0983)["brier_skill"]) == pytest.approx(0.0, abs=1e-12)


def test_frame_statistics_refuse_bad_probabilities() -> None:
    with pytest.raises(ValueError, match="within"):
        frame_statistics([0.5, np.nan], [0, 1])
    with pytest.raises(ValueError, match="within"):
        frame_statistics([1.5], [1])


def _frames(count: int, seed: int) -> np.ndarray:
    """Statistics of ``count`` frames of a skilful forecast; each frame has its own (weather-like) base rate."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        shift = rng.normal(0, 0.5)
        y = (rng.uniform(size=3000) < 0.1 * np.exp(shift)).astype(np.uint8)
        logit = -2.2 + shift + 2.5 * (y - 0.1) + rng.normal(0, 1, y.size)
        out.append(frame_statistics(1.0 / (1.0 + np.exp(-logit)), y))
    return np.stack(out)


HEADLINE = ("roc_auc", "brier", "brier_skill", "ece", "base_rate")


def test_bootstrap_interval_contains_the_point_and_narrows_with_more_frames() -> None:
    widths = {}
    for count in (10, 160):
        out = compare_units({"model": _frames(count, seed=count)}, 0.1, resamples=1000, seed=0)["forecasts"]["model"]
        for name in HEADLINE:
            assert out[name]["lo"] <= out[name]["value"] <= out[name]["hi"], (count, name)
        best = out["best_csi"]["csi"]
        assert best["lo"] <= best["value"] <= best["hi"]
        widths[count] = {name: out[name]["hi"] - out[name]["lo"] for name in ("roc_auc", "brier_skill")}
        widths[count]["best_csi"] = best["hi"] - best["lo"]
    for name, wide in widths[10].items():  # 16 times the frames: about 4 times narrower
        assert widths[160][name] < 0.5 * wide, name


def test_bootstrap_is_reproducible_and_paired() -> None:
    stats = _frames(12, seed=7)
    first = compare_units({"a": stats, "b": stats}, 0.1, resamples=300, seed=3, reference="a")
    again = compare_units({"a": stats, "b": stats}, 0.1, resamples=300, seed=3, reference="a")
    assert first == again
    difference = first["differences"]["forecasts"]["b"]["roc_auc"]
    assert difference == {"value": 0.0, "lo": 0.0, "hi": 0.0}  # the same frames in every resample of both
    other = compare_units({"a": stats}, 0.1, resamples=300, seed=4)
    assert other["forecasts"]["a"]["roc_auc"] != first["forecasts"]["a"]["roc_auc"]


def test_tally_resamples_days_once_there_are_five() -> None:
    tally = Tally(["m"], min_days=5)
    for day in range(6):
        for frame in range(3):
            tally.add(f"f{day}{frame}", f"2024-07-{10 + day:02d}", {"m": frame_statistics([0.2, 0.7], [0, 1])})
    unit, names, stats = tally.units()
    assert (unit, len(names), stats["m"].shape) == ("days", 6, (6, SIZE))
    assert tally.by_frame is None  # per-frame vectors are dropped once days are the unit
    assert unpack(stats["m"])["n"].tolist() == [6.0] * 6
    with pytest.raises(ValueError, match="statistics for"):
        tally.add("x", "2024-07-20", {})


def test_lead_time_intervals() -> None:
    rng = np.random.default_rng(8)
    few = [float(m) if m > 5 else None for m in rng.uniform(0, 45, 10)]
    many = [float(m) if m > 5 else None for m in rng.uniform(0, 45, 400)]
    a = lead_time_intervals(few, 1000, np.random.default_rng(0))
    b = lead_time_intervals(many, 1000, np.random.default_rng(0))
    for out, leads in ((a, few), (b, many)):
        found = [m for m in leads if m is not None]
        assert out["median_minutes"]["value"] == pytest.approx(float(np.median(found)))
        assert out["fraction_detected"]["value"] == pytest.approx(len(found) / len(leads))
        for key in ("median_minutes", "mean_minutes", "fraction_detected"):
            assert out[key]["lo"] <= out[key]["value"] <= out[key]["hi"], key
    assert b["median_minutes"]["hi"] - b["median_minutes"]["lo"] < a["median_minutes"]["hi"] - a["median_minutes"]["lo"]
    none = lead_time_intervals([None, None], 100, np.random.default_rng(0))
    assert none["median_minutes"] == {"value": None, "lo": None, "hi": None, "undefined": 100}
    assert lead_time_intervals([], 100, np.random.default_rng(0))["onsets"] == 0


def test_compare_refuses_a_baseline_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["models", "compare", "--archive", f"dir:{tmp_path}", "--start", "2024-07-25T17:15Z",
                 "--end", "2024-07-25T17:50Z", "--saved-model", f"persistence={DEFAULT_MODEL}",
                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    assert "baseline" in capsys.readouterr().err


def _intervals(node: object, path: str = "") -> list[tuple[str, dict[str, float]]]:
    """Every ``{value, lo, hi}`` in a JSON tree, with its path."""
    if isinstance(node, dict):
        if {"value", "lo", "hi"} <= set(node):
            return [(path, node)]
        return [found for k, v in node.items() for found in _intervals(v, f"{path}/{k}")]
    if isinstance(node, list):
        return [found for i, v in enumerate(node) for found in _intervals(v, f"{path}/{i}")]
    return []


@pytest.mark.slow
def test_compare_cli_on_a_simulated_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "archive"
    simulate(ScenarioConfig(out=archive, sector="M1", start=datetime(2024, 7, 25, 17, tzinfo=UTC), minutes=50, seed=25))
    data = tmp_path / "data"  # the logistic baseline's training data (the same day: this checks the wiring, not skill)
    assert main(["dataset", "build", "--archive", f"dir:{archive}", "--start", "2024-07-25T17:00Z",
                 "--end", "2024-07-25T17:50Z", "--out", str(data), "--max-positives", "80",
                 "--min-negatives", "40", "--shards", "1"]) == 0  # fmt: skip
    capsys.readouterr()
    out = tmp_path / "out"
    # Frames every 2 min from 17:15:24; those up to 17:19:24 have their 30-min label window inside the archive.
    assert main(["models", "compare", "--archive", f"dir:{archive}", "--start", "2024-07-25T17:15Z",
                 "--end", "2024-07-25T17:50Z", "--every-minutes", "2", "--saved-model", f"old={DEFAULT_MODEL}",
                 "--logistic-data", str(data), "--bootstrap", "200",
                 "--out", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    summary = json.loads((out / "comparison.json").read_text())
    assert printed == (out / "comparison.md").read_text()
    assert list(summary["forecasts"]) == ["climatology", "old", "persistence", "logistic"]
    assert (summary["frames"], summary["frames_lead_only"], summary["frames_skipped"]) == (3, 15, {})
    assert summary["days"] == ["2024-07-25"]
    assert summary["pixels"] == 3 * 500 * 500
    assert summary["resampling"]["unit"] == "frames"
    # the climatology of the data the new models learnt from (--logistic-data), not the old card's 0.0983
    assert summary["climatology"]["probability"] != pytest.approx(0.0983, abs=1e-4)
    assert 0.0 < summary["climatology"]["probability"] < 1.0
    assert "training split of" in summary["climatology"]["source"]
    for name, r in summary["forecasts"].items():
        for key in ("roc_auc", "brier", "brier_skill", "ece"):
            assert r[key]["value"] is not None, (name, key)
        assert r["best_csi"]["csi"]["value"] is not None, name
        assert [t["threshold"] for t in r["thresholds"]] == list(LEVELS)
        for path, x in _intervals(r):
            if x["value"] is not None:
                assert x["lo"] <= x["value"] <= x["hi"], (name, path, x)
        assert r["lead_time"]["0.25"]["onsets"] == 0  # 50 min is too short for a storm onset (60 quiet minutes)
    assert summary["forecasts"]["climatology"]["brier_skill"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert summary["forecasts"]["old"]["roc_auc"]["value"] > 0.6  # skill, whatever the simulator's weather today
    built_with = json.loads((data / "dataset.json").read_text())["feature_set"]
    assert summary["forecasts"]["logistic"]["about"]["feature_set"] == built_with  # its own channels, not old's
    assert summary["differences"]["reference"] == "old"
    assert set(summary["differences"]["forecasts"]) == {"climatology", "persistence", "logistic"}
    assert summary["forecasts"]["old"]["seconds_per_frame"] < 2.0
    assert "| old | 0." in printed
    assert "| persistence | " in printed
