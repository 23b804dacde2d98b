"""Engineered features: dense (every pixel of a frame) and per patch (the check and the training path).

Feature names are ``<channel>_<statistic>_<box>``; :func:`feature_names` gives
the order. Statistics over the 64×64 context box and the central 16×16 box
(:mod:`featurize.boxes` convention), on the channel scale of
:mod:`featurize.channels`:

==================== =====================================================
``ir_mean_B``        mean ``ir`` (mean coldness of the box)
``ir_max_B``         max ``ir`` — the coldest cloud top in the box
``ir_coldfrac_64``   fraction of finite pixels colder than 235 K
``ltg_mean_B``       mean flashes per pixel over the window
``ltg_max_16``       most flashes in one pixel of the core box
``ir_trend_mean_16`` mean cooling in the core box (trend feature sets only)
``ir_trend_max_16``  strongest cooling in the core box (trend feature sets only)
==================== =====================================================

The dense path (:func:`dense_features`) and the per-patch path
(:func:`patch_features`) agree: maxima bit for bit, means to float32 rounding,
at frame edges and next to NaN as well (tested on random pixels).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featurize.boxes import box_bounds, box_count, box_max, box_sum, box_sum_exact, mean_from
from featurize.channels import COLD_TOP_K, ir_threshold
from featurize.patches import core

F32 = NDArray[np.float32]
CONTEXT = 64
CORE = 16
COLD_IR = np.float32(ir_threshold(COLD_TOP_K))
_COLD_SHIFT = 13  # finite and cold counts share one integer: a box must hold fewer than 2**13 pixels
if CONTEXT * CONTEXT >= 1 << _COLD_SHIFT:
    msg = f"a {CONTEXT}x{CONTEXT} box does not fit the packed count of {_COLD_SHIFT} bits"
    raise ValueError(msg)


def feature_names(channels: tuple[str, ...]) -> tuple[str, ...]:
    """The features computed for these channels, in their fixed order.

    >>> feature_names(("ir", "ltg"))
    ('ir_mean_64', 'ir_max_64', 'ir_mean_16', 'ir_max_16', 'ir_coldfrac_64', 'ltg_mean_64', 'ltg_mean_16', 'ltg_max_16')
    """
    names: list[str] = []
    if "ir" in channels:
        names += [f"ir_mean_{CONTEXT}", f"ir_max_{CONTEXT}", f"ir_mean_{CORE}", f"ir_max_{CORE}"]
        names += [f"ir_coldfrac_{CONTEXT}"]
    if "ltg" in channels:
        names += [f"ltg_mean_{CONTEXT}", f"ltg_mean_{CORE}", f"ltg_max_{CORE}"]
    if "ir_trend" in channels:
        names += [f"ir_trend_mean_{CORE}", f"ir_trend_max_{CORE}"]
    return tuple(names)


def _parse(name: str) -> tuple[str, str, int]:
    channel, stat, size = name.rsplit("_", 2)
    return channel, stat, int(size)


def _inframe_count(shape: tuple[int, int], size: int) -> F32:
    """Pixels of each box inside the frame: the count of a channel that has no NaN."""
    before, after = box_bounds(size)
    per_axis = [
        (np.minimum(np.arange(n) + after, n - 1) - np.maximum(np.arange(n) - before, 0) + 1).astype(np.float32)
        for n in shape
    ]
    return np.outer(per_axis[0], per_axis[1])


def _plan(channels: dict[str, F32]) -> dict[str, Callable[[], NDArray[Any]]]:
    """The independent box reductions the features need, by name (run in parallel)."""
    tasks: dict[str, Callable[[], NDArray[Any]]] = {}
    prepared: dict[str, tuple[NDArray[np.bool_], bool, NDArray[Any]]] = {}
    for name in feature_names(tuple(channels)):
        channel, stat, size = _parse(name)
        values = channels[channel]
        if stat == "max":
            tasks[f"{channel}_max_{size}"] = partial(box_max, values, size)
            continue
        if channel not in prepared:
            finite = np.isfinite(values)
            complete = bool(finite.all())
            prepared[channel] = (finite, complete, values if complete else np.where(finite, values, np.float32(0)))
        finite, complete, zeroed = prepared[channel]
        tasks.setdefault(f"{channel}_sum_{size}", partial(box_sum, zeroed, size))
        if channel == "ir":
            # finite and cold counts in one exact integer sum: count + cold * 2**13 (a box holds <= 4096 pixels)
            if "ir_packed" not in prepared:
                cold = (finite & (values > COLD_IR)).astype(np.int32) << _COLD_SHIFT
                prepared["ir_packed"] = (finite, complete, (cold + finite).astype(np.int32))
            tasks.setdefault(f"ir_packed_{size}", partial(box_sum_exact, prepared["ir_packed"][2], size))
        elif complete:
            tasks.setdefault(f"{channel}_n_{size}", partial(_inframe_count, values.shape, size))
        else:
            tasks.setdefault(f"{channel}_n_{size}", partial(box_count, finite, size))
    return tasks


def dense_features(channels: dict[str, F32], *, workers: int = 2) -> dict[str, F32]:
    """Every feature at every pixel: O(1) work per pixel for means, O(log box) for maxima.

    Parameters
    ----------
    channels
        Channel name (``ir``, ``ltg``, ``ir_trend``) → float32 ``[H, W]``, NaN where missing.
    workers
        Threads for the independent box reductions (numpy releases the GIL).

    Returns
    -------
    Feature name → float32 ``[H, W]``, in :func:`feature_names` order; NaN where a
    box has no finite pixel.

    Examples
    --------
    >>> ir = np.full((3, 4), 0.5, np.float32); ir[0, 0] = 0.9
    >>> f = dense_features({"ir": ir, "ltg": np.zeros((3, 4), np.float32)})
    >>> [round(float(f[k][2, 3]), 4) for k in ("ir_max_64", "ir_mean_64", "ir_coldfrac_64")]
    [0.9, 0.5333, 0.0833]
    """
    tasks = _plan(channels)
    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        futures = {name: pool.submit(task) for name, task in tasks.items()}
        parts = {name: future.result() for name, future in futures.items()}
    return {name: _combine(name, parts) for name in feature_names(tuple(channels))}


def _count(channel: str, size: int, parts: dict[str, NDArray[Any]]) -> NDArray[Any]:
    if f"{channel}_n_{size}" in parts:
        return parts[f"{channel}_n_{size}"]
    counts: NDArray[Any] = parts[f"ir_packed_{size}"] & ((1 << _COLD_SHIFT) - 1)
    return counts


def _combine(name: str, parts: dict[str, NDArray[Any]]) -> F32:
    channel, stat, size = _parse(name)
    if stat == "max":
        peak: F32 = parts[name]
        return peak
    count = _count(channel, size, parts)
    if stat == "mean":
        return mean_from(parts[f"{channel}_sum_{size}"], count)
    cold: NDArray[Any] = parts[f"ir_packed_{size}"] >> _COLD_SHIFT
    return mean_from(cold, count)


def patch_features(patches: dict[str, F32]) -> dict[str, F32]:
    """The same features from 64×64 patches (one value per patch).

    Parameters
    ----------
    patches
        Channel name → float32 ``[N, 64, 64]`` from
        :func:`featurize.patches.extract_patches` (NaN beyond the frame).

    Returns
    -------
    Feature name → float32 ``[N]``, in :func:`feature_names` order.

    Examples
    --------
    >>> ir = np.full((1, 64, 64), np.nan, np.float32); ir[0, 32, 32] = 0.7
    >>> f = patch_features({"ir": ir})
    >>> [float(f[k][0]) for k in ("ir_max_64", "ir_mean_16", "ir_coldfrac_64")]
    [0.699999988079071, 0.699999988079071, 1.0]
    """
    out: dict[str, F32] = {}
    for name in feature_names(tuple(patches)):
        channel, stat, size = name.rsplit("_", 2)
        block = patches[channel] if int(size) == CONTEXT else core(patches[channel], int(size))
        finite = np.isfinite(block)
        count = finite.sum(axis=(1, 2)).astype(np.float64)
        if stat == "mean":
            out[name] = mean_from(np.where(finite, block, 0).sum(axis=(1, 2), dtype=np.float64), count)
        elif stat == "max":
            peak = np.where(finite, block, -np.inf).max(axis=(1, 2))
            out[name] = np.where(np.isinf(peak), np.nan, peak).astype(np.float32)
        else:
            out[name] = mean_from((finite & (block > COLD_IR)).sum(axis=(1, 2)).astype(np.float64), count)
    return out
