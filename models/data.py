"""Training input: TFRecord shards → filled, checked, shuffled batches.

The fill policy of :func:`featurize.channels.model_input` is applied here, in
the graph: NaN in a channel becomes that channel's neutral value
(:data:`featurize.channels.FILL_VALUES`). After filling, every batch is checked
with ``tf.debugging.check_numerics``, so a non-finite value that survives (an
``inf``, a broken shard) stops training with the tensor's name instead of
turning the weights into NaN. The shuffle buffer is a fixed number of batches
(default 16), so its memory follows the batch size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tensorflow as tf

from featurize.channels import FILL_VALUES
from models.dataset import feature_spec


def manifest(folder: Path) -> dict[str, Any]:
    """The dataset's ``dataset.json``."""
    path = folder / "dataset.json"
    if not path.is_file():
        msg = f"{folder} holds no dataset.json; build one with `ltgcast dataset build`"
        raise FileNotFoundError(msg)
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def split_dataset(
    folder: Path,
    split: str,
    *,
    batch: int,
    shuffle_batches: int = 16,
    seed: int = 0,
    repeat: bool = False,
    sampling_weights: bool = False,
) -> tf.data.Dataset:
    """Batches of ``(tile [B, 64, 64, C], label [B, 1, 1, 1], weight [B])`` for one split.

    ``weight`` is 1, or with ``sampling_weights`` the record's sampling weight
    (frame pixels of its kind per example) divided by the split's mean weight,
    which makes the loss that of the frames' pixel population. (One constant for
    the whole split: a per-batch normalisation would shrink the positives of a
    batch that happens to hold a heavy far negative.) Shuffles only when
    ``shuffle_batches`` > 0.
    """
    doc = manifest(folder)
    channels, patch = tuple(doc["channels"]), int(doc["patch"])
    spec = feature_spec(channels, tuple(doc["features"]), patch)
    files = [str(folder / name) for name in doc["splits"][split]["shards"]]
    fill = tf.constant([FILL_VALUES[c] for c in channels], tf.float32)

    def parse(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        parsed = tf.io.parse_single_example(record, spec)
        layers = [
            tf.reshape(tf.io.decode_raw(parsed[c], tf.float32, little_endian=True), (patch, patch)) for c in channels
        ]
        tile = tf.stack(layers, axis=-1)
        tile = tf.where(tf.math.is_nan(tile), tf.broadcast_to(fill, tf.shape(tile)), tile)
        tile = tf.debugging.check_numerics(tile, "input tile after the fill policy")
        label = tf.reshape(tf.cast(parsed["label"], tf.float32), (1, 1, 1))
        weight = tf.reshape(parsed["weight"], ()) if sampling_weights else tf.ones((), tf.float32)
        return tile, label, weight

    data = tf.data.TFRecordDataset(files)
    if shuffle_batches > 0:
        data = data.shuffle(shuffle_batches * batch, seed=seed, reshuffle_each_iteration=True)
    data = data.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if sampling_weights:
        mean = tf.constant(mean_weight(files, spec["weight"]), tf.float32)
        data = data.map(lambda x, y, w: (x, y, w / mean))
    if repeat:
        return data.repeat().batch(batch).prefetch(tf.data.AUTOTUNE)
    batches = -(-int(doc["splits"][split]["examples"]) // batch)  # known epoch length for Keras
    data = data.batch(batch).apply(tf.data.experimental.assert_cardinality(batches))
    return data.prefetch(tf.data.AUTOTUNE)


def mean_weight(files: list[str], weight_spec: Any) -> float:
    """The mean sampling weight of the records in ``files`` (1 when there are none)."""
    weights = tf.data.TFRecordDataset(files).map(
        lambda r: tf.io.parse_single_example(r, {"weight": weight_spec})["weight"], num_parallel_calls=tf.data.AUTOTUNE
    )
    total, count = 0.0, 0
    for batch in weights.batch(4096):
        total += float(tf.reduce_sum(batch))
        count += int(tf.size(batch))
    return total / count if count and total > 0 else 1.0


def with_class_weights(data: tf.data.Dataset, positive_weight: float) -> tf.data.Dataset:
    """Weight positive examples by ``positive_weight`` (class imbalance, made explicit)."""

    def weigh(x: tf.Tensor, y: tf.Tensor, w: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        positive = tf.reshape(y, (-1,)) > 0.5
        return x, y, tf.where(positive, positive_weight * w, w)

    return data.map(weigh)
