"""One frame → one probability grid: the worker's pure core (channels, fill policy, score, mask).

Band 13 (10.3 µm, clean IR) is required: the seed model read a visible band by
accident and was blind at night. Pixels without IR data (space, missing scan
lines) get NaN probability, never 0: "no data" is not "no lightning".

A temporal feature set (``ir_trend``: ``ir-ltg-trend/1``, ``/2``) also needs
band 13 of the frame ``window_minutes`` (15) earlier on the same grid
(``previous_bt_k``); :func:`previous_problem` is the one rule for which frame
qualifies, as in training (``ltgcast/datasets.py``): the same satellite and
sector, a scan start within :data:`TREND_TOLERANCE_S` of 15 minutes before, and
the same pixels (:func:`same_grid`: a mesoscale sector that moved is another
grid). Where none is found, the worker scores with the frame itself as its
predecessor (``ir_trend`` 0, "no change", the channel's fill value) and says so
in the grid (:mod:`serve.worker.trend`); ``ltgcast nowcast`` without ``--previous`` does the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from featurize.channels import model_input
from featurize.examples import Flashes, frame_channels
from ingest.abi import AbiImage
from ingest.geometry import FixedGrid
from serve.scoring import Scorer

F32 = NDArray[np.float32]
IR_BAND = 13
#: How far the previous frame's scan start may be from ``window_minutes`` before the frame's (training's 90 s).
TREND_TOLERANCE_S = 90.0


def same_grid(a: FixedGrid, b: FixedGrid) -> bool:
    """Whether two frames share their pixels: the same shape and the same ``x``/``y`` scan angles.

    A mesoscale sector that moved, or a subset cut elsewhere, is another grid (training compares the same way).
    """
    return a.shape == b.shape and np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)


def previous_problem(image: AbiImage, before: AbiImage, window_minutes: float,
                     tolerance_s: float = TREND_TOLERANCE_S) -> str | None:  # fmt: skip
    """Why ``before`` cannot be ``image``'s previous frame for ``ir_trend`` (``None``: it can)."""
    if before.band != IR_BAND:
        return f"{before.name.name} is band {before.band}, not band {IR_BAND}"
    if (before.name.satellite, before.name.sector) != (image.name.satellite, image.name.sector):
        return (f"{before.name.name} is from {before.name.satellite} {before.name.sector}; the frame is from "
                f"{image.name.satellite} {image.name.sector}")  # fmt: skip
    offset = (image.scan_start - before.scan_start).total_seconds()
    if abs(offset - window_minutes * 60.0) > tolerance_s:
        return (f"{before.name.name} starts {offset / 60.0:.1f} min before the frame; ir_trend needs "
                f"{window_minutes:g} min ± {tolerance_s:g} s")  # fmt: skip
    if not same_grid(image.grid, before.grid):
        return f"{before.name.name} is on another grid than the frame ({before.grid.shape} vs {image.grid.shape})"
    return None


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
