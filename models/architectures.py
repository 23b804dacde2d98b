"""Fully convolutional lightning models: one network for 64×64 patches and for whole tiles.

Every model here is built from stride-1, 'valid' operations whose receptive
field is exactly 64×64 pixels: convolutions (dilated instead of strided),
max-pooling by shifted maxima, and box statistics by separable pooling. Applied
to a 64×64 patch it gives one value; applied to a tile of ``H + 63`` by
``W + 63`` pixels it gives ``H × W`` values, and output ``(i, j)`` is exactly what
the patch around tile pixel ``(i + 32, j + 32)`` gives (the patch of pixel
``(r, c)`` spans rows ``r - 32 .. r + 31``, the :mod:`featurize` box
convention). So the patch model trained on patches *is* the dense scorer; no
conversion, no 'same'-padding drift.

Inputs are channels-last, already scaled and filled (:func:`featurize.channels.model_input`).
The models output a **logit** (no activation on the last layer); the served
probability is its sigmoid.

Layers (receptive field after each)::

    conv 5×5 (5) · conv 5×5 (9) · max 2×2 (10) · conv 3×3 d2 (14) · conv 3×3 d2 (18)
    · max 2×2 d2 (20) · conv 3×3 d4 (28) · conv 3×3 d4 (36) · max 2×2 d4 (40)
    · conv 3×3 d8 (56) · conv 2×2 d8 (64)

The engineered features of :mod:`featurize.features` are computed in the graph
over the same 64×64 and central 16×16 boxes (on the filled input: a filled
pixel counts as its fill value, where the NumPy features skip NaN).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import keras
from keras import layers, ops

from featurize.channels import COLD_TOP_K, ir_threshold

PATCH = 64
HALO = PATCH // 2
CORE = 16

#: The convolution trunk: (kernel, dilation) or ("max", dilation).
TRUNK: tuple[tuple[str | int, int], ...] = (
    (5, 1), (5, 1), ("max", 1), (3, 2), (3, 2), ("max", 2), (3, 4), (3, 4), ("max", 4), (3, 8), (2, 8),
)  # fmt: skip


def receptive_field(trunk: Sequence[tuple[str | int, int]] = TRUNK) -> int:
    """Pixels one output sees along each axis.

    >>> receptive_field()
    64
    """
    field = 1
    for kernel, dilation in trunk:
        size = 2 if kernel == "max" else int(kernel)
        field += (size - 1) * dilation
    return field


@keras.saving.register_keras_serializable(package="ltgcast")
class ShiftedMax(layers.Layer):
    """2×2 max-pooling with stride 1 and dilation ``d``: the max of four shifted views ('valid')."""

    def __init__(self, dilation: int = 1, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.dilation = dilation

    def call(self, x):  # noqa: D102
        d = self.dilation
        rows = ops.maximum(x[:, :-d, :, :], x[:, d:, :, :])
        return ops.maximum(rows[:, :, :-d, :], rows[:, :, d:, :])

    def get_config(self) -> dict[str, object]:  # noqa: D102
        return {**super().get_config(), "dilation": self.dilation}


@keras.saving.register_keras_serializable(package="ltgcast")
class BoxFeatures(layers.Layer):
    """The engineered features per output pixel, from the 64×64 box and its central 16×16.

    Channel order of the output: for ``ir`` mean/max over 64, mean/max over 16,
    cold fraction over 64; for ``ltg`` mean over 64 and 16, max over 16; for
    ``ir_trend`` mean/max over 16. Separable pooling keeps the cost O(box) per pixel.
    """

    def __init__(self, channels: Sequence[str], **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.channels = tuple(channels)
        self.cold = float(ir_threshold(COLD_TOP_K))

    @staticmethod
    def _pool(x, size: int, kind: str):
        pool = layers.AveragePooling2D if kind == "mean" else layers.MaxPooling2D
        x = pool(pool_size=(size, 1), strides=1, padding="valid")(x)
        return pool(pool_size=(1, size), strides=1, padding="valid")(x)

    def call(self, x):  # noqa: D102
        trim = HALO - CORE // 2
        out = []
        for index, name in enumerate(self.channels):
            c = x[..., index : index + 1]
            core = c[:, trim:-trim, trim:-trim, :]
            if name == "ir":
                cold = ops.cast(c > self.cold, c.dtype)
                out += [self._pool(c, PATCH, "mean"), self._pool(c, PATCH, "max")]
                out += [self._pool(core, CORE, "mean"), self._pool(core, CORE, "max"), self._pool(cold, PATCH, "mean")]
            elif name == "ltg":
                out += [self._pool(c, PATCH, "mean"), self._pool(core, CORE, "mean"), self._pool(core, CORE, "max")]
            else:
                out += [self._pool(core, CORE, "mean"), self._pool(core, CORE, "max")]
        return ops.concatenate(out, axis=-1)

    def get_config(self) -> dict[str, object]:  # noqa: D102
        return {**super().get_config(), "channels": list(self.channels)}


@keras.saving.register_keras_serializable(package="ltgcast")
class Calibration(layers.Layer):
    """``a · x + b`` with fixed (non-trainable) ``a`` and ``b``."""

    def __init__(self, scale: float = 1.0, offset: float = 0.0, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.scale, self.offset = float(scale), float(offset)

    def call(self, x):  # noqa: D102
        return x * self.scale + self.offset

    def get_config(self) -> dict[str, object]:  # noqa: D102
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


@keras.saving.register_keras_serializable(package="ltgcast")
class PersistenceFloor(layers.Layer):
    """The logit of ``floor`` where the pixel's 16×16 box holds lightning now, else a logit no model goes below.

    Input: the model's tile (channels-last, ``ltg`` at ``index``); output: one logit per output pixel, aligned
    with the network's ('valid', ``S - 63``), from the 16×16 box of the :mod:`featurize` convention (rows
    ``r - 8 .. r + 7``). :func:`with_persistence_floor` takes the maximum of the two logits.
    """

    def __init__(self, index: int, floor: float, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.index, self.floor = int(index), float(floor)

    def call(self, x):  # noqa: D102
        trim = HALO - CORE // 2
        ltg = x[:, trim:-trim, trim:-trim, self.index : self.index + 1]
        peak = BoxFeatures._pool(ltg, CORE, "max")
        logit = math.log(self.floor / (1.0 - self.floor))
        return ops.where(peak > 0, ops.full_like(peak, logit), ops.full_like(peak, -1e4))

    def get_config(self) -> dict[str, object]:  # noqa: D102
        return {**super().get_config(), "index": self.index, "floor": self.floor}


def with_persistence_floor(model: keras.Model, channels: Sequence[str], floor: float) -> keras.Model:
    """``model`` whose probability is at least ``floor`` wherever the 16×16 box around a pixel holds lightning now.

    The network learns how lightning now carries on from the training data, where a lone flash at a clear-sky
    box's edge often has no successor; a forecaster reads any flash near a pixel as a warning. The floor makes
    that a property of the served model, in the graph (embedded and TF Serving alike), monotone in lightning,
    local and the same at every pixel.

    >>> quiet = build("logistic", ("ir", "ltg"))  # a model that says 0 everywhere: logit -20
    >>> _ = quiet.get_layer("logit").kernel.assign(keras.ops.zeros_like(quiet.get_layer("logit").kernel))
    >>> _ = quiet.get_layer("logit").bias.assign([-20.0])
    >>> x = keras.ops.zeros((1, 96, 96, 2)).numpy(); x[0, 40, 40, 1] = 1.0  # a flash at output pixel (8, 8)
    >>> p = keras.ops.sigmoid(with_persistence_floor(quiet, ("ir", "ltg"), 0.35)(x)).numpy()[0, ..., 0]
    >>> [round(float(p[r, c]), 2) for r, c in ((0, 8), (1, 8), (16, 16), (17, 8))]  # boxes: rows r - 8 .. r + 7
    [0.0, 0.35, 0.35, 0.0]
    """
    if not 0.0 < floor < 1.0:
        msg = f"a persistence floor is a probability in (0, 1); got {floor}"
        raise ValueError(msg)
    floor_logit = PersistenceFloor(list(channels).index("ltg"), floor, name="persistence_floor")(model.input)
    logit = layers.Maximum(name="floored_logit")([model.output, floor_logit])
    return keras.Model(model.input, logit, name=model.name)


def _trunk(x, width: int):
    for kernel, dilation in TRUNK:
        if kernel == "max":
            x = ShiftedMax(dilation)(x)
        else:
            x = layers.Conv2D(width, int(kernel), dilation_rate=dilation, padding="valid", activation="relu")(x)
    return x


def build(arch: str, channels: Sequence[str], *, width: int = 16, seed: int = 0, dropout: float = 0.0) -> keras.Model:
    """A fully convolutional logit model: ``[N, S, S, C]`` → ``[N, S - 63, S - 63, 1]``.

    Parameters
    ----------
    arch
        ``cnn`` (the convolution trunk only), ``combined`` (trunk + engineered
        features, wide and deep: a ReLU head over both plus a linear path
        from the batch-normalised features, so it starts from what the
        logistic baseline can learn) or ``logistic`` (a linear model of the
        engineered features).
    channels
        Channel names, in input order (a feature set's ``channels``).
    width
        Filters per convolution.
    seed
        Weight initialisation seed.
    dropout
        Dropout rate on the convolution trunk's output while training (identity when scoring).

    Examples
    --------
    >>> model = build("combined", ("ir", "ltg"), width=4)
    >>> tuple(model(keras.ops.zeros((2, 70, 66, 2))).shape)
    (2, 7, 3, 1)
    """
    if arch not in ARCHITECTURES:
        msg = f"unknown architecture {arch!r}; valid: {', '.join(ARCHITECTURES)}"
        raise ValueError(msg)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(None, None, len(channels)), name="tile")
    parts = []
    if arch in ("cnn", "combined"):
        trunk = _trunk(inputs, width)
        parts.append(layers.Dropout(dropout, seed=seed)(trunk) if dropout > 0 else trunk)
    if arch in ("combined", "logistic"):
        features = BoxFeatures(channels)(inputs)
        parts.append(layers.BatchNormalization(name="feature_scale")(features) if arch == "combined" else features)
    x = parts[0] if len(parts) == 1 else layers.Concatenate()(parts)
    if arch != "logistic":
        x = layers.Conv2D(2 * width, 1, activation="relu", name="head")(x)
    if arch == "combined":  # wide and deep: the scaled features also reach the logit linearly
        deep = layers.Conv2D(1, 1, activation=None, name="deep")(x)
        wide = layers.Conv2D(1, 1, activation=None, use_bias=False, name="wide")(parts[1])
        logit = layers.Add(name="logit")([deep, wide])  # no activation before the sigmoid
    else:
        logit = layers.Conv2D(1, 1, activation=None, name="logit")(x)  # no activation before the sigmoid
    return keras.Model(inputs, logit, name=f"ltgcast_{arch}")


ARCHITECTURES = ("cnn", "combined", "logistic")


def load(path: str | Path) -> keras.Model:
    """Load a saved ``.keras`` model of this module (its custom layers are registered on import)."""
    custom = {
        "ShiftedMax": ShiftedMax,
        "BoxFeatures": BoxFeatures,
        "Calibration": Calibration,
        "PersistenceFloor": PersistenceFloor,
    }
    return keras.models.load_model(path, custom_objects=custom)
