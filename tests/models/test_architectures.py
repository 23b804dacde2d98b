"""The fully convolutional models: a tile gives, at every pixel, exactly what that pixel's patch gives."""

from __future__ import annotations

import numpy as np
import pytest

from featurize.features import dense_features, feature_names
from models.architectures import ARCHITECTURES, PATCH, BoxFeatures, build, receptive_field


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_dense_output_equals_patch_output_at_random_pixels(arch: str) -> None:
    rng = np.random.default_rng(1)
    model = build(arch, ("ir", "ltg"), width=8, seed=3)
    # Random, non-trivial weights: initial BatchNorm statistics would hide the features.
    for weight in model.weights:
        weight.assign(rng.normal(0, 0.3, weight.shape).astype("float32") + (1.0 if "variance" in weight.path else 0.0))
    height, width = 40, 57
    tile = rng.uniform(-0.2, 1.2, (1, height + PATCH - 1, width + PATCH - 1, 2)).astype("float32")
    tile[..., 1] = rng.poisson(0.3, tile.shape[:-1])
    dense = np.asarray(model(tile))[0, :, :, 0]
    assert dense.shape == (height, width)
    pixels = np.concatenate([rng.integers(0, [height, width], (30, 2)), [[0, 0], [height - 1, width - 1]]])
    patches = np.stack([tile[0, i : i + PATCH, j : j + PATCH] for i, j in pixels])
    single = np.asarray(model(patches))[:, 0, 0, 0]
    np.testing.assert_allclose(
        dense[pixels[:, 0], pixels[:, 1]], single, rtol=0, atol=1e-5 * max(1, np.abs(single).max())
    )
    assert receptive_field() == PATCH


def test_in_graph_features_match_the_numpy_features_on_filled_input() -> None:
    rng = np.random.default_rng(2)
    channels = {"ir": rng.uniform(-0.1, 1.1, (90, 100)).astype("float32"),
                "ltg": rng.poisson(0.2, (90, 100)).astype("float32")}  # fmt: skip
    numpy = dense_features(channels)
    tile = np.stack([np.pad(channels[c], 32, constant_values=np.nan)[:-1, :-1] for c in ("ir", "ltg")], axis=-1)
    # Inside the frame, away from its edge, the graph's boxes see the same pixels as NumPy's.
    graph = np.asarray(BoxFeatures(("ir", "ltg"))(np.nan_to_num(tile)[None]))[0]
    names = feature_names(("ir", "ltg"))
    assert graph.shape == (90, 100, len(names))
    for k, name in enumerate(names):
        np.testing.assert_allclose(
            graph[32:-32, 32:-32, k], numpy[name][32:-32, 32:-32], rtol=1e-5, atol=1e-6, err_msg=name
        )


@pytest.mark.parametrize(
    ("arch", "last"), [("cnn", ["logit"]), ("logistic", ["logit"]), ("combined", ["deep", "wide"])]
)
def test_the_logit_layer_has_no_activation(arch: str, last: list[str]) -> None:
    model = build(arch, ("ir", "ltg"), width=4)
    assert [layer.activation.__name__ for layer in map(model.get_layer, last)] == ["linear"] * len(last)
    assert model.layers[-1].name == "logit"
    with pytest.raises(ValueError, match="unknown architecture 'mlp'; valid: cnn, combined, logistic"):
        build("mlp", ("ir", "ltg"))


def test_the_persistence_floor_lifts_only_pixels_whose_box_holds_lightning_and_keeps_dense_equal_to_patch() -> None:
    from featurize.boxes import box_max
    from featurize.features import CORE
    from models.architectures import with_persistence_floor

    rng = np.random.default_rng(4)
    model = build("combined", ("ir", "ltg", "ir_trend"), width=4, seed=2)
    floored = with_persistence_floor(model, ("ir", "ltg", "ir_trend"), 0.36)
    height, width = 30, 41
    tile = rng.uniform(0, 1, (1, height + PATCH - 1, width + PATCH - 1, 3)).astype("float32")
    tile[..., 1] = 0.0
    tile[0, 50, 60, 1] = 0.15  # one flash, bounded scaling
    before, after = np.asarray(model(tile))[0, ..., 0], np.asarray(floored(tile))[0, ..., 0]
    held = box_max(tile[0, PATCH // 2 : PATCH // 2 + height, PATCH // 2 : PATCH // 2 + width, 1], CORE) > 0
    assert held.sum() == 16 * 16  # the boxes of 256 output pixels hold the flash
    sigmoid = 1 / (1 + np.exp(-after))
    assert (sigmoid[held] >= 0.36 - 1e-6).all()
    np.testing.assert_array_equal(after[~held], before[~held])  # elsewhere the network's own answer
    np.testing.assert_array_equal(after[held], np.maximum(before[held], np.float32(np.log(0.36 / 0.64))))
    pixels = rng.integers(0, [height, width], (20, 2))
    patches = np.stack([tile[0, i : i + PATCH, j : j + PATCH] for i, j in pixels])
    np.testing.assert_allclose(after[pixels[:, 0], pixels[:, 1]], np.asarray(floored(patches))[:, 0, 0, 0], atol=1e-5)
    with pytest.raises(ValueError, match=r"a persistence floor is a probability in \(0, 1\); got 1.5"):
        with_persistence_floor(model, ("ir", "ltg", "ir_trend"), 1.5)
