"""Export: a SavedModel with a dense and a patch signature that provably agree.

Signatures
----------
``serving_default``
    input ``tile`` float32 ``[N, H + 2h, W + 2h, C]`` with ``h = 32`` → output
    ``probability`` float32 ``[N, H, W]``; output ``(i, j)`` belongs to input
    pixel ``(i + 32, j + 32)`` (the house contract, docs/architecture.md). The Keras
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
refused with :class:`~foundation.errors.ModelRejected`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from foundation.errors import ModelRejected
from models.architectures import HALO, PATCH

#: Name of the optional float16-input signature (serve.scoring.tfserving asks for it by this name).
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


# -- the converted artefact (model.onnx) -----------------------------------------------------------------------
ONNX_OPSET = 17
_BIG = 2**62  # "to the end" of a Slice


def _ladder(graph: Any, node: Any, helper: Any, constants: dict[str, Any]) -> list[Any] | None:
    """``node`` (a stride-1, unpadded 2-D pool of power-of-two kernel) as a doubling ladder of Slice + Add/Max.

    A window of ``k = 2**n`` along an axis is ``n`` steps ``y[i] = op(x[i], x[i + s])`` with ``s = 1, 2, 4 …``:
    ``log2 k`` operations per output instead of ``k`` (the maximum is the same; the sum is a pairwise sum,
    then scaled by ``1/k``, a power of two). ``None`` when the node is not such a pool.
    """
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    kernel = list(attrs.get("kernel_shape", []))
    plain = (
        len(kernel) == 2
        and all(k > 0 and not k & (k - 1) for k in kernel)
        and list(attrs.get("strides", [1, 1])) == [1, 1]
        and not any(attrs.get("pads", [0]))
        and set(attrs) <= {"kernel_shape", "strides", "pads"}
    )
    if not plain:
        return None
    op = "Add" if node.op_type == "AveragePool" else "Max"
    nodes, x, tag = [], node.input[0], node.output[0]
    for axis, size in zip((2, 3), kernel, strict=True):
        step = 1
        while step < size:
            low, high = f"{tag}__lo{axis}_{step}", f"{tag}__hi{axis}_{step}"
            nodes.append(
                helper.make_node(
                    "Slice", [x, _const(constants, 0), _const(constants, -step), _const(constants, axis)], [low]
                )
            )
            nodes.append(
                helper.make_node(
                    "Slice", [x, _const(constants, step), _const(constants, _BIG), _const(constants, axis)], [high]
                )
            )
            x = f"{tag}__{op.lower()}{axis}_{step}"
            nodes.append(helper.make_node(op, [low, high], [x]))
            step *= 2
    if op == "Add":
        scale = f"ladder_scale_{kernel[0] * kernel[1]}"
        constants.setdefault(scale, np.array(1.0 / (kernel[0] * kernel[1]), np.float32))
        nodes.append(helper.make_node("Mul", [x, scale], [tag]))
    else:
        nodes.append(helper.make_node("Identity", [x], [tag]))
    return nodes


def _const(constants: dict[str, Any], value: int) -> str:
    name = f"ladder_i64_{value}"
    constants.setdefault(name, np.array([value], np.int64))
    return name


def ladder_pools(model: Any) -> int:
    """Rewrite the box pools of an ONNX model in place as doubling ladders (see :func:`_ladder`); count them.

    The converters turn ``AveragePooling2D((64, 1))`` into an ``AveragePool`` that ONNX Runtime and
    OpenVINO evaluate at 64 reads per output: more than half of the scoring time. The ladder is exact for
    the maximum and a pairwise sum for the mean (it agrees with TensorFlow to float32 rounding; the
    artefact's Δp is measured after the rewrite).
    """
    from onnx import helper, numpy_helper

    constants: dict[str, Any] = {}
    nodes, rewritten = [], 0
    for node in model.graph.node:
        ladder = _ladder(model.graph, node, helper, constants) if node.op_type in ("AveragePool", "MaxPool") else None
        nodes.extend(ladder or [node])
        rewritten += ladder is not None
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items())
    return rewritten


def convert_onnx(saved_model: Path, out: Path) -> dict[str, Any]:
    """Convert a SavedModel's ``serving_default`` to ONNX at ``out`` (tf2onnx, then :func:`ladder_pools`).

    tf2onnx runs as its own process (``python -m tf2onnx.convert``): it needs TensorFlow and leaves graph
    state behind. Returns the card fields of the conversion (converter, opset, pools rewritten).
    """
    import subprocess
    import sys

    import onnx

    raw = out.with_name(out.name + ".raw")
    command = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model),
               "--signature_def", "serving_default", "--opset", str(ONNX_OPSET), "--output", str(raw)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not raw.is_file():
        msg = f"tf2onnx could not convert {saved_model}: {done.stderr.strip().splitlines()[-1:]}"
        raise ModelRejected(msg)
    model = onnx.load(str(raw))
    raw.unlink()
    rewritten = ladder_pools(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    import tf2onnx

    return {"converter": f"tf2onnx {tf2onnx.__version__}", "opset": ONNX_OPSET, "pools_rewritten": rewritten}


def check_tiles(feature_set: str, seed: int = 5) -> list[np.ndarray]:
    """Tiles ``[1, h + 64, w + 64, C]`` a converted artefact is compared on: what the gate and export use.

    Random in-range channels at odd sizes (one of a single output pixel), the golden batch's cold storm,
    and the behavioural suite's scenes through the feature set (storms in the middle, at an edge and in a
    corner of the frame, clear sky), as serving cuts them.
    """
    from featurize.channels import get_feature_set
    from models.behaviour import DenseScorer, Scene, clear_sky, field, storm

    fs = get_feature_set(feature_set)
    rng = np.random.default_rng(seed)
    lows = np.array([-1.0 if c == "ir_trend" else 0.0 for c in fs.channels], np.float32)
    tiles = [
        (lows + rng.uniform(0, 1, (h + 2 * HALO, w + 2 * HALO, len(fs.channels))) * (1 - lows)).astype(np.float32)
        for h, w in ((1, 1), (37, 53), (130, 97))
    ]
    cut = DenseScorer(lambda **_: {}, fs).tile  # only its tile cutting
    for center, core_k, flashes in (((48, 48), 200.0, 100.0), ((2, 94), 210.0, 30.0), ((0, 0), 220.0, 1.0)):
        tiles.append(cut(storm((96, 96), center, core_k, flashes)))
    tiles += [cut(field()), cut(field((40, 25))), cut(Scene(clear_sky((33, 70)), np.zeros((33, 70))))]
    return [t[None].astype(np.float32) for t in tiles]


def converted_agreement(dense: Any, onnx: bytes | Path, feature_set: str, runtimes: Sequence[str]) -> dict[str, float]:
    """Largest |probability difference| between ``dense`` (TensorFlow) and the ONNX model per runtime.

    A runtime not installed here is left out; one that cannot load the model counts as ``inf`` (never exact).
    """
    from foundation.errors import ArtefactUnavailable
    from models.onnx import load_runner

    tiles = check_tiles(feature_set)
    reference = [np.asarray(dense(tile=tf.constant(t))["probability"]) for t in tiles]
    found: dict[str, float] = {}
    for runtime in runtimes:
        try:
            run = load_runner(onnx, runtime, 1)
        except ArtefactUnavailable as exc:
            if exc.reason != "no_runtime":
                found[runtime] = math.inf
            continue
        found[runtime] = _worst(run, tiles, reference)
    return found


def _worst(run: Any, tiles: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """Largest |difference| of ``run`` against ``reference``; inf when it fails or answers another shape."""
    worst = 0.0
    for tile, expected in zip(tiles, reference, strict=True):
        try:
            got = run(tile)
        except Exception:  # an artefact the runtime refuses for this input is not the model that was checked
            return float("inf")
        if got.shape != expected.shape or not np.isfinite(got).all():
            return float("inf")
        worst = max(worst, float(np.max(np.abs(got - expected))))
    return worst


def add_converted(version_path: Path, card: dict[str, Any], *, tolerance: float = 1e-5) -> dict[str, Any]:
    """Convert a version's SavedModel to ``model.onnx`` beside it; the card entry (hash, Δp per runtime).

    Refused with :class:`~foundation.errors.ModelRejected` when no runtime agrees within ``tolerance``; the
    file is written under a temporary name and renamed, so a reader never sees half of it.
    """
    from models.onnx import CARD_KEY, ONNX_FILE, RUNTIMES, sha256_of

    partial = version_path / f".{ONNX_FILE}.partial"
    entry = convert_onnx(version_path, partial)
    dense = tf.saved_model.load(str(version_path)).signatures["serving_default"]
    differences = converted_agreement(dense, partial, card["feature_set"], RUNTIMES)
    if not any(d <= tolerance for d in differences.values()):
        partial.unlink()
        msg = f"{ONNX_FILE}: no runtime agrees with serving_default within {tolerance:g}: {differences}"
        raise ModelRejected(msg)
    entry |= {"file": ONNX_FILE, "sha256": sha256_of(partial), "bytes": partial.stat().st_size,
              "max_abs_difference": differences, "tolerance": tolerance}  # fmt: skip
    partial.rename(version_path / ONNX_FILE)
    return {CARD_KEY: entry}
