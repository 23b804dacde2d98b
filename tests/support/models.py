"""Models and model inputs for tests: small real SavedModels in a real repository layout, filled frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.repository import ModelRepository

#: The committed model repository, which ``ltgcast run`` serves by default.
DEFAULT_MODELS = Path(__file__).resolve().parents[2] / "models" / "repository"


def served_version(name: str = "lightning") -> int:
    """The version of the committed repository that ``ltgcast run`` serves by default."""
    version = ModelRepository(DEFAULT_MODELS).current(name)
    assert version is not None, f"{DEFAULT_MODELS} serves no version of {name}"
    return version


def export_test_model(
    repo: ModelRepository, scratch: Path, *, seed: int, scale: float = 1.0, name: str = "lightning",
    feature_set: str = "ir-ltg/1", behaved: bool = False, float16: bool = False, card: dict[str, Any] | None = None,
) -> int:  # fmt: skip
    """Export a small combined model (width 4, random weights) as the next version of ``name``.

    ``scale`` is the calibration slope; NaN writes a version whose every output is NaN, which the gate must refuse.
    ``feature_set`` chooses the channels: ``ir-ltg-trend/2`` gives a 3-channel model with ``ir_trend``.
    ``behaved`` makes it a version the behavioural gate accepts (random weights do not pass it): the deep path
    silenced and the wide path a logistic model of the coldest top and the most flashes in the core box, so the
    seed still changes the trunk but not the answer. ``float16`` adds the float16 transport signature (its rounding
    checked here); ``card`` adds entries to the model card.
    """
    import keras
    import tensorflow as tf

    from featurize.channels import get_feature_set
    from featurize.features import feature_names
    from models.architectures import build
    from models.calibration import calibrated
    from models.export import ServedModel, export

    channels = get_feature_set(feature_set).channels
    model = build("combined", channels, width=4, seed=seed)
    for layer in model.layers:  # spread the logits so probabilities are not all near 0.5
        if isinstance(layer, keras.layers.Conv2D):
            layer.kernel.assign(layer.kernel * 3.0)
    if behaved:
        fs = get_feature_set(feature_set)
        deep, wide = model.get_layer("deep"), model.get_layer("wide")
        deep.kernel.assign(np.zeros(deep.kernel.shape, np.float32))
        deep.bias.assign(np.array([-4.0], np.float32))
        kernel = np.zeros(wide.kernel.shape, np.float32)
        names = feature_names(channels)
        kernel[..., names.index("ir_max_16"), 0] = 4.0
        kernel[..., names.index("ltg_max_16"), 0] = 4.0 if fs.scaling == "raw" else 20.0
        wide.kernel.assign(kernel)
    if np.isfinite(scale):
        check = export(calibrated(model, scale, -1.0), scratch, channels=len(channels), float16=float16)
        if float16:
            assert 0.0 < check["float16_max_abs_difference"] < 0.05, check
    else:  # export() itself refuses a NaN model (its signatures "disagree by nan"): write it as a careless tool would
        served = ServedModel(calibrated(model, scale, -1.0), len(channels))
        tf.saved_model.save(served, str(scratch), signatures={"serving_default": served.dense, "patch": served.patch})
    entries = {"feature_set": feature_set, "channels": list(channels), "halo": 32, **(card or {})}
    return repo.add(name, scratch, entries, channels=len(channels))


_TREND_BASES: dict[Path, Path] = {}


def trend_repository(tmp_path_factory: Any) -> Path:
    """A model repository whose served ``lightning/1`` is a small 3-channel ``ir-ltg-trend/2`` model (made once per
    test session, shared by the modules that ask: an export takes seconds)."""
    session = Path(tmp_path_factory.getbasetemp())
    if session not in _TREND_BASES:
        base = Path(tmp_path_factory.mktemp("trend-repo"))
        repo = ModelRepository(base)
        version = export_test_model(repo, base / "scratch", seed=13, feature_set="ir-ltg-trend/2")
        repo.promote("lightning", version, reason="test: a temporal model")
        _TREND_BASES[session] = base
    return _TREND_BASES[session]


def frame(height: int = 90, width: int = 131, seed: int = 0) -> np.ndarray:
    """A filled ``[H, W, 2]`` model input (``ir`` uniform in [0, 1], ``ltg`` Poisson counts), with uneven tiles."""
    rng = np.random.default_rng(seed)
    x = np.zeros((height, width, 2), np.float32)
    x[..., 0] = rng.uniform(0, 1, (height, width))
    x[..., 1] = rng.poisson(0.3, (height, width))
    return x
