"""One frame → one probability grid: the worker's pure core (channels, fill policy, score, mask).

Band 13 (10.3 µm, clean IR) is required: the seed model read a visible band by
accident and was blind at night. Pixels without IR data (space, missing scan
lines) get NaN probability, never 0: "no data" is not "no lightning".
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from featurize.channels import model_input
from featurize.examples import Flashes, frame_channels
from ingest.abi import AbiImage
from serve.scoring import Scorer

F32 = NDArray[np.float32]
IR_BAND = 13


@dataclass(frozen=True)
class Nowcast:
    """A frame's probability grid (``[H, W]``, NaN where there was no IR), how it was made, and its channels."""

    probability: F32
    filled: dict[str, float]
    seconds: dict[str, float]
    channels: dict[str, F32]  # the model's channels before the fill policy (NaN where missing), for drift


def nowcast_frame(image: AbiImage, flashes: Flashes, scorer: Scorer, previous_bt_k: F32 | None = None) -> Nowcast:
    """Featurize ``image`` with the flashes before it and score every pixel."""
    if image.band != IR_BAND:
        msg = f"{image.name.name}: expected ABI band {IR_BAND} (10.3 µm clean IR); found band {image.band}"
        raise ValueError(msg)
    began = time.perf_counter()
    t = image.scan_start.timestamp()
    channels = frame_channels(image.values, image.grid, flashes, t, scorer.feature_set, previous_bt_k)
    stacked, filled = model_input(channels, scorer.feature_set)
    featurized = time.perf_counter()
    probability = scorer.score(stacked)
    probability[~np.isfinite(channels["ir"])] = np.nan
    scored = time.perf_counter()
    return Nowcast(probability, filled, {"featurize": featurized - began, "score": scored - featurized}, channels)
