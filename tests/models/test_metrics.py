"""Verification scores against independent references."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from models.metrics import best_csi, brier, brier_skill, contingency, pr_auc, reliability, roc_auc


@pytest.fixture
def forecasts() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    y = (rng.random(5000) < 0.2).astype(float)
    p = np.clip(0.15 + 0.5 * y + rng.normal(0, 0.2, y.size), 0, 1).round(2)  # ties on purpose
    w = rng.uniform(0.5, 3.0, y.size)
    return p, y, w


def test_scores_match_scikit_learn(forecasts: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    p, y, w = forecasts
    assert roc_auc(p, y) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert roc_auc(p, y, w) == pytest.approx(roc_auc_score(y, p, sample_weight=w), abs=1e-12)
    assert pr_auc(p, y) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert pr_auc(p, y, w) == pytest.approx(average_precision_score(y, p, sample_weight=w), abs=1e-12)
    assert brier(p, y, w) == pytest.approx(brier_score_loss(y, p, sample_weight=w), abs=1e-12)


def test_skill_and_calibration_of_known_forecasts(forecasts: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    p, y, _ = forecasts
    rate = y.mean()
    assert brier_skill(np.full_like(p, rate), y) == pytest.approx(0.0, abs=1e-12)  # climatology has no skill
    assert brier_skill(y, y) == 1.0
    assert brier_skill(p, y) > 0
    perfect = reliability(y * 0.999, y, bins=10)
    assert perfect["ece"] < 1e-3
    assert reliability(np.full_like(p, 0.5), y)["ece"] == pytest.approx(abs(0.5 - rate))


def test_contingency_scores_by_hand() -> None:
    p = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    y = np.array([1, 1, 0, 1, 0, 0])
    s = contingency(p, y, 0.5)
    assert (s["hits"], s["false_alarms"], s["misses"]) == (2, 1, 1)
    assert s["pod"] == pytest.approx(2 / 3)
    assert s["far"] == pytest.approx(1 / 3)
    assert s["csi"] == pytest.approx(2 / 4)
    assert s["bias"] == pytest.approx(3 / 3)
    assert best_csi(p, y)["csi"] == pytest.approx(3 / 4)  # yes from 0.3 up: three hits, one false alarm
    with pytest.raises(ValueError, match="within \\[0, 1\\]"):
        brier([1.2], [1])
