"""`ltgcast evaluate` on a simulated train day and test day, beside the three baselines."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.synthetic import ScenarioConfig, simulate
from ltgcast.cli import main

pytestmark = pytest.mark.slow


def test_evaluate_scores_a_run_beside_the_baselines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "archive"
    for seed, start in enumerate((datetime(2024, 6, 17, 18, tzinfo=UTC), datetime(2024, 6, 18, 18, tzinfo=UTC))):
        simulate(ScenarioConfig(out=archive / str(seed), sector="M1", start=start, minutes=60, seed=seed + 11))
    heldout = tmp_path / "heldout"  # a day the model never saw, for storm lead times
    simulate(ScenarioConfig(out=heldout, sector="M1", start=datetime(2024, 6, 25, 17, tzinfo=UTC), minutes=150, seed=5))
    data, run, out = tmp_path / "data", tmp_path / "run", tmp_path / "eval"
    assert main(["dataset", "build", "--archive", f"dir:{archive}", "--start", "2024-06-17T00:00Z",
                 "--end", "2024-06-19T00:00Z", "--out", str(data), "--max-positives", "80",
                 "--min-negatives", "40", "--shards", "1"]) == 0  # fmt: skip
    assert main(["train", "--data", str(data), "--out", str(run), "--arch", "combined", "--width", "4",
                 "--epochs", "2", "--batch", "32"]) == 0  # fmt: skip
    capsys.readouterr()
    lead_flags = ["--lead-archive", f"dir:{heldout}", "--lead-start", "2024-06-25T17:15Z",
                  "--lead-end", "2024-06-25T19:30Z"]  # fmt: skip
    assert main(["evaluate", "--data", str(data), "--run", str(run), "--out", str(out), *lead_flags]) == 0
    brief = json.loads(capsys.readouterr().out)
    assert set(brief) == {"climatology", "persistence", "logistic", "run"}
    summary = json.loads((out / "evaluation.json").read_text())
    forecasts = summary["forecasts"]
    assert forecasts["climatology"]["brier_skill"] == pytest.approx(0.0, abs=1e-9)  # the reference of the skill score
    for name, scores in forecasts.items():
        assert 0.0 <= scores["roc_auc"] <= 1.0, name
        assert 0.0 <= scores["brier"] <= 1.0, name
        assert [t["threshold"] for t in scores["thresholds"]] == [0.1, 0.25, 0.5, 0.75]
        assert 0.0 <= scores["reliability"]["ece"] <= 1.0
    assert forecasts["persistence"]["roc_auc"] > 0.5  # lightning now predicts lightning soon in this scenario
    lead = summary["lead_time"]
    assert lead["frames"] == 27  # 17:15 .. 19:25, every 5 min
    assert set(lead["forecasts"]) == {"persistence", "logistic", "run"}
    onsets = {r["onsets"] for r in lead["forecasts"].values()}
    assert len(onsets) == 1  # the same storms for every forecast
    assert onsets.pop() > 0  # and some start in the period
    for name, r in lead["forecasts"].items():
        for threshold in ("0.25", "0.5"):
            leads = [m for m in r[threshold]["lead_minutes"] if m is not None]
            assert all(0 < m <= 45 for m in leads), name
            assert r[threshold]["detected"] == len(leads)
    assert lead["forecasts"]["persistence"]["0.25"]["detected"] == 0  # no lightning near an onset in the look-back
    assert "median_minutes_0.25" in brief["run"]["lead_time"]
    report = (out / "report.md").read_text()
    assert "## Lead time before the first flash" in report
    assert "| logistic |" in report
    assert "| run |" in report
    assert (out / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
