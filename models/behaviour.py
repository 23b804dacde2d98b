"""The behavioural gate: the model's physics contract, checked on designed scenes (issue 16, item 5).

Skill on a hold-out set says how good a model is on average; it does not say
that the model *behaves*: a network can score well and still rank a quiet cold
cell above a storm in full flash, dig a moat of low probability around an
intense storm or paint stripes where a cloud meets the sector's border. Each
check here builds a few scenes in physical units, runs them through the
model's own dense signature exactly as serving does
(:func:`~featurize.channels.scene_channels` → :func:`~featurize.channels.model_input`
→ :func:`~featurize.channels.with_halo` with the card's feature set →
``serving_default``) and asserts one property. :func:`models.validation.validate`
runs the suite and refuses a version that fails any check; ``ltgcast models add``
records the results in the model card (``card["behaviour"]``).

Scenes (2-km ABI pixels, 15-min GLM window)
-------------------------------------------
*Clear sky*: 295 K with a small smooth texture (three long-wave sinusoids,
wavelengths 23–67 px, |texture| ≤ 1.8 K), a function of absolute position so a
shifted crop is the same scene shifted. *Featureless* frames are exactly 295 K.
*Cold top*: ``BT + (T_core - BT) · exp(-r² / 2σ²)``, σ = 6 px (FWHM 28 km),
reaching ``T_core`` at its centre and colder everywhere as ``T_core`` falls.
*Anvil shield*: ``BT + (T_shield - BT) · s(r)`` with ``s`` a logistic step at
radius R (width 4 px). *Flashes*: ``round(n · exp(-r² / 2σ_f²))`` flashes per
pixel with σ_f = 2 px (3 px in ``no_moat``): ``n`` at the core, pointwise more
as ``n`` grows. Trend feature sets get the frame itself as the previous one (no
cooling), so only the stated input changes. The probability "at the core" is
the output at the storm's centre pixel; frames are 128×128 unless stated, so
the 64×64 receptive field of a core never reaches the border.

Checks
------
==================  ========================================  ========================================  =========
check               scene                                     assertion                                 tolerance
==================  ========================================  ========================================  =========
monotone_lightning  a 210 K cold top; n = 0, 1, 3, 10, 30,    core probability non-decreasing in n:     0.01
                    100, 300, 1000 flashes/px at its core     p(n_j) ≥ p(n_i) - tol for all i < j
monotone_cold       a cold top of 260, 250, …, 200 K,         core probability non-decreasing as the    0.01
                    without lightning and with 10 flashes/px  top cools, in both series
persistence         three storms with lightning: 200 K + 100  min p over every pixel whose 16×16 box    the bar
                    flashes/px, 220 K + 10 flashes/px, 230 K  (rows r-8..r+7) held ≥ 1 flash ≥ the bar
                    with one flash at its centre              max(0.5 × persistence rate, 0.25)
no_moat             256×256: a 198 K top in a 222 K anvil of  min p within 16 px of a flash ≥ max p     0.02
                    radius 80 px; 300 (and 30) flashes/px at  ≥ 48 px from every flash inside the
                    the core, none beyond 8 px                anvil (BT < 230 K); profile reported
edges               160×160: a 215 K top with 10 flashes/px   |p_edge - p_middle| at the storm centre;  0.1
                    in the middle and centred on each edge's  a 225 K overcast: |p - p_centre| at       0.1
                    middle row/column; a uniform 225 K        every pixel; featureless 295 K: p ≤ 0.02  0.02
                    overcast; a featureless 295 K frame       everywhere, edges included
translation         192×256: four storms on clear sky, and    the output shifts with the scene at       1e-4
                    the same scene shifted by (7, 13) px      every pixel whose 64×64 receptive field
                                                              is inside both frames
locality            the same scene, and with a 195 K storm    |Δp| at every pixel more than 64 px       1e-6
                    (300 flashes/px) added in a corner        (Euclidean) from every changed input
inverted_ranking    a 212 K cold top without lightning; the   p(quiet core) ≤ p(storm core) + tol, for  0.01
                    same top, and a warmer 220 K one, with    both storms
                    30 flashes/px at the core
==================  ========================================  ========================================  =========

Why these bars
~~~~~~~~~~~~~~
*persistence*: the persistence rate is P(label = 1 | lightning in the pixel's
16×16 box now) of the training data (``card["persistence_rate"]``). A calibrated
model's *mean* over such pixels is that rate; the check allows the *worst*
pixel (the corner of the box of a lone flash, 11 px away) half of it, and never
asks less than 0.25. Without the card field the rate is
:data:`DEFAULT_PERSISTENCE_RATE` = 0.7 (lightning in a 32-km box usually goes
on for 30 min; a conservative value, which makes the bar 0.35), and the result
says so. *no_moat*: the label is lightning in a 32-km box within 30 min; a
pixel 32 km from a storm in full flash is never less likely to see it than a
pixel 96 km away under the same anvil. *edges*: with ``mirror`` edges the model
sees a storm on the border as a whole storm, so the edge and middle storms
should score alike; with ``fill`` edges (the ``/1`` sets) it sees half a storm
against a 320 K wall, which is the cause of the edge stripes this check
catches. *translation* and *locality* hold exactly for a fully convolutional
network with a 64×64 receptive field; the tolerances only absorb float
rounding.

Each check returns a dict with ``passed``, its numbers and a one-line
``detail``; :func:`problems` turns the failed ones into the gate's problem
strings, e.g. ``behaviour monotone_lightning: probability fell from 0.91 at 30
flashes/px to 0.62 at 300 flashes/px``. A check that cannot run (wrong output
shape, an exception) fails with the reason; NaN outputs fail every comparison.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featurize.channels import FeatureSet, get_feature_set, model_input, scene_channels, with_halo

F64 = NDArray[np.float64]
Result = dict[str, Any]

#: Bump when a scene, an assertion or a tolerance changes: cards record which suite they passed.
SUITE_VERSION = 1
HALO = 32
BACKGROUND_K = 295.0
CELL_SIGMA_PX = 6.0
FLASH_SIGMA_PX = 2.0
SIZE = (128, 128)

MONOTONE_TOLERANCE = 0.01
FLASH_LEVELS = (0, 1, 3, 10, 30, 100, 300, 1000)
LIGHTNING_CELL_K = 210.0
CORE_LEVELS_K = (260.0, 250.0, 240.0, 230.0, 220.0, 210.0, 200.0)
COLD_SERIES_FLASHES = 10

DEFAULT_PERSISTENCE_RATE = 0.7
PERSISTENCE_SHARE = 0.5
PERSISTENCE_FLOOR = 0.25
BOX = 16

MOAT_TOLERANCE = 0.02
NEAR_PX, FAR_PX = 16, 48
ANVIL_K, ANVIL_RADIUS_PX, ANVIL_COLD_K = 222.0, 80.0, 230.0

EDGE_TOLERANCE = 0.1
CLEAR_MAX = 0.02

TRANSLATION_TOLERANCE = 1e-4
SHIFT = (7, 13)
LOCALITY_TOLERANCE = 1e-6
LOCALITY_PX = 64

RANKING_TOLERANCE = 0.01


@dataclass(frozen=True)
class Scene:
    """One frame in physical units: band-13 brightness temperature (K) and GLM flashes per pixel in 15 min."""

    bt_k: F64
    flashes: F64


# -- scene builders ---------------------------------------------------------------------------------------------
def _radius(shape: tuple[int, int], center: tuple[float, float]) -> F64:
    rows, cols = np.indices(shape, dtype=np.float64)
    return np.asarray(np.hypot(rows - center[0], cols - center[1]))


def texture(shape: tuple[int, int], origin: tuple[int, int] = (0, 0)) -> F64:
    """Smooth clear-sky texture (K, |t| ≤ 1.8) at absolute position ``origin + (row, col)``.

    >>> t = texture((64, 64))
    >>> bool(np.abs(t).max() <= 1.8), bool(np.allclose(texture((4, 4), (7, 13)), t[7:11, 13:17]))
    (True, True)
    """
    rows, cols = np.indices(shape, dtype=np.float64)
    y, x = rows + origin[0], cols + origin[1]
    return np.asarray(
        0.8 * np.sin(2 * np.pi * (y / 41 + x / 67) + 0.3)
        + 0.6 * np.sin(2 * np.pi * (x / 29 - y / 53) + 1.1)
        + 0.4 * np.sin(2 * np.pi * y / 23 + 2.0)
    )


def clear_sky(shape: tuple[int, int], origin: tuple[int, int] = (0, 0)) -> F64:
    """295 K clear sky with :func:`texture`."""
    return BACKGROUND_K + texture(shape, origin)


def cold_top(
    bt_k: F64, center: tuple[float, float], core_k: float, sigma: float = CELL_SIGMA_PX, *, radius: float | None = None
) -> F64:
    """``bt_k`` with a Gaussian cold top reaching ``core_k`` at ``center`` (cut to 0 beyond ``radius`` if given).

    >>> bt = cold_top(np.full((9, 9), 295.0), (4, 4), 210.0)
    >>> float(bt[4, 4]), bool(bt[4, 0] < 295.0)
    (210.0, True)
    """
    r = _radius(bt_k.shape, center)
    g = np.exp(-(r**2) / (2 * sigma**2))
    if radius is not None:
        g[r > radius] = 0.0
    return np.asarray(bt_k + (core_k - bt_k) * g)


def anvil(bt_k: F64, center: tuple[float, float], shield_k: float, radius: float, width: float = 4.0) -> F64:
    """``bt_k`` under a flat cold shield of ``shield_k`` out to ``radius`` (a logistic step ``width`` px wide)."""
    r = _radius(bt_k.shape, center)
    step = 1.0 / (1.0 + np.exp((r - radius) / width))
    return np.asarray(bt_k + (shield_k - bt_k) * step)


def flash_core(
    shape: tuple[int, int],
    center: tuple[float, float],
    peak: float,
    sigma: float = FLASH_SIGMA_PX,
    *,
    radius: float | None = None,
) -> F64:
    """Integer flashes per pixel, ``round(peak · exp(-r² / 2σ²))``, none beyond ``radius``; monotone in ``peak``.

    >>> flash_core((5, 5), (2, 2), 10)[2]
    array([ 6.,  9., 10.,  9.,  6.])
    """
    r = _radius(shape, center)
    counts = np.round(peak * np.exp(-(r**2) / (2 * sigma**2)))
    if radius is not None:
        counts[r > radius] = 0.0
    return np.asarray(counts)


def storm(
    shape: tuple[int, int],
    center: tuple[float, float],
    core_k: float,
    flashes: float,
) -> Scene:
    """A cold top on clear sky with ``flashes`` per pixel at its core."""
    return Scene(cold_top(clear_sky(shape), center, core_k), flash_core(shape, center, flashes))


def box_held_flash(flashes: F64, box: int = BOX) -> NDArray[np.bool_]:
    """Pixels whose ``box``×``box`` box (rows ``r - box/2 .. r + box/2 - 1``, the label's box) held ≥ 1 flash.

    >>> f = np.zeros((20, 20)); f[10, 10] = 1
    >>> m = box_held_flash(f); int(m.sum()), bool(m[3, 3]), bool(m[2, 2]), bool(m[18, 18]), bool(m[19, 19])
    (256, True, False, True, False)
    """
    half = box // 2
    padded = np.pad(flashes > 0, ((half, half - 1), (half, half - 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (box, box))
    return np.asarray(windows.any(axis=(-2, -1)))


def distance_to(mask: NDArray[np.bool_]) -> F64:
    """Euclidean distance (px) of every pixel to the nearest pixel of ``mask`` (a small set; inf when empty).

    >>> m = np.zeros((3, 4), bool); m[0, 0] = True
    >>> round(float(distance_to(m)[2, 3]), 3)
    3.606
    """
    rows, cols = np.indices(mask.shape, dtype=np.float64)
    out = np.full(mask.shape, np.inf)
    out[mask] = 0.0
    inside = np.pad(mask, 1, constant_values=False)
    inside = inside[:-2, 1:-1] & inside[2:, 1:-1] & inside[1:-1, :-2] & inside[1:-1, 2:]
    for r, c in np.argwhere(mask & ~inside):  # the nearest pixel of a set is always on its border
        np.minimum(out, np.hypot(rows - r, cols - c), out=out)
    return out


# -- scoring ----------------------------------------------------------------------------------------------------
Signature = Callable[..., Mapping[str, Any]]


class DenseScorer:
    """Physical scenes → ``[N, H, W]`` probabilities through a dense signature, by the serving path."""

    def __init__(self, signature: Signature, feature_set: FeatureSet, *, batch: int = 8) -> None:
        self.signature, self.feature_set, self.batch = signature, feature_set, batch

    def tile(self, scene: Scene) -> NDArray[np.float32]:
        """The model tile ``[H + 64, W + 64, C]`` of one scene."""
        previous = scene.bt_k if self.feature_set.temporal else None
        channels = scene_channels(self.feature_set, scene.bt_k, scene.flashes, previous)
        return with_halo(model_input(channels, self.feature_set)[0], self.feature_set, HALO)

    def __call__(self, scenes: Sequence[Scene]) -> F64:
        """Probabilities of scenes of one shape; an output of the wrong shape raises ``ValueError``."""
        import tensorflow as tf

        out = []
        for start in range(0, len(scenes), self.batch):
            chunk = scenes[start : start + self.batch]
            tiles = np.stack([self.tile(s) for s in chunk])
            got = np.asarray(self.signature(tile=tf.constant(tiles))["probability"], np.float64)
            expected = (len(chunk), *chunk[0].bt_k.shape)
            if got.shape != expected:
                msg = f"a tile {tiles.shape} gave probabilities {got.shape}; expected {expected}"
                raise ValueError(msg)
            out.append(got)
        return np.concatenate(out)


def _f(x: Any) -> float:
    return round(float(x), 6)


def _largest_drop(levels: Sequence[float], p: F64) -> tuple[float, int, int]:
    """The largest ``p[i] - p[j]`` with ``i < j`` (NaN if any ``p`` is NaN), and its ``(i, j)``."""
    if not np.isfinite(p).all():
        return float("nan"), 0, len(levels) - 1
    drop, where = -np.inf, (0, 0)
    for j in range(1, len(p)):
        i = int(np.argmax(p[:j]))
        if p[i] - p[j] > drop:
            drop, where = float(p[i] - p[j]), (i, j)
    return drop, *where


def _monotone_series(levels: Sequence[float], p: F64, unit: str, tol: float) -> Result:
    drop, i, j = _largest_drop(levels, p)
    passed = bool(drop <= tol)
    if passed:
        detail = (
            f"core probability non-decreasing within {tol:g}: {p[0]:.2f} at {levels[0]:g} {unit} → "
            f"{p[-1]:.2f} at {levels[-1]:g} {unit} (largest drop {max(drop, 0.0):.3f})"
        )
    else:
        detail = f"probability fell from {p[i]:.2f} at {levels[i]:g} {unit} to {p[j]:.2f} at {levels[j]:g} {unit}"
    return {
        "passed": passed,
        "detail": detail,
        "levels": [float(v) for v in levels],
        "probability": [_f(v) for v in p],
        "largest_drop": _f(drop),
        "tolerance": tol,
    }


# -- the checks -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    """What a check may need besides the model: the card's persistence rate (``None``: the default)."""

    persistence_rate: float | None = None


def monotone_lightning(score: DenseScorer, options: Options) -> Result:
    """More lightning never lowers the probability at the core of a 210 K cold top."""
    center = (SIZE[0] // 2, SIZE[1] // 2)
    bt = cold_top(clear_sky(SIZE), center, LIGHTNING_CELL_K)
    p = score([Scene(bt, flash_core(SIZE, center, n)) for n in FLASH_LEVELS])[:, center[0], center[1]]
    return _monotone_series(FLASH_LEVELS, p, "flashes/px", MONOTONE_TOLERANCE) | {"core_k": LIGHTNING_CELL_K}


def monotone_cold(score: DenseScorer, options: Options) -> Result:
    """A colder top never lowers the probability at its core, without and with lightning."""
    center = (SIZE[0] // 2, SIZE[1] // 2)
    series = {}
    for flashes in (0, COLD_SERIES_FLASHES):
        scenes = [storm(SIZE, center, core, flashes) for core in CORE_LEVELS_K]
        p = score(scenes)[:, center[0], center[1]]
        series[f"{flashes} flashes/px"] = _monotone_series(CORE_LEVELS_K, p, "K", MONOTONE_TOLERANCE)
    failed = [f"{s['detail']} (with {name})" for name, s in series.items() if not s["passed"]]
    passed = not failed
    detail = "; ".join(failed) if failed else "; ".join(f"{n}: {s['detail']}" for n, s in series.items())
    return {"passed": passed, "detail": detail, "series": series, "tolerance": MONOTONE_TOLERANCE}


PERSISTENCE_STORMS = (
    ("200 K, 100 flashes/px", 200.0, 100.0),
    ("220 K, 10 flashes/px", 220.0, 10.0),
    ("230 K, one flash", 230.0, None),
)


def persistence_bar(rate: float, share: float = PERSISTENCE_SHARE) -> float:
    """The least probability the ``persistence`` check allows where a box holds lightning: ``max(share × rate, 0.25)``.

    ``models.train`` builds the default model's persistence floor from the same bar.

    >>> persistence_bar(0.7), persistence_bar(0.3)
    (0.35, 0.25)
    """
    return max(share * rate, PERSISTENCE_FLOOR)


def persistence(score: DenseScorer, options: Options) -> Result:
    """Where the 16×16 box held lightning, the probability clears a share of the training data's persistence rate."""
    if options.persistence_rate is None:
        rate, source = DEFAULT_PERSISTENCE_RATE, "default: the card has no persistence_rate"
    else:
        rate, source = float(options.persistence_rate), "model card"
    bar = persistence_bar(rate)
    center = (SIZE[0] // 2, SIZE[1] // 2)
    scenes = []
    for _, core, flashes in PERSISTENCE_STORMS:
        bt = cold_top(clear_sky(SIZE), center, core)
        if flashes is None:
            counts = np.zeros(SIZE)
            counts[center] = 1.0
        else:
            counts = flash_core(SIZE, center, flashes)
        scenes.append(Scene(bt, counts))
    p = score(scenes)
    per_storm, lows = {}, []
    for (name, _, _), scene, prob in zip(PERSISTENCE_STORMS, scenes, p, strict=True):
        held = box_held_flash(scene.flashes)
        low = float(prob[held].min())  # NaN if any is NaN
        at = np.unravel_index(np.argmin(np.where(held, prob, np.inf)), SIZE) if np.isfinite(low) else center
        offset = (int(at[0]) - center[0], int(at[1]) - center[1])
        per_storm[name] = {
            "min": _f(low),
            "mean": _f(prob[held].mean()),
            "pixels": int(held.sum()),
            "min_at_offset_px": list(offset),
        }
        lows.append((low if np.isfinite(low) else -np.inf, low, name, offset))
    _, low, name, offset = min(lows, key=lambda t: t[0])
    passed = bool(low >= bar)
    relation = "≥" if passed else "is below"
    detail = (
        f"min probability {low:.2f} where the 16×16 box held lightning ({name}, {offset} px from the core) "
        f"{relation} the bar {bar:.2f} = max({PERSISTENCE_SHARE:g} × persistence rate {rate:.2f}, "
        f"{PERSISTENCE_FLOOR:g}) ({source})"
    )
    return {
        "passed": passed,
        "detail": detail,
        "min": _f(low),
        "bar": _f(bar),
        "persistence_rate": rate,
        "rate_source": source,
        "storms": per_storm,
    }


MOAT_SIZE = (256, 256)
MOAT_PEAKS = (300.0, 30.0)


def _moat_scene(peak: float) -> Scene:
    center = (MOAT_SIZE[0] // 2, MOAT_SIZE[1] // 2)
    bt = anvil(clear_sky(MOAT_SIZE), center, ANVIL_K, ANVIL_RADIUS_PX)
    bt = cold_top(bt, center, 198.0)
    return Scene(bt, flash_core(MOAT_SIZE, center, peak, 3.0, radius=8.0))


def no_moat(score: DenseScorer, options: Options) -> Result:
    """Near an intense storm (≤ 16 px from a flash) never less likely than far under the same anvil (≥ 48 px)."""
    center = (MOAT_SIZE[0] // 2, MOAT_SIZE[1] // 2)
    scenes = [_moat_scene(peak) for peak in MOAT_PEAKS]
    p = score(scenes)
    storms, failed = {}, []
    for peak, scene, prob in zip(MOAT_PEAKS, scenes, p, strict=True):
        distance = distance_to(scene.flashes > 0)
        near, far = distance <= NEAR_PX, (distance >= FAR_PX) & (scene.bt_k < ANVIL_COLD_K)
        low, high = float(prob[near].min()), float(prob[far].max())
        low_at = float(distance[near][np.argmin(prob[near])]) if np.isfinite(low) else float("nan")
        high_at = float(distance[far][np.argmax(prob[far])]) if np.isfinite(high) else float("nan")
        ok = bool(low >= high - MOAT_TOLERANCE)
        profile = [
            [d, _f(prob[center[0], center[1] + d]), _f(scene.bt_k[center[0], center[1] + d])] for d in range(0, 100, 4)
        ]
        storms[f"{peak:g} flashes/px"] = {
            "passed": ok,
            "flashes_total": int(scene.flashes.sum()),
            "near_min": _f(low),
            "near_min_distance_px": _f(low_at),
            "far_max": _f(high),
            "far_max_distance_px": _f(high_at),
            "far_pixels": int(far.sum()),
            "profile_px_p_bt": profile,
        }
        if not ok:
            failed.append(
                f"probability {low:.2f} at {low_at:.0f} px from the flashes is below {high:.2f} at "
                f"{high_at:.0f} px in the same cold cloud ({peak:g} flashes/px core)"
            )
    if failed:
        detail = "; ".join(failed)
    else:
        detail = "; ".join(
            f"{k}: min {v['near_min']:.2f} within {NEAR_PX} px ≥ max {v['far_max']:.2f} at ≥ {FAR_PX} px"
            for k, v in storms.items()
        )
    return {"passed": not failed, "detail": detail, "tolerance": MOAT_TOLERANCE, "storms": storms}


EDGE_SIZE = (160, 160)


def edges(score: DenseScorer, options: Options) -> Result:
    """A storm on each edge scores like one in the middle; overcast has no border stripe; clear sky stays clear."""
    h, w = EDGE_SIZE
    places = {
        "middle": (h // 2, w // 2),
        "top": (0, w // 2),
        "bottom": (h - 1, w // 2),
        "left": (h // 2, 0),
        "right": (h // 2, w - 1),
    }
    scenes = [storm(EDGE_SIZE, c, 215.0, 10) for c in places.values()]
    scenes += [
        Scene(np.full(EDGE_SIZE, 225.0), np.zeros(EDGE_SIZE)),
        Scene(np.full(EDGE_SIZE, 295.0), np.zeros(EDGE_SIZE)),
    ]
    p = score(scenes)
    at_centre = {name: float(p[k][c]) for k, (name, c) in enumerate(places.items())}
    storm_diff = {n: abs(v - at_centre["middle"]) for n, v in at_centre.items() if n != "middle"}
    worst_edge = max(storm_diff, key=lambda n: storm_diff[n] if np.isfinite(storm_diff[n]) else np.inf)
    overcast, clear = p[-2], p[-1]
    stripe = float(np.max(np.abs(overcast - overcast[h // 2, w // 2])))
    clear_max = float(clear.max())
    clear_at = np.unravel_index(int(np.argmax(clear)), EDGE_SIZE)
    problems = []
    if not storm_diff[worst_edge] <= EDGE_TOLERANCE:
        problems.append(
            f"a storm centred on the {worst_edge} edge scores {at_centre[worst_edge]:.2f} at its centre, "
            f"the same storm in the middle {at_centre['middle']:.2f}"
        )
    if not stripe <= EDGE_TOLERANCE:
        problems.append(
            f"a uniform 225 K overcast scores {overcast[h // 2, w // 2]:.2f} in the middle and differs by "
            f"up to {stripe:.2f} (border stripe)"
        )
    if not clear_max <= CLEAR_MAX:
        problems.append(f"a featureless 295 K frame scores up to {clear_max:.3f} (at {tuple(map(int, clear_at))})")
    detail = "; ".join(problems) or (
        f"edge storms within {storm_diff[worst_edge]:.3f} of the middle one ({at_centre['middle']:.2f}); overcast "
        f"border stripe {stripe:.3f}; featureless frame ≤ {clear_max:.3f}"
    )
    return {
        "passed": not problems,
        "detail": detail,
        "edges_policy": score.feature_set.edges,
        "storm_centre": {k: _f(v) for k, v in at_centre.items()},
        "largest_storm_difference": _f(storm_diff[worst_edge]),
        "overcast_centre": _f(overcast[h // 2, w // 2]),
        "overcast_largest_difference": _f(stripe),
        "overcast_edge_rows_mean": [_f(overcast[0].mean()), _f(overcast[-1].mean())],
        "clear_max": _f(clear_max),
        "clear_max_at": [int(clear_at[0]), int(clear_at[1])],
        "tolerance": EDGE_TOLERANCE,
        "clear_limit": CLEAR_MAX,
    }


FIELD_SIZE = (192, 256)
FIELD_STORMS = (((60, 70), 205.0, 30.0), ((130, 180), 220.0, 3.0), ((100, 130), 240.0, 0.0), ((150, 40), 228.0, 1.0))


def field(origin: tuple[int, int] = (0, 0), shape: tuple[int, int] = FIELD_SIZE) -> Scene:
    """Four storms of different kinds on clear sky, seen through a window at ``origin`` of a larger scene."""
    bt, flashes = clear_sky(shape, origin), np.zeros(shape)
    for (row, col), core, peak in FIELD_STORMS:
        center = (row - origin[0], col - origin[1])
        bt = cold_top(bt, center, core)
        flashes = flashes + flash_core(shape, center, peak)
    return Scene(bt, flashes)


def translation(score: DenseScorer, options: Options) -> Result:
    """Shift the scene by (7, 13) px: the probability shifts identically where no border is in view."""
    dy, dx = SHIFT
    h, w = FIELD_SIZE
    a, b = score([field(), field(SHIFT)])
    inner_a = a[HALO + dy : h - HALO + 1, HALO + dx : w - HALO + 1]
    inner_b = b[HALO : h - HALO + 1 - dy, HALO : w - HALO + 1 - dx]
    diff = np.abs(inner_a - inner_b)
    largest = float(diff.max()) if np.isfinite(diff).all() else float("nan")
    passed = bool(largest <= TRANSLATION_TOLERANCE)
    detail = (
        f"shifting the scene by {SHIFT} px changes the shifted probability by up to {largest:.2g} "
        f"({'within' if passed else 'above'} {TRANSLATION_TOLERANCE:g}) over {diff.size} interior pixels"
    )
    return {
        "passed": passed,
        "detail": detail,
        "largest_difference": largest,
        "pixels": int(diff.size),
        "shift_px": list(SHIFT),
        "tolerance": TRANSLATION_TOLERANCE,
    }


def locality(score: DenseScorer, options: Options) -> Result:
    """A storm added in a corner changes nothing more than 64 px away."""
    base = field()
    corner = (16, 16)
    bt = cold_top(base.bt_k, corner, 195.0, 5.0, radius=14.0)
    flashes = base.flashes + flash_core(FIELD_SIZE, corner, 300.0, radius=6.0)
    changed = (bt != base.bt_k) | (flashes != base.flashes)
    a, b = score([base, Scene(bt, flashes)])
    distance = distance_to(changed)
    delta = np.abs(a - b)
    far = distance > LOCALITY_PX
    largest = float(delta[far].max()) if np.isfinite(delta).all() else float("nan")
    near = float(delta[distance <= HALO].max()) if np.isfinite(delta).all() else float("nan")
    passed = bool(largest <= LOCALITY_TOLERANCE)
    detail = (
        f"a storm added in a corner changes the probability more than {LOCALITY_PX} px away by up to "
        f"{largest:.2g} ({'within' if passed else 'above'} {LOCALITY_TOLERANCE:g}); within {HALO} px by "
        f"{near:.2g}"
    )
    return {
        "passed": passed,
        "detail": detail,
        "largest_far_change": largest,
        "largest_near_change": _f(near),
        "far_pixels": int(far.sum()),
        "changed_pixels": int(changed.sum()),
        "tolerance": LOCALITY_TOLERANCE,
    }


RANKING_QUIET_K, RANKING_STORMS = 212.0, ((212.0, 30.0), (220.0, 30.0))


def inverted_ranking(score: DenseScorer, options: Options) -> Result:
    """A cold top without lightning never outscores the core of a storm (same or warmer top) in full flash."""
    center = (SIZE[0] // 2, SIZE[1] // 2)
    scenes = [storm(SIZE, center, RANKING_QUIET_K, 0)] + [storm(SIZE, center, k, n) for k, n in RANKING_STORMS]
    p = score(scenes)[:, center[0], center[1]]
    quiet, storms = (
        float(p[0]),
        {f"{k:g} K, {n:g} flashes/px": float(v) for (k, n), v in zip(RANKING_STORMS, p[1:], strict=True)},
    )
    inverted = [(name, v) for name, v in storms.items() if not quiet <= v + RANKING_TOLERANCE]
    if inverted:
        name, v = min(inverted, key=lambda t: t[1] if np.isfinite(t[1]) else -np.inf)
        detail = (
            f"a cold top without lightning ({RANKING_QUIET_K:g} K) scores {quiet:.2f}, above the core of a "
            f"storm with lightning ({name}) at {v:.2f}"
        )
    else:
        detail = f"a cold top without lightning ({RANKING_QUIET_K:g} K) scores {quiet:.2f}, storm cores " + ", ".join(
            f"{v:.2f} ({n})" for n, v in storms.items()
        )
    return {
        "passed": not inverted,
        "detail": detail,
        "quiet_core": _f(quiet),
        "storm_cores": {k: _f(v) for k, v in storms.items()},
        "tolerance": RANKING_TOLERANCE,
    }


CHECKS: dict[str, Callable[[DenseScorer, Options], Result]] = {
    "monotone_lightning": monotone_lightning,
    "monotone_cold": monotone_cold,
    "persistence": persistence,
    "no_moat": no_moat,
    "edges": edges,
    "translation": translation,
    "locality": locality,
    "inverted_ranking": inverted_ranking,
}


# -- running the suite ------------------------------------------------------------------------------------------
def run_checks(
    signature: Signature,
    feature_set: str | FeatureSet,
    *,
    persistence_rate: float | None = None,
    only: Sequence[str] | None = None,
) -> dict[str, Result]:
    """Run the checks on a dense signature (``f(tile=...)["probability"]``); check name → result.

    A check that raises fails with the reason; it never stops the others.
    """
    fs = get_feature_set(feature_set) if isinstance(feature_set, str) else feature_set
    score, options = DenseScorer(signature, fs), Options(persistence_rate)
    results = {}
    for name, check in CHECKS.items():
        if only is not None and name not in only:
            continue
        try:
            results[name] = check(score, options)
        except Exception as exc:  # the gate refuses a model it cannot check, with the reason
            results[name] = {"passed": False, "detail": f"could not run: {type(exc).__name__}: {exc}"}
    return results


def run_suite(saved_model: str | Path, *, card: Mapping[str, Any] | None = None) -> dict[str, Result]:
    """Run every check on a SavedModel's ``serving_default``.

    ``card`` gives ``feature_set`` and (optionally) ``persistence_rate``; by default the
    ``model_card.json`` beside the SavedModel.
    """
    import tensorflow as tf

    path = Path(saved_model)
    if card is None:
        card = json.loads((path / "model_card.json").read_text(encoding="utf-8"))
    if "feature_set" not in card:
        msg = f"{path}: the model card names no feature_set; the behaviour suite cannot build inputs"
        raise ValueError(msg)
    loaded = tf.saved_model.load(str(path))
    return run_checks(
        loaded.signatures["serving_default"], card["feature_set"], persistence_rate=card.get("persistence_rate")
    )


def problems(results: Mapping[str, Result]) -> list[str]:
    """One gate problem per failed check: ``behaviour <check>: <detail>``."""
    return [f"behaviour {name}: {r['detail']}" for name, r in results.items() if not r["passed"]]


def summary(results: Mapping[str, Result]) -> list[str]:
    """One line per check, ``PASS``/``FAIL`` and its numbers, for people."""
    return [f"behaviour {name}: {'PASS' if r['passed'] else 'FAIL'} {r['detail']}" for name, r in results.items()]


def card_entry(results: Mapping[str, Result]) -> dict[str, Any]:
    """What the model card records: the suite version, whether all passed, which failed, every result."""
    failed = [name for name, r in results.items() if not r["passed"]]
    return {"suite": SUITE_VERSION, "passed": not failed, "failed": failed, "checks": dict(results)}
