"""The exported SavedModel: two signatures, their shapes, their agreement, and the refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from foundation.errors import ModelRejected
from models.architectures import build
from models.export import ServedModel, agreement, export


def trained_like(arch: str = "combined") -> object:
    rng = np.random.default_rng(5)
    model = build(arch, ("ir", "ltg"), width=6, seed=2)
    for weight in model.weights:
        weight.assign(rng.normal(0, 0.2, weight.shape).astype("float32") + (1.0 if "variance" in weight.path else 0.0))
    return model


def test_export_writes_two_agreeing_signatures(tmp_path: Path) -> None:
    report = export(trained_like(), tmp_path / "1", channels=2)
    assert report["max_abs_difference_before"] <= 1e-5
    assert report["max_abs_difference_after_reload"] <= 1e-5
    loaded = tf.saved_model.load(str(tmp_path / "1"))
    dense, patch = loaded.signatures["serving_default"], loaded.signatures["patch"]
    assert set(dense.structured_input_signature[1]) == {"tile"}
    assert set(patch.structured_input_signature[1]) == {"patch"}
    out = dense(tile=tf.zeros((2, 10 + 64, 12 + 64, 2)))["probability"]
    assert out.shape == (2, 10, 12)
    p = patch(patch=tf.zeros((3, 64, 64, 2)))["probability"]
    assert p.shape == (3,)
    assert float(tf.reduce_min(out)) >= 0.0
    assert float(tf.reduce_max(out)) <= 1.0
    with pytest.raises(ModelRejected, match="never overwritten"):
        export(trained_like(), tmp_path / "1", channels=2)


def test_disagreeing_signatures_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = ServedModel(trained_like(), 2)

    def shifted(patch: tf.Tensor) -> dict[str, tf.Tensor]:  # a 'same'-padding-like bug: off by one pixel
        return served.patch(patch=tf.roll(patch, shift=1, axis=1))

    assert agreement(served.dense, shifted, 2) > 1e-5
    original = ServedModel._patch
    monkeypatch.setattr(
        ServedModel, "_patch", lambda self, patch: {"probability": original(self, patch)["probability"] + 0.01}
    )
    with pytest.raises(ModelRejected, match="disagree by 0.01"):
        export(trained_like(), tmp_path / "2", channels=2)
    assert not (tmp_path / "2").exists()
