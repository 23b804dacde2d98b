"""Which pixels become training examples, and which split a day belongs to.

Sampling (per frame)
--------------------
Every positive pixel (label 1) is kept (up to ``max_positives``, drawn at
random beyond that). Negatives come in two kinds, so the model learns
*initiation* and not only persistence (the seed model kept only patches near
current lightning):

* **near**: negatives within ``near_px`` pixels of a current storm (a pixel with
  flashes in the ``ltg`` window or a top colder than 235 K) — the hard cases;
* **far**: every other negative on the Earth disk — clear air, warm cloud,
  cold tops that never electrify far from storms.

Their numbers are ``near_ratio`` and ``far_ratio`` times the positives, with a
floor of ``min_negatives`` each so frames without lightning still teach "no".
Only pixels whose ``ir`` is finite (on the Earth, good data) are sampled.

Splits
------
A day (UTC date of the frame) goes wholly to train, validation or test, chosen
by the SHA-256 of ``"<salt>:<YYYY-MM-DD>"`` — the same on every machine and
every run (never Python's per-process salted ``hash``). A frame whose ``ltg``
or label window reaches into a day of another split is left out by the dataset
builder, so no flash informs two splits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date

import numpy as np
from numpy.typing import NDArray

from featurize.boxes import box_count

I64 = NDArray[np.int64]
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SamplingPlan:
    """How many examples of each kind a frame gives."""

    max_positives: int = 2000
    near_ratio: float = 1.0
    far_ratio: float = 1.0
    min_negatives: int = 50
    near_px: int = 32


@dataclass(frozen=True)
class Sample:
    """Chosen pixel centres ``[N, 2]`` (row, col), their kind (0 positive, 1 near, 2 far) and weight.

    ``weights`` float32 ``[N]``: how many pixels of its kind in the frame each
    example stands for (pixels of the kind / examples of the kind). Weighted
    sums over examples estimate sums over the frame, so the class balance of the
    sample can be undone when calibrating.
    """

    centers: I64
    kinds: NDArray[np.int8]
    weights: NDArray[np.float32]


def storm_mask(ir: NDArray[np.float32], ltg: NDArray[np.float32], cold_ir: float) -> NDArray[np.bool_]:
    """Pixels of a current storm: flashes in the window or a cold top.

    >>> storm_mask(np.array([[0.9, 0.2]], np.float32), np.array([[0, 0]], np.float32), 0.6).tolist()
    [[True, False]]
    """
    with np.errstate(invalid="ignore"):
        return (ltg > 0) | (ir > cold_ir)


def sample_pixels(
    labels: NDArray[np.uint8],
    ir: NDArray[np.float32],
    ltg: NDArray[np.float32],
    rng: np.random.Generator,
    *,
    cold_ir: float,
    plan: SamplingPlan | None = None,
) -> Sample:
    """Choose the example pixels of one frame (see the module docstring).

    Parameters
    ----------
    labels
        uint8 ``[H, W]`` from :func:`featurize.labels.label_grid`.
    ir, ltg
        The frame's channels ``[H, W]``.
    rng
        Random generator (seeded by the caller for reproducibility).
    cold_ir
        ``ir`` value of a cold top (:func:`featurize.channels.ir_threshold` of 235 K).
    plan
        Counts and radius.

    Returns
    -------
    Sample
        Positives first, then near, then far negatives.

    Examples
    --------
    >>> labels = np.zeros((100, 100), np.uint8); labels[10:12, 10:12] = 1
    >>> ltg = np.zeros((100, 100), np.float32); ltg[11, 11] = 3
    >>> s = sample_pixels(labels, np.zeros((100, 100), np.float32), ltg, np.random.default_rng(0),
    ...                   cold_ir=0.6, plan=SamplingPlan(min_negatives=5, near_px=8))
    >>> np.bincount(s.kinds).tolist()
    [4, 5, 5]
    """
    plan = plan or SamplingPlan()
    valid = np.isfinite(ir)
    positive = valid & (labels == 1)
    near_zone = box_count(storm_mask(ir, ltg, cold_ir), 2 * plan.near_px + 1) > 0
    near = valid & (labels == 0) & near_zone
    far = valid & (labels == 0) & ~near_zone
    chosen_pos = _draw(positive, plan.max_positives, rng)
    n_neg = len(chosen_pos)
    chosen_near = _draw(near, max(int(plan.near_ratio * n_neg), plan.min_negatives), rng)
    chosen_far = _draw(far, max(int(plan.far_ratio * n_neg), plan.min_negatives), rng)
    groups = (chosen_pos, chosen_near, chosen_far)
    sizes = [len(g) for g in groups]
    population = [int(positive.sum()), int(near.sum()), int(far.sum())]
    centers = np.concatenate(groups).astype(np.int64).reshape(-1, 2)
    kinds = np.repeat(np.array([0, 1, 2], np.int8), sizes)
    weights = np.repeat(np.array([p / max(n, 1) for p, n in zip(population, sizes, strict=True)], np.float32), sizes)
    return Sample(centers, kinds, weights)


def _draw(mask: NDArray[np.bool_], limit: int, rng: np.random.Generator) -> I64:
    where = np.argwhere(mask)
    if len(where) <= limit:
        return where
    return where[np.sort(rng.choice(len(where), size=limit, replace=False))]


def split_of(day: date, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), salt: str = "ltgcast") -> str:
    """The split of every frame of ``day``: ``train``, ``validation`` or ``test``.

    >>> from datetime import timedelta
    >>> split_of(date(2024, 6, 15)) == split_of(date(2024, 6, 15))
    True
    >>> sorted({split_of(date(2024, 1, 1) + timedelta(days=d)) for d in range(60)})
    ['test', 'train', 'validation']
    """
    if len(fractions) != len(SPLITS) or abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        msg = f"split fractions must be three non-negative numbers summing to 1, got {fractions}"
        raise ValueError(msg)
    digest = hashlib.sha256(f"{salt}:{day.isoformat()}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edges = np.cumsum(fractions)
    return SPLITS[int(np.searchsorted(edges, u, side="right"))] if u < edges[-1] else SPLITS[-1]
