"""The committed default model: it is what `make run` and `make demo` serve offline, so it must pass the gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ltgcast.cli import main

BASE = Path(__file__).resolve().parents[2] / "models" / "repository"


def test_the_default_model_is_small_served_and_says_what_it_was_trained_on() -> None:
    state = json.loads((BASE / "lightning" / "serving.json").read_text())
    version = BASE / "lightning" / str(state["current"])
    size = sum(p.stat().st_size for p in version.rglob("*") if p.is_file())
    assert size < 5 * 2**20, f"{size} bytes"
    card = json.loads((version / "model_card.json").read_text())
    assert "SIMULATED storms" in card["notes"]
    assert "ltgcast train" in card["notes"]
    assert card["feature_set"] in ("ir-ltg/2", "ir-ltg-trend/2")  # bounded channels, mirrored edges (issue 16)
    assert card["behaviour"]["passed"], card["behaviour"]["failed"]
    assert 0.0 < card["persistence_rate"] < 1.0
    assert 0.0 < card["thresholds"]["best_csi"] < 1.0
    assert [t["threshold"] for t in card["thresholds"]["levels"]] == [0.1, 0.25, 0.5, 0.75]
    assert {"climatology", "persistence", "logistic"} <= set(card["evaluation"]["baselines"])
    assert card["evaluation"]["lead_time"]["onsets"] > 0


def test_the_default_model_passes_validate_and_its_signatures_agree(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "validate", "--base", str(BASE)]) == 0
    checked = json.loads(capsys.readouterr().out)
    assert checked["passed"]
    assert checked["checks"]["dense_patch_max_difference"] <= 1e-5
    behaviour = checked["checks"]["behaviour"]
    assert len(behaviour) >= 8
    assert all(result["passed"] for result in behaviour.values()), {n: r["detail"] for n, r in behaviour.items()}
    low, high = checked["checks"]["golden_range"]
    assert 0.0 <= low <= high <= 1.0


def test_the_old_default_stays_in_the_repository_and_fails_the_behavioural_suite_by_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Version 1 (raw counts, a warm clear-sky halo) is kept for rollback and as the suite's witness."""
    assert main(["models", "validate", "--base", str(BASE), "--version", "1"]) == 1
    err = capsys.readouterr().err
    for check in ("monotone_lightning", "no_moat", "edges", "inverted_ranking"):
        assert f"behaviour {check}: FAIL" in err, err
