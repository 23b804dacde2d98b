"""Mergeable statistics, pixel sampling and day splits."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from featurize.boxes import box_count
from featurize.sampling import SamplingPlan, sample_pixels, split_of, storm_mask
from featurize.stats import RunningStats, StatsBook, default_edges


def test_merged_shards_equal_one_pass() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(0.4, 0.3, 100_000)
    values[rng.random(values.size) < 0.02] = np.nan
    whole = RunningStats(default_edges("ir"))
    whole.update(values)
    parts = [RunningStats(default_edges("ir")) for _ in range(7)]
    for part, chunk in zip(parts, np.array_split(values, 7), strict=True):
        part.update(chunk)
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part)
    finite = values[np.isfinite(values)]
    assert merged.count == whole.count == finite.size
    assert merged.nan_count == whole.nan_count == values.size - finite.size
    assert merged.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert merged.variance == pytest.approx(finite.var(), rel=1e-10)
    assert (merged.minimum, merged.maximum) == (finite.min(), finite.max())
    np.testing.assert_array_equal(merged.histogram, whole.histogram)
    assert merged.histogram.sum() == finite.size
    assert RunningStats.from_dict(merged.to_dict()).to_dict() == merged.to_dict()
    with pytest.raises(ValueError, match="different histogram edges"):
        merged.merge(RunningStats(default_edges("ltg")))


def test_stats_book_merges_by_name() -> None:
    a, b = StatsBook(), StatsBook()
    a.update({"ir": [0.1, 0.2], "ltg": [0.0]})
    b.update({"ir": [0.3]})
    merged = a.merge(b).to_dict()
    assert merged["ir"]["count"] == 3
    assert merged["ltg"]["count"] == 1


def test_sampling_keeps_every_positive_and_both_kinds_of_negative() -> None:
    rng = np.random.default_rng(0)
    shape = (300, 300)
    ir = np.full(shape, 0.2, np.float32)
    ir[:, :20] = np.nan  # space: never sampled
    ir[100:110, 100:110] = 0.9  # a cold top
    ltg = np.zeros(shape, np.float32)
    ltg[105, 105] = 4
    labels = np.zeros(shape, np.uint8)
    labels[98:114, 98:114] = 1
    plan = SamplingPlan(max_positives=10_000, near_ratio=0.5, far_ratio=2.0, min_negatives=10, near_px=20)
    sample = sample_pixels(labels, ir, ltg, rng, cold_ir=0.6, plan=plan)
    rows, cols = sample.centers.T
    positives = sample.kinds == 0
    assert positives.sum() == labels.sum()  # all positives
    assert (labels[rows, cols] == positives).all()
    assert np.isfinite(ir[rows, cols]).all()
    near_zone = box_count(storm_mask(ir, ltg, 0.6), 41) > 0
    assert near_zone[rows[sample.kinds == 1], cols[sample.kinds == 1]].all()
    assert not near_zone[rows[sample.kinds == 2], cols[sample.kinds == 2]].any()
    assert (sample.kinds == 1).sum() == 128  # 0.5 x 256 positives
    assert (sample.kinds == 2).sum() == 512
    # Each example stands for (pixels of its kind) / (examples of its kind): weighted counts give the frame back.
    for kind, pixels in ((0, labels.sum()), (1, (np.isfinite(ir) & (labels == 0) & near_zone).sum())):
        assert sample.weights[sample.kinds == kind].sum() == pytest.approx(pixels, rel=1e-5)
    assert sample.weights[sample.kinds == 2].sum() == pytest.approx((np.isfinite(ir) & ~near_zone).sum(), rel=1e-5)
    again = sample_pixels(labels, ir, ltg, np.random.default_rng(0), cold_ir=0.6, plan=plan)
    np.testing.assert_array_equal(again.centers, sample.centers)  # reproducible with the same seed


def test_frames_without_lightning_still_give_negatives() -> None:
    shape = (100, 100)
    sample = sample_pixels(
        np.zeros(shape, np.uint8), np.zeros(shape, np.float32), np.zeros(shape, np.float32),
        np.random.default_rng(1), cold_ir=0.6, plan=SamplingPlan(min_negatives=30),
    )  # fmt: skip
    assert np.bincount(sample.kinds, minlength=3).tolist() == [0, 0, 30]


def test_day_splits_are_stable_and_roughly_proportional() -> None:
    days = [date(2020, 1, 1) + timedelta(days=d) for d in range(2000)]
    splits = [split_of(d) for d in days]
    share = {s: splits.count(s) / len(days) for s in ("train", "validation", "test")}
    assert share["train"] == pytest.approx(0.8, abs=0.03)
    assert share["validation"] == pytest.approx(0.1, abs=0.02)
    assert share["test"] == pytest.approx(0.1, abs=0.02)
    assert split_of(date(2024, 6, 17)) == "train"  # pinned: a change here reshuffles every dataset
    assert split_of(date(2024, 6, 18)) == "test"
    with pytest.raises(ValueError, match="summing to 1"):
        split_of(date(2024, 1, 1), fractions=(0.5, 0.5, 0.5))
