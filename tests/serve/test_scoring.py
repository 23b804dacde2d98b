"""Scorers: whole frame, tiles and one patch per pixel agree; bad input is refused with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from foundation.errors import BadInput, BadOutput
from serve.scoring import ERROR_REASONS, EmbeddedScorer, PatchScorer, get_scorer
from serve.scoring.settings import ScorerSettings
from tests.support.models import frame


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
    with pytest.raises(ValueError, match="unknown scorer backend 'gpu'; expected one of: embedded, patch"):
        get_scorer(model_base / "lightning" / "1", ScorerSettings(backend="gpu"))


def embedded_errors() -> dict[str, float | None]:
    return {
        reason: REGISTRY.get_sample_value("ltgcast_scorer_errors_total", {"backend": "embedded", "reason": reason})
        for reason in ERROR_REASONS
    }


def test_failed_embedded_calls_are_counted_once_by_reason(model_base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf

    from monitor.metrics import SCORER_CIRCUIT, SCORER_ERRORS

    for reason in ERROR_REASONS:  # as in a fresh process (the registry is global)
        SCORER_ERRORS.remove("embedded", reason)
    SCORER_CIRCUIT.labels("embedded", "local").set(5)
    scorer = EmbeddedScorer(model_base / "lightning" / "1", ScorerSettings(tile=8))
    assert embedded_errors() == dict.fromkeys(ERROR_REASONS, 0.0)  # every reason exists from the start
    assert REGISTRY.get_sample_value("ltgcast_scorer_circuit_state", {"backend": "embedded", "transport": "local"}) == 0
    x = frame(20, 20)  # 9 tiles of 8 pixels
    with pytest.raises(BadInput, match="must be"):
        scorer.score(np.zeros((20, 20, 3), np.float32))
    dense = scorer._dense
    monkeypatch.setattr(scorer, "_dense", lambda tile: {"probability": dense(tile=tile)["probability"] * np.nan})
    with pytest.raises(BadOutput, match="NaN or inf at 64 of 64 pixels"):  # the first tile stops the frame
        scorer.score(x)
    monkeypatch.setattr(scorer, "_dense", lambda tile: {"probability": dense(tile=tile)["probability"][:, 1:]})
    with pytest.raises(BadOutput, match=r"shape \(8, 8\); the model answered \(7, 8\)"):
        scorer.score(x)

    def broken(tile: object) -> object:
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    monkeypatch.setattr(scorer, "_dense", broken)
    with pytest.raises(ValueError, match=r"failed on a tile of shape \(72, 72, 2\): OOM"):
        scorer.score(x)
    expected = {**dict.fromkeys(ERROR_REASONS, 0.0), "invalid_argument": 1.0, "bad_output": 2.0, "other": 1.0}
    assert embedded_errors() == expected
