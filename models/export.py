"""Export: a SavedModel with a dense and a patch signature that provably agree.

Signatures
----------
``serving_default``
    input ``tile`` float32 ``[N, H + 2h, W + 2h, C]`` with ``h = 32`` → output
    ``probability`` float32 ``[N, H, W]``; output ``(i, j)`` belongs to input
    pixel ``(i + 32, j + 32)`` (the house contract, ARCHITECTURE.md). The Keras
    network gives ``H + 1`` by ``W + 1`` values for such a tile; the last row and
    column belong to pixels of the bottom and right halo and are dropped.
``patch``
    input ``patch`` float32 ``[N, 64, 64, C]`` → output ``probability`` ``[N]``;
    the patch of pixel ``(r, c)`` spans rows ``r - 32 .. r + 31`` and columns
    ``c - 32 .. c + 31``. Engineered features are computed inside the graph.
``serving_float16`` (only with ``export(..., float16=True)``)
    ``serving_default`` for a ``tile`` sent as float16 (half the bytes on the
    wire to TF Serving): the tile is cast to float32 in the graph and the output
    is float32. The model card allows it with ``"transport": ["float32",
    "float16"]``; the report gives the largest probability change the float16
    rounding of a random tile caused.

Inputs are channels scaled and filled as the model card says
(:func:`featurize.channels.model_input`). Before writing, and again after
reloading what was written, the two signatures are compared at random pixels of
a random tile; an export whose largest difference exceeds ``tolerance`` is
refused with :class:`~ingest.errors.ModelRejected`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ingest.errors import ModelRejected
from models.architectures import HALO, PATCH

#: Name of the optional float16-input signature (serve.tfserving asks for it by this name).
FLOAT16_SIGNATURE = "serving_float16"


class ServedModel(tf.Module):
    """The two serving functions around one Keras logit model."""

    def __init__(self, model: keras.Model, channels: int, *, float16: bool = False) -> None:
        super().__init__()
        self.model = model
        self.dense = tf.function(
            self._dense, input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32, name="tile")]
        )
        self.patch = tf.function(
            self._patch, input_signature=[tf.TensorSpec([None, PATCH, PATCH, channels], tf.float32, name="patch")]
        )
        if float16:  # only then: a model exported without it keeps exactly the two signatures it had
            self.dense_float16 = tf.function(
                self._dense_float16,
                input_signature=[tf.TensorSpec([None, None, None, channels], tf.float16, name="tile")],
            )

    def _dense(self, tile: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probability": tf.sigmoid(self.model(tile, training=False)[:, :-1, :-1, 0])}

    def _dense_float16(self, tile: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._dense(tf.cast(tile, tf.float32))

    def _patch(self, patch: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probability": tf.sigmoid(self.model(patch, training=False)[:, 0, 0, 0])}


def agreement(dense: Any, patch: Any, channels: int, *, pixels: int = 64, seed: int = 0) -> float:
    """Largest |dense − patch| probability at random pixels of a random tile (and its corners)."""
    rng = np.random.default_rng(seed)
    height, width = 37, 53
    tile = rng.uniform(-0.2, 1.2, (1, height + 2 * HALO, width + 2 * HALO, channels)).astype(np.float32)
    if channels > 1:
        tile[..., 1] = rng.poisson(0.5, tile.shape[:-1])
    full = np.asarray(dense(tile=tf.constant(tile))["probability"])[0]
    where = np.concatenate([rng.integers(0, [height, width], (pixels, 2)), [[0, 0], [height - 1, width - 1]]])
    cut = np.stack([tile[0, i : i + PATCH, j : j + PATCH] for i, j in where])
    single = np.asarray(patch(patch=tf.constant(cut))["probability"])
    return float(np.max(np.abs(full[where[:, 0], where[:, 1]] - single)))


def float16_agreement(dense: Any, dense_float16: Any, channels: int, *, seed: int = 2) -> tuple[float, float]:
    """How the float16 signature compares with ``serving_default`` on a random tile.

    Returns
    -------
    exact
        Largest |difference| when both get the same float16-rounded tile (the
        cast in the graph is exact, so this is 0 for a correct export).
    rounding
        Largest |difference| between the float32 tile and its float16 rounding:
        the price of the float16 transport.
    """
    rng = np.random.default_rng(seed)
    tile = rng.uniform(-0.2, 1.2, (1, 37 + 2 * HALO, 53 + 2 * HALO, channels)).astype(np.float32)
    if channels > 1:
        tile[..., 1] = rng.poisson(0.5, tile.shape[:-1])
    half = tile.astype(np.float16)
    full = np.asarray(dense(tile=tf.constant(tile))["probability"])
    rounded = np.asarray(dense(tile=tf.constant(half.astype(np.float32)))["probability"])
    sent = np.asarray(dense_float16(tile=tf.constant(half))["probability"])
    return float(np.max(np.abs(sent - rounded))), float(np.max(np.abs(sent - full)))


def export(
    model: keras.Model, path: Path, channels: int, *, tolerance: float = 1e-5, float16: bool = False
) -> dict[str, float]:
    """Write ``model`` as a SavedModel at ``path``; refuse if its signatures disagree.

    Returns the largest difference measured before writing and after reloading;
    with ``float16`` the ``serving_float16`` signature is added too, checked
    against ``serving_default`` on float16-rounded tiles, and the report adds
    the largest change the float16 rounding caused
    (``float16_max_abs_difference``).
    """
    served = ServedModel(model, channels, float16=float16)
    before = agreement(served.dense, served.patch, channels)
    if not before <= tolerance:
        msg = f"dense and patch signatures disagree by {before:.3g} in probability (allowed {tolerance:g})"
        raise ModelRejected(msg)
    if path.exists():
        msg = f"{path} exists; a model version is never overwritten"
        raise ModelRejected(msg)
    signatures = {"serving_default": served.dense, "patch": served.patch}
    if float16:
        signatures[FLOAT16_SIGNATURE] = served.dense_float16
    tf.saved_model.save(served, str(path), signatures=signatures)
    loaded = tf.saved_model.load(str(path))
    after = agreement(loaded.signatures["serving_default"], loaded.signatures["patch"], channels, seed=1)
    if not after <= tolerance:
        msg = f"the written SavedModel's signatures disagree by {after:.3g} (allowed {tolerance:g})"
        raise ModelRejected(msg)
    report = {"max_abs_difference_before": before, "max_abs_difference_after_reload": after, "halo": HALO}
    if float16:
        exact, rounding = float16_agreement(
            loaded.signatures["serving_default"], loaded.signatures[FLOAT16_SIGNATURE], channels
        )
        if not exact <= tolerance:
            msg = (
                f"the {FLOAT16_SIGNATURE} signature disagrees with serving_default by {exact:.3g} "
                f"(allowed {tolerance:g})"
            )
            raise ModelRejected(msg)
        report["float16_max_abs_difference"] = rounding
    return report
