"""Models and model inputs for tests: small real SavedModels in a real repository layout, filled frames."""

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


def frame(height: int = 90, width: int = 131, seed: int = 0) -> np.ndarray:
    """A filled ``[H, W, 2]`` model input (``ir`` uniform in [0, 1], ``ltg`` Poisson counts), with uneven tiles."""
    rng = np.random.default_rng(seed)
    x = np.zeros((height, width, 2), np.float32)
    x[..., 0] = rng.uniform(0, 1, (height, width))
    x[..., 1] = rng.poisson(0.3, (height, width))
    return x
