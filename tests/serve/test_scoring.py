"""Scorers: whole frame, tiles and one patch per pixel agree; bad input is refused with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serve.scoring import EmbeddedScorer, PatchScorer, ScorerSettings, get_scorer
from tests.modelfiles import frame


def test_tiles_with_halos_give_the_whole_frame_answer(model_base: Path) -> None:
    path = model_base / "lightning" / "1"
    x = frame()
    whole = EmbeddedScorer(path, ScorerSettings(tile=0)).score(x)
    tiled = EmbeddedScorer(path, ScorerSettings(tile=40)).score(x)  # 40 does not divide 90 or 131: ragged edges
    assert whole.shape == (90, 131)
    assert np.all((whole >= 0) & (whole <= 1))
    assert float(whole.std()) > 0.01  # a field, not a constant
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


def test_the_naive_patch_path_gives_the_same_probabilities(model_base: Path) -> None:
    path = model_base / "lightning" / "1"
    x = frame(50, 47, seed=1)
    dense = EmbeddedScorer(path).score(x)
    naive = PatchScorer(path, batch=100)
    pixels = np.array([[0, 0], [49, 46], [0, 46], [49, 0], [25, 20], [3, 44]])
    np.testing.assert_allclose(naive.score_pixels(x, pixels), dense[pixels[:, 0], pixels[:, 1]], atol=1e-5)
    np.testing.assert_allclose(naive.score(x[:9, :7]), EmbeddedScorer(path).score(x[:9, :7]), atol=1e-5)


def test_bad_input_and_backends_are_named(model_base: Path) -> None:
    scorer = get_scorer(model_base / "lightning" / "1", ScorerSettings())
    assert (scorer.name, scorer.version, scorer.feature_set.key) == ("lightning", 1, "ir-ltg/1")
    x = frame(10, 10)
    x[3, 3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf; apply the fill policy"):
        scorer.score(x)
    with pytest.raises(ValueError, match=r"must be \[H, W, 2\]; found shape \(10, 10, 3\)"):
        scorer.score(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="unknown scorer backend 'gpu'; valid: embedded, patch"):
        get_scorer(model_base / "lightning" / "1", ScorerSettings(backend="gpu"))
