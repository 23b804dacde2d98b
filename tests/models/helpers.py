"""Small datasets and runs for the models tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from featurize.examples import Examples
from models.dataset import ShardedWriter, encode


def write_tiny_dataset(folder: Path, tile_value: float, split: str = "train") -> None:
    """A two-record dataset (one positive) in ``split`` whose ``ir`` patches hold ``tile_value`` at one pixel."""
    patch = np.zeros((2, 64, 64), np.float32)
    patch[:, 10, 10] = tile_value
    examples = Examples(
        patches={"ir": patch, "ltg": np.zeros((2, 64, 64), np.float32)},
        features={},
        labels=np.array([1, 0], np.uint8),
        kinds=np.array([0, 2], np.int8),
        weights=np.ones(2, np.float32),
        centers=np.array([[1, 1], [2, 2]]),
        lat=np.zeros(2, np.float32),
        lon=np.zeros(2, np.float32),
        positive_rate=0.5,
        channels={},
    )
    writer = ShardedWriter(folder, split, 1, 4, np.random.default_rng(0))
    writer.add([encode(examples, i, "frame.nc", 0) for i in range(2)])
    writer.close()
    others = [s for s in ("train", "validation", "test") if s != split]
    for other in others:
        ShardedWriter(folder, other, 1, 4, np.random.default_rng(0)).close()
    shards = {s: {"examples": 0, "positives": 0, "shards": [f"{s}-00000-of-00001.tfrecord"]} for s in others}
    doc = {
        "channels": ["ir", "ltg"], "features": [], "patch": 64, "feature_set": "ir-ltg/1",
        "archive": "dir:tiny", "start": "2024-06-17T00:00:00.000Z", "end": "2024-06-18T00:00:00.000Z",
        "sector": "M1", "band": 13, "examples": 2, "label_rule": {"window_s": 1800.0, "box": 16},
        "splits": {split: {"examples": 2, "positives": 1, "shards": [f"{split}-00000-of-00001.tfrecord"]}, **shards},
    }  # fmt: skip
    (folder / "dataset.json").write_text(json.dumps(doc))
    (folder / "stats.json").write_text(json.dumps({"ir": {"count": 2}}))


def write_run(run: Path, data: Path, model: object) -> None:
    """A training run folder as `ltgcast train` leaves it, around ``model``."""
    run.mkdir(parents=True)
    model.save(run / "model.keras")  # type: ignore[attr-defined]
    report = {
        "settings": {"data": str(data)}, "positive_weight": 1.0, "epochs_run": 1, "history": {"loss": [0.5]},
    }  # fmt: skip
    (run / "training.json").write_text(json.dumps(report))
