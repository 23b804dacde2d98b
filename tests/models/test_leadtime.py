"""Storm onsets and lead times (models.leadtime) on hand-made flashes and probability series."""

from __future__ import annotations

import numpy as np
import pytest

from models.leadtime import Onset, box_max_at, lead_times, storm_onsets


def test_a_storm_starts_once_and_again_after_a_quiet_spell() -> None:
    rows = [20, 21, 22, 20, 20]
    cols = [20, 20, 25, 20, 20]
    times = [1000.0, 1060.0, 1500.0, 2000.0, 5000.0]  # 5000 is more than 30 min after 2000
    onsets = storm_onsets(rows, cols, times, (64, 64), radius=8, quiet_s=1800.0, record_start=-1000.0)
    assert [(o.row, o.col, o.time) for o in onsets] == [(20, 20, 1000.0), (20, 20, 5000.0)]


def test_flashes_before_the_quiet_period_is_known_are_not_onsets() -> None:
    onsets = storm_onsets([5, 40], [5, 40], [100.0, 2000.0], (64, 64), radius=8, quiet_s=1800.0, record_start=0.0)
    assert [o.time for o in onsets] == [2000.0]  # at 100 s the 30 min before it are not in the record


def test_a_flash_just_beyond_the_edge_silences_an_onset_inside_it() -> None:
    rows, cols, times = [-3, 2], [10, 10], [1000.0, 1100.0]
    assert storm_onsets(rows, cols, times, (32, 32), radius=8, quiet_s=1800.0, record_start=-5000.0) == []
    far = storm_onsets([-3, 20], [10, 10], times, (32, 32), radius=8, quiet_s=1800.0, record_start=-5000.0)
    assert [(o.row, o.col) for o in far] == [(20, 10)]  # the edge flash itself is outside: not reported


def test_order_of_input_does_not_matter() -> None:
    rows, cols, times = np.array([20, 20, 50]), np.array([20, 22, 50]), np.array([3000.0, 2500.0, 2600.0])
    forward = storm_onsets(rows, cols, times, (64, 64), radius=8, quiet_s=1800.0, record_start=0.0)
    backward = storm_onsets(rows[::-1], cols[::-1], times[::-1], (64, 64), radius=8, quiet_s=1800.0, record_start=0.0)
    assert forward == backward == [Onset(20, 22, 2500.0), Onset(50, 50, 2600.0)]


def test_box_max_is_taken_over_the_label_box_and_ignores_nan() -> None:
    field = np.zeros((40, 40), np.float32)
    field[12, 12] = 0.9  # pixel 12's box is 4..19: a flash at 20 does not make its label 1
    field[29, 29] = 0.8  # pixel 29's box is 21..36: outside too
    field[28, 13] = 0.7  # pixels 13..28 are the ones whose label a flash at 20 sets (featurize.labels)
    field[20, 20] = np.nan
    assert box_max_at(field, Onset(20, 20, 0.0), 16) == pytest.approx(0.7)
    assert np.isnan(box_max_at(np.full((8, 8), np.nan), Onset(3, 3, 0.0), 4))


def test_the_box_is_the_set_of_pixels_the_flash_labels() -> None:
    from featurize.labels import label_grid

    labels = label_grid([20], [20], [100.0], 0.0, (40, 40), window_s=1800.0, box=16)
    for row, col in np.argwhere(np.ones((40, 40))):
        field = np.zeros((40, 40), np.float32)
        field[row, col] = 1.0
        assert box_max_at(field, Onset(20, 20, 100.0), 16) == labels[row, col], (row, col)


def test_lead_times_per_threshold_and_misses() -> None:
    frames = [0.0, 300.0, 600.0, 900.0, 1200.0, 1500.0, 1800.0]
    onsets = [Onset(0, 0, 1800.0), Onset(1, 1, 1700.0), Onset(2, 2, 900.0)]
    p = np.array(
        [
            [0.0, 0.3, 0.1, 0.6, 0.6, 0.9, 0.9],  # first >= 25 % at 300 s (25 min ahead); >= 50 % at 900 s (15 min)
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.2, 0.9],  # never reaches 25 % before 1700 s (the 1800 s frame is after)
            [0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9],  # look-back starts before the first frame: not counted
        ]
    )
    out = lead_times(onsets, frames, p, [0.25, 0.5], lookback_s=1500.0)
    assert out["onsets"] == 2
    assert out["onsets_without_history"] == 1
    assert out["0.25"]["lead_minutes"] == [25.0, None]
    assert out["0.5"]["lead_minutes"] == [15.0, None]
    assert out["0.25"]["fraction_detected"] == pytest.approx(0.5)
    assert out["0.5"]["median_minutes"] == pytest.approx(15.0)
