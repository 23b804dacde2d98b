"""Model channels and the named, versioned feature sets that choose them.

Channels (float32 ``[H, W]`` on the ABI grid, NaN where missing)
----------------------------------------------------------------
Two scalings exist; a feature set's version names one (``FeatureSet.scaling``),
and a model card records its feature set, so a model is always fed the scaling
it was trained on.

**bounded** (``ir-ltg/2``, ``ir-ltg-trend/2``; the default from issue 16): every
channel is a monotone map into a fixed range, so no storm, however intense,
feeds the network a value it never saw in training.

``ir``
    ABI band 13 (10.3 µm, the clean IR window: the same day and night) as
    ``clip((320 K - BT) / 140 K, 0, 1)``: 0 at 320 K and warmer (a hot
    surface), 1 at 180 K and colder (below the coldest overshooting tops,
    about 185 K). Cold tops are *high*, so a box maximum is its coldest top.
``ltg``
    GLM flash density: ``min(log1p(n) / log1p(100), 1)`` with ``n`` the flashes
    whose line of sight crosses the ABI pixel in the window before the frame
    (15 min; :mod:`featurize.glm_grid`). 1 flash → 0.15, 10 → 0.52, 100 and
    more → 1. A severe storm's core reaches tens to hundreds of flashes per
    pixel in 15 minutes; the logarithm keeps one flash clearly above none and
    the extreme tail inside the range. Never NaN.
``ir_trend``
    Band-13 cooling over the window, ``clip((BT(t - 15 min) - BT(t)) / 20 K, -1, 1)``
    on the same pixel: positive where tops cool (the precursor of first
    lightning), ±1 at 20 K in 15 minutes and beyond. NaN where either frame is
    missing.

**raw** (``ir-ltg/1``, ``ir-ltg-trend/1``; models before issue 16): the same
formulas without clipping, and ``ltg`` as the raw flash count per pixel
(unbounded). Kept so that older model cards keep working.

Beyond the data (``FeatureSet.edges``)
--------------------------------------
The network sees 32 pixels beyond every pixel it scores, so it must be told
something about pixels that have no data. Two cases, handled on purpose:

*Beyond the frame* (a sector's border). **mirror** (bounded sets): the frame
is reflected at its border (``numpy.pad(mode="symmetric")``), in training
patches and in the dense halo alike. A storm cut by the border looks like a
storm, not like a cloud edge; a clear frame stays clear to its border. The
raw sets used **fill**: the halo held each channel's fill value (a warm
cloud-free 320 K), which put a fake cloud edge wherever cloud met the border
(the edge stripes of issue 16).

*Inside the frame without data* (space beyond the limb, missing scan lines):
each channel's neutral value (:data:`FILL_VALUES`) — ``ir`` 0 (320 K, warm and
cloud-free: space holds no weather), ``ltg`` 0, ``ir_trend`` 0 (no change).
The fraction filled per channel is returned for the monitor, and the
probability of a pixel without IR is NaN, never 0 (:mod:`serve.worker.nowcast`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from foundation.registry import Registry

F32 = NDArray[np.float32]

IR_WARM_K = 320.0
IR_SPAN_K = 140.0
TREND_SCALE_K = 20.0
#: Brightness temperature below which a pixel counts as a cold (deep convective) top.
COLD_TOP_K = 235.0

FILL_VALUES = {"ir": 0.0, "ltg": 0.0, "ir_trend": 0.0}


def ir_channel(bt_k: NDArray[np.floating], *, bounded: bool = True) -> F32:
    """Band-13 brightness temperature (K) → the ``ir`` channel.

    Parameters
    ----------
    bt_k
        ``[H, W]`` brightness temperature in K, NaN where missing.
    bounded
        Clip to [0, 1] (the bounded scaling); ``False`` gives the raw one.

    Returns
    -------
    float32 ``[H, W]``, ``(320 - BT) / 140``, NaN kept.

    Examples
    --------
    >>> ir_channel(np.array([[330.0, 180.0, 170.0, np.nan]]))
    array([[ 0.,  1.,  1., nan]], dtype=float32)
    >>> ir_channel(np.array([[330.0]]), bounded=False).round(3)
    array([[-0.071]], dtype=float32)
    """
    value = (IR_WARM_K - np.asarray(bt_k, np.float64)) / IR_SPAN_K
    return (np.clip(value, 0.0, 1.0) if bounded else value).astype(np.float32)


def ir_threshold(bt_k: float) -> float:
    """The ``ir`` value of a brightness temperature (for thresholds such as cold tops).

    >>> round(ir_threshold(235.0), 6)
    0.607143
    """
    return (IR_WARM_K - bt_k) / IR_SPAN_K


def ir_trend_channel(bt_now_k: NDArray[np.floating], bt_before_k: NDArray[np.floating], *, bounded: bool = True) -> F32:
    """Cooling between two band-13 frames on the same grid, ``(before - now) / 20 K``.

    Parameters
    ----------
    bt_now_k, bt_before_k
        ``[H, W]`` brightness temperatures (K) of the frame and of the one
        15 minutes earlier, on the same fixed grid.

    bounded
        Clip to [-1, 1] (the bounded scaling); ``False`` gives the raw one.

    Returns
    -------
    float32 ``[H, W]``; positive where the top cooled; NaN where either is NaN.

    Examples
    --------
    >>> ir_trend_channel(np.array([[220.0, 250.0, 200.0]]), np.array([[240.0, np.nan, 260.0]]))
    array([[ 1., nan,  1.]], dtype=float32)
    """
    now, before = np.asarray(bt_now_k, np.float64), np.asarray(bt_before_k, np.float64)
    if now.shape != before.shape:
        msg = f"ir_trend needs two frames of one shape, got {now.shape} and {before.shape}"
        raise ValueError(msg)
    value = (before - now) / TREND_SCALE_K
    return (np.clip(value, -1.0, 1.0) if bounded else value).astype(np.float32)


SCALINGS = ("raw", "bounded")
EDGES = ("fill", "mirror")
#: Flashes per pixel in the window at which the bounded ``ltg`` channel saturates at 1.
LTG_SATURATION = 100.0


@dataclass(frozen=True)
class FeatureSet:
    """A named, versioned choice of channels, their scaling and edge policy; its ``key`` goes into every model card."""

    name: str
    version: int
    channels: tuple[str, ...]
    window_minutes: float = 15.0
    scaling: str = "bounded"
    edges: str = "mirror"

    def __post_init__(self) -> None:
        """Refuse a scaling or edge policy this module does not implement."""
        if self.scaling not in SCALINGS or self.edges not in EDGES:
            msg = f"feature set {self.key}: scaling must be one of {SCALINGS} and edges one of {EDGES}"
            raise ValueError(msg)

    @property
    def key(self) -> str:
        """``name/version``, e.g. ``ir-ltg/2``."""
        return f"{self.name}/{self.version}"

    @property
    def temporal(self) -> bool:
        """Whether the set needs the frame ``window_minutes`` earlier (``ir_trend``)."""
        return "ir_trend" in self.channels

    def describe(self) -> dict[str, str]:
        """Each channel's formula, for the model card.

        >>> get_feature_set("ir-ltg/2").describe()["ltg"]
        'min(log1p(GLM flashes per ABI pixel in the 15 min before the frame) / log1p(100), 1)'
        """
        window = f"{self.window_minutes:g} min"
        if self.scaling == "raw":
            formulas = {
                "ir": f"(320 K - BT13) / {IR_SPAN_K:g} K",
                "ltg": f"GLM flashes per ABI pixel in the {window} before the frame",
                "ir_trend": f"(BT13 {window} earlier - BT13 now) / {TREND_SCALE_K:g} K",
            }
        else:
            formulas = {
                "ir": f"clip((320 K - BT13) / {IR_SPAN_K:g} K, 0, 1)",
                "ltg": f"min(log1p(GLM flashes per ABI pixel in the {window} before the frame) / "
                f"log1p({LTG_SATURATION:g}), 1)",
                "ir_trend": f"clip((BT13 {window} earlier - BT13 now) / {TREND_SCALE_K:g} K, -1, 1)",
            }
        edges = {
            "fill": "beyond the frame: each channel's fill value",
            "mirror": "beyond the frame: the frame mirrored at its border",
        }
        out = {c: formulas[c] for c in self.channels}
        return out | {"edges": edges[self.edges], "missing": "inside the frame: each channel's fill value"}


FEATURE_SETS: Registry[FeatureSet] = Registry(
    "feature set",
    {
        fs.key: fs
        for fs in (
            FeatureSet("ir-ltg", 1, ("ir", "ltg"), scaling="raw", edges="fill"),
            FeatureSet("ir-ltg-trend", 1, ("ir", "ltg", "ir_trend"), scaling="raw", edges="fill"),
            FeatureSet("ir-ltg", 2, ("ir", "ltg")),
            FeatureSet("ir-ltg-trend", 2, ("ir", "ltg", "ir_trend")),
        )
    },
)
#: The feature set new datasets use unless told otherwise.
DEFAULT_FEATURE_SET = "ir-ltg/2"


def get_feature_set(key: str) -> FeatureSet:
    """The feature set ``name/version``; unknown keys list the valid ones.

    >>> get_feature_set("ir-ltg/1").channels
    ('ir', 'ltg')
    """
    return FEATURE_SETS.lookup(key)


def scene_channels(
    feature_set: FeatureSet,
    bt_k: NDArray[np.floating],
    flashes_per_pixel: NDArray[np.floating] | None = None,
    previous_bt_k: NDArray[np.floating] | None = None,
) -> dict[str, F32]:
    """Physical fields → a feature set's channels (NaN kept), with the set's scaling.

    Parameters
    ----------
    feature_set
        Which channels and which scaling.
    bt_k
        Band-13 brightness temperature ``[H, W]``, K (NaN where missing).
    flashes_per_pixel
        GLM flashes per ABI pixel in the window before the frame (zeros when ``None``).
    previous_bt_k
        Band 13 of the frame ``window_minutes`` earlier on the same grid; required by ``ir_trend``.

    Examples
    --------
    >>> c = scene_channels(get_feature_set("ir-ltg/2"), np.array([[330.0, 250.0, 170.0]]), np.array([[0, 1, 1e4]]))
    >>> c["ir"].round(3), c["ltg"].round(3)
    (array([[0. , 0.5, 1. ]], dtype=float32), array([[0.  , 0.15, 1.  ]], dtype=float32))
    """
    bounded = feature_set.scaling == "bounded"
    channels = {"ir": ir_channel(bt_k, bounded=bounded)}
    if "ltg" in feature_set.channels:
        counts = np.zeros(np.shape(bt_k), np.float32) if flashes_per_pixel is None else flashes_per_pixel
        channels["ltg"] = ltg_scaled(counts) if bounded else np.asarray(counts, np.float32)
    if "ir_trend" in feature_set.channels:
        if previous_bt_k is None:
            msg = f"feature set {feature_set.key} needs the frame {feature_set.window_minutes:g} min earlier"
            raise ValueError(msg)
        channels["ir_trend"] = ir_trend_channel(bt_k, previous_bt_k, bounded=bounded)
    return channels


def ltg_scaled(flashes_per_pixel: NDArray[np.floating]) -> F32:
    """Flashes per pixel → the bounded ``ltg`` channel, ``min(log1p(n) / log1p(100), 1)`` (monotone, in [0, 1]).

    >>> ltg_scaled(np.array([0.0, 1.0, 99.0, 1e6])).round(4)
    array([0.    , 0.1502, 0.9978, 1.    ], dtype=float32)
    """
    n = np.maximum(np.asarray(flashes_per_pixel, np.float64), 0.0)
    scaled: F32 = np.minimum(np.log1p(n) / np.log1p(LTG_SATURATION), 1.0).astype(np.float32)
    return scaled


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
    """A model tile ``[H + 2·halo, W + 2·halo, C]``: ``stacked`` (:func:`model_input`) with a halo beyond the frame.

    The halo follows the feature set's edge policy (see the module docstring):
    the frame mirrored at its border (``mirror``) or each channel's fill value
    (``fill``, the raw sets). Training patches cut at the border
    (:func:`featurize.patches.extract_patches`) follow the same policy.

    >>> fs = get_feature_set("ir-ltg/1")
    >>> x, _ = model_input({"ir": np.ones((2, 3), np.float32), "ltg": np.ones((2, 3), np.float32)}, fs)
    >>> tile = with_halo(x, fs, halo=1)
    >>> tile.shape, float(tile[..., 0].sum()), float(tile[0, 0, 0])
    ((4, 5, 2), 6.0, 0.0)
    >>> ir = np.array([[0.1, 0.2, 0.3]], np.float32)[..., None]
    >>> with_halo(ir, get_feature_set("ir-ltg/2"), halo=2)[2, :, 0].round(2)
    array([0.2, 0.1, 0.1, 0.2, 0.3, 0.3, 0.2], dtype=float32)
    """
    if feature_set.edges == "mirror":
        mirrored: F32 = np.pad(stacked, ((halo, halo), (halo, halo), (0, 0)), mode="symmetric")
        return mirrored
    fill = np.array([FILL_VALUES[c] for c in feature_set.channels], np.float32)
    height, width, depth = stacked.shape
    tile = np.empty((height + 2 * halo, width + 2 * halo, depth), np.float32)
    tile[:] = fill
    tile[halo : halo + height, halo : halo + width] = stacked
    return tile
