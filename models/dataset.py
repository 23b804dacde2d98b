"""The training set on disk: sharded TFRecords of ``tf.train.Example``, written shuffled across frames.

Record schema (version 1; every record of a dataset has every key)
------------------------------------------------------------------
=================== ============ ==============================================
key                 type         meaning
=================== ============ ==============================================
``<channel>``       bytes        the channel's S×S patch: float32 little-endian,
                                 row-major, NaN kept (``tf.io.decode_raw``)
``<feature>``       float × 1    each engineered feature (``featurize.features``)
``label``           int64        1 if lightning in the label box and window
``kind``            int64        0 positive, 1 near-storm negative, 2 far negative
``weight``          float        frame pixels of its kind per example of its kind
``lat``, ``lon``    float        pixel centre, degrees (ground ellipsoid)
``row``, ``col``    int64        pixel in the frame
``time``            int64        frame scan start, s since 1970 UTC
``frame``           bytes        the ABI file name
=================== ============ ==============================================

The fill policy is applied at training time, not here: NaN stays NaN on disk.
``dataset.json`` beside the shards names the feature set, channels, features,
patch size, label rule, shard files and counts; ``stats.json`` holds the
streaming statistics (:mod:`featurize.stats`) of the whole frames of the
training split — every finite pixel of every channel and dense feature, as the
live service will see them — the drift reference copied into the model card.

Memory: a shuffle buffer holds up to ``buffer`` records per split, about 33 KB
each for two channels (``ir-ltg/1``), so the default 8 000 is about 260 MB per
split.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from featurize.examples import Examples

SCHEMA_VERSION = 1


def _floats(values: np.ndarray) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(values, np.float32).ravel()))


def _raw(patch: np.ndarray) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[np.ascontiguousarray(patch, "<f4").tobytes()]))


def _ints(values: Any) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=np.atleast_1d(np.asarray(values, np.int64))))


def encode(examples: Examples, index: int, frame: str, time_s: int) -> bytes:
    """One example of a frame as a serialized ``tf.train.Example``."""
    feature = {name: _raw(patch[index]) for name, patch in examples.patches.items()}
    feature |= {name: _floats(values[index : index + 1]) for name, values in examples.features.items()}
    feature |= {
        "label": _ints(examples.labels[index]),
        "kind": _ints(examples.kinds[index]),
        "weight": _floats(examples.weights[index : index + 1]),
        "lat": _floats(examples.lat[index : index + 1]),
        "lon": _floats(examples.lon[index : index + 1]),
        "row": _ints(examples.centers[index, 0]),
        "col": _ints(examples.centers[index, 1]),
        "time": _ints(time_s),
        "frame": tf.train.Feature(bytes_list=tf.train.BytesList(value=[frame.encode()])),
    }
    return bytes(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def feature_spec(channels: tuple[str, ...], features: tuple[str, ...], patch: int) -> dict[str, Any]:
    """The ``tf.io.parse_example`` spec of a dataset's records."""
    spec: dict[str, Any] = {c: tf.io.FixedLenFeature([], tf.string) for c in channels}
    spec |= {f: tf.io.FixedLenFeature([1], tf.float32) for f in features}
    spec |= {k: tf.io.FixedLenFeature([1], tf.int64) for k in ("label", "kind", "row", "col", "time")}
    spec |= {k: tf.io.FixedLenFeature([1], tf.float32) for k in ("lat", "lon", "weight")}
    spec["frame"] = tf.io.FixedLenFeature([1], tf.string)
    return spec


def read_records(
    paths: list[Path], channels: tuple[str, ...], features: tuple[str, ...], patch: int
) -> Iterator[dict[str, np.ndarray]]:
    """Parsed records, one dict of numpy arrays each, patches as ``[patch, patch]`` float32."""
    spec = feature_spec(channels, features, patch)
    for record in tf.data.TFRecordDataset([str(p) for p in paths]):
        parsed = {k: v.numpy() for k, v in tf.io.parse_single_example(record, spec).items()}
        for channel in channels:
            parsed[channel] = np.frombuffer(parsed[channel], "<f4").reshape(patch, patch)
        yield parsed


@dataclass
class ShardedWriter:
    """Writes one split as ``<split>-00000-of-000NN.tfrecord`` shards through a shuffle buffer.

    Records from many frames gather in the buffer; when it holds ``buffer``
    records, a random half leaves it, each to the next shard in turn. So a
    shard mixes frames, and neighbouring records rarely share a frame.
    """

    folder: Path
    split: str
    shards: int
    buffer: int
    rng: np.random.Generator
    counts: list[int] = field(default_factory=list)
    _pending: list[bytes] = field(default_factory=list)
    _writers: list[tf.io.TFRecordWriter] = field(default_factory=list)
    _next: int = 0

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._writers = [tf.io.TFRecordWriter(str(self.path(i))) for i in range(self.shards)]
        self.counts = [0] * self.shards

    def path(self, shard: int) -> Path:
        """File of shard ``shard``."""
        return self.folder / f"{self.split}-{shard:05d}-of-{self.shards:05d}.tfrecord"

    def add(self, records: list[bytes]) -> None:
        """Queue records; spill a shuffled half whenever the buffer is full."""
        self._pending.extend(records)
        if len(self._pending) >= self.buffer:
            self._spill(len(self._pending) // 2)

    def _spill(self, count: int) -> None:
        order = self.rng.permutation(len(self._pending))
        leaving = set(order[:count].tolist())
        for position in order[:count]:
            self._writers[self._next].write(self._pending[position])
            self.counts[self._next] += 1
            self._next = (self._next + 1) % self.shards
        self._pending = [r for i, r in enumerate(self._pending) if i not in leaving]

    def close(self) -> None:
        """Write what is left, shuffled, and close the shards."""
        self._spill(len(self._pending))
        for writer in self._writers:
            writer.close()
