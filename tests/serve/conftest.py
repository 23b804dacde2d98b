"""A small exported model version in a real repository layout, shared by the serve tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def model_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``BASE/lightning/1``: an untrained but non-trivial combined model (random weights, width 4), served."""
    import keras

    from models.architectures import build
    from models.calibration import calibrated
    from models.export import export
    from models.repository import ModelRepository

    base = tmp_path_factory.mktemp("repo")
    model = build("combined", ("ir", "ltg"), width=4, seed=11)
    for layer in model.layers:  # spread the logits so probabilities are not all near 0.5
        if isinstance(layer, keras.layers.Conv2D):
            layer.kernel.assign(layer.kernel * 3.0)
    scratch = base / "scratch"
    export(calibrated(model, 1.0, -1.0), scratch, channels=2)
    repo = ModelRepository(base)
    card = {"feature_set": "ir-ltg/1", "channels": ["ir", "ltg"], "halo": 32}
    version = repo.add("lightning", scratch, card, channels=2)
    repo.promote("lightning", version, reason="test")
    return base
