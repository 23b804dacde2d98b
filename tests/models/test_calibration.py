"""Platt calibration: the fit, the appended layer, and that export stays exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.architectures import build, load
from models.calibration import calibrated, fit_platt
from models.export import export


def test_weights_act_like_repeated_examples() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=3000)
    y = (rng.uniform(size=z.size) < 1 / (1 + np.exp(-(1.5 * z - 1.0)))).astype(float)
    w = rng.integers(1, 4, z.size).astype(float)
    weighted = fit_platt(z, y, w)
    repeated = fit_platt(np.repeat(z, w.astype(int)), np.repeat(y, w.astype(int)), np.ones(int(w.sum())))
    assert weighted == pytest.approx(repeated, abs=1e-8)


def test_one_class_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="positive and negative"):
        fit_platt([0.1, 0.2], [1, 1], [1, 1])
    with pytest.raises(ValueError, match="equal, non-empty lengths; found 2, 1, 2"):
        fit_platt([0.1, 0.2], [1], [1, 1])


def test_the_calibrated_model_is_affine_in_the_logit_and_exports_exactly(tmp_path: Path) -> None:
    model = build("combined", ("ir", "ltg"), width=4, seed=5)
    tiles = np.random.default_rng(2).uniform(0, 1, (4, 64, 64, 2)).astype(np.float32)
    z = np.asarray(model(tiles, training=False)).ravel()
    scaled = calibrated(model, 0.4, -1.5)
    assert np.asarray(scaled(tiles, training=False)).ravel() == pytest.approx(0.4 * z - 1.5, abs=1e-5)
    scaled.save(tmp_path / "model.keras")
    reloaded = load(tmp_path / "model.keras")
    assert np.asarray(reloaded(tiles, training=False)).ravel() == pytest.approx(0.4 * z - 1.5, abs=1e-5)
    check = export(reloaded, tmp_path / "1", channels=2)
    assert check["max_abs_difference_after_reload"] <= 1e-5


def test_separable_logits_give_a_finite_fit() -> None:
    z = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    a, b = fit_platt(z, [0, 0, 0, 1, 1, 1], np.ones(6))
    assert np.isfinite([a, b]).all()
    p = 1 / (1 + np.exp(-(a * z + b)))
    assert p[3:].min() < 0.9  # Platt's targets for 3 of each class: 0.8 and 0.2, not 1 and 0
    assert p[:3].max() > 0.1
