"""Model versions written for tests: small real SavedModels in a real repository layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.repository import ModelRepository


def export_version(
    repo: ModelRepository, scratch: Path, *, seed: int, scale: float = 1.0, name: str = "lightning"
) -> int:
    """Export a small combined model (width 4, random weights) as the next version of ``name``.

    ``scale`` is the calibration slope; NaN writes a version whose every output is NaN, which the gate must refuse.
    """
    import keras
    import tensorflow as tf

    from models.architectures import build
    from models.calibration import calibrated
    from models.export import ServedModel, export

    model = build("combined", ("ir", "ltg"), width=4, seed=seed)
    for layer in model.layers:  # as tests/serve/conftest.py: spread the logits
        if isinstance(layer, keras.layers.Conv2D):
            layer.kernel.assign(layer.kernel * 3.0)
    if np.isfinite(scale):
        export(calibrated(model, scale, -1.0), scratch, channels=2)
    else:  # export() itself refuses a NaN model (its signatures "disagree by nan"): write it as a careless tool would
        served = ServedModel(calibrated(model, scale, -1.0), 2)
        tf.saved_model.save(served, str(scratch), signatures={"serving_default": served.dense, "patch": served.patch})
    card = {"feature_set": "ir-ltg/1", "channels": ["ir", "ltg"], "halo": 32}
    return repo.add(name, scratch, card, channels=2)
