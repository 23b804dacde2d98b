"""Model channels and the named, versioned feature sets that choose them.

Channels (float32 ``[H, W]`` on the ABI grid, NaN where missing)
----------------------------------------------------------------
``ir``
    ABI band 13 (10.3 µm, the clean IR window: the same day and night) as
    ``(320 K - BT) / 140 K``: 0 at 320 K (a hot surface), 1 at 180 K (the coldest
    overshooting tops), higher for colder. Cold cloud tops are *high*, so a box
    maximum of ``ir`` is its coldest top. Not clipped.
``ltg``
    GLM flashes per ABI pixel during the window before the frame (15 min by
    default), counted where each flash's line of sight crosses the ABI grid
    (:mod:`featurize.glm_grid`). Never NaN.
``ir_trend``
    Band-13 cooling over the window: ``(BT(t - 15 min) - BT(t)) / 20 K`` on the
    same pixel; positive where cloud tops cool (the precursor of first
    lightning). NaN where either frame is missing, or when the two frames are not
    on the same grid.

Fill policy at the model boundary (the only place NaN is replaced)
------------------------------------------------------------------
Each channel's NaN becomes its neutral value (:data:`FILL_VALUES`): ``ir`` 0
(a warm, cloud-free 320 K), ``ltg`` 0, ``ir_trend`` 0 (no change). The fraction
filled per channel is returned, for the monitor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]

IR_WARM_K = 320.0
IR_SPAN_K = 140.0
TREND_SCALE_K = 20.0
#: Brightness temperature below which a pixel counts as a cold (deep convective) top.
COLD_TOP_K = 235.0

FILL_VALUES = {"ir": 0.0, "ltg": 0.0, "ir_trend": 0.0}


def ir_channel(bt_k: NDArray[np.floating]) -> F32:
    """Band-13 brightness temperature (K) → the ``ir`` channel.

    Parameters
    ----------
    bt_k
        ``[H, W]`` brightness temperature in K, NaN where missing.

    Returns
    -------
    float32 ``[H, W]``, ``(320 - BT) / 140``, NaN kept.

    Examples
    --------
    >>> ir_channel(np.array([[320.0, 180.0, np.nan]]))
    array([[ 0.,  1., nan]], dtype=float32)
    """
    return ((IR_WARM_K - np.asarray(bt_k, np.float64)) / IR_SPAN_K).astype(np.float32)


def ir_threshold(bt_k: float) -> float:
    """The ``ir`` value of a brightness temperature (for thresholds such as cold tops).

    >>> round(ir_threshold(235.0), 6)
    0.607143
    """
    return (IR_WARM_K - bt_k) / IR_SPAN_K


def ir_trend_channel(bt_now_k: NDArray[np.floating], bt_before_k: NDArray[np.floating]) -> F32:
    """Cooling between two band-13 frames on the same grid, ``(before - now) / 20 K``.

    Parameters
    ----------
    bt_now_k, bt_before_k
        ``[H, W]`` brightness temperatures (K) of the frame and of the one
        15 minutes earlier, on the same fixed grid.

    Returns
    -------
    float32 ``[H, W]``; positive where the top cooled; NaN where either is NaN.

    Examples
    --------
    >>> ir_trend_channel(np.array([[220.0, 250.0]]), np.array([[240.0, np.nan]]))
    array([[ 1., nan]], dtype=float32)
    """
    now, before = np.asarray(bt_now_k, np.float64), np.asarray(bt_before_k, np.float64)
    if now.shape != before.shape:
        msg = f"ir_trend needs two frames of one shape, got {now.shape} and {before.shape}"
        raise ValueError(msg)
    return ((before - now) / TREND_SCALE_K).astype(np.float32)


@dataclass(frozen=True)
class FeatureSet:
    """A named, versioned choice of channels; its ``key`` goes into every model card."""

    name: str
    version: int
    channels: tuple[str, ...]
    window_minutes: float = 15.0

    @property
    def key(self) -> str:
        """``name/version``, e.g. ``ir-ltg/1``."""
        return f"{self.name}/{self.version}"


FEATURE_SETS: dict[str, FeatureSet] = {
    fs.key: fs
    for fs in (
        FeatureSet("ir-ltg", 1, ("ir", "ltg")),
        FeatureSet("ir-ltg-trend", 1, ("ir", "ltg", "ir_trend")),
    )
}


def get_feature_set(key: str) -> FeatureSet:
    """The feature set ``name/version``; unknown keys list the valid ones.

    >>> get_feature_set("ir-ltg/1").channels
    ('ir', 'ltg')
    """
    try:
        return FEATURE_SETS[key]
    except KeyError:
        msg = f"unknown feature set {key!r}; valid: {', '.join(sorted(FEATURE_SETS))}"
        raise ValueError(msg) from None


def model_input(channels: dict[str, F32], feature_set: FeatureSet) -> tuple[F32, dict[str, float]]:
    """Stack a feature set's channels channels-last and apply the fill policy.

    Parameters
    ----------
    channels
        Channel name → float32 ``[H, W]`` (NaN where missing).
    feature_set
        Which channels, in which order.

    Returns
    -------
    stacked
        float32 ``[H, W, C]`` without NaN.
    filled
        Channel name → fraction of its pixels that were NaN and got filled.

    Examples
    --------
    >>> x, filled = model_input({"ir": np.array([[0.5, np.nan]], np.float32),
    ...                          "ltg": np.zeros((1, 2), np.float32)}, get_feature_set("ir-ltg/1"))
    >>> x[..., 0], filled
    (array([[0.5, 0. ]], dtype=float32), {'ir': 0.5, 'ltg': 0.0})
    """
    missing = [c for c in feature_set.channels if c not in channels]
    if missing:
        msg = f"feature set {feature_set.key} needs channels {missing}; got {sorted(channels)}"
        raise ValueError(msg)
    layers, filled = [], {}
    for name in feature_set.channels:
        layer = channels[name]
        bad = ~np.isfinite(layer)
        filled[name] = float(bad.mean()) if layer.size else 0.0
        layers.append(np.where(bad, np.float32(FILL_VALUES[name]), layer).astype(np.float32))
    return np.stack(layers, axis=-1), filled


def with_halo(stacked: F32, feature_set: FeatureSet, halo: int = 32) -> F32:
    """A model tile ``[H + 2·halo, W + 2·halo, C]``: ``stacked`` (from :func:`model_input`) ringed with fill values.

    Beyond the frame there is no data, so the halo holds each channel's fill
    value, as a patch cut at the edge of the frame does.

    >>> x, _ = model_input({"ir": np.ones((2, 3), np.float32), "ltg": np.ones((2, 3), np.float32)},
    ...                    get_feature_set("ir-ltg/1"))
    >>> tile = with_halo(x, get_feature_set("ir-ltg/1"), halo=1)
    >>> tile.shape, float(tile[..., 0].sum()), float(tile[0, 0, 0])
    ((4, 5, 2), 6.0, 0.0)
    """
    fill = np.array([FILL_VALUES[c] for c in feature_set.channels], np.float32)
    height, width, depth = stacked.shape
    tile = np.empty((height + 2 * halo, width + 2 * halo, depth), np.float32)
    tile[:] = fill
    tile[halo : halo + height, halo : halo + width] = stacked
    return tile
