"""Dense features against the per-patch path, and known answers for boxes, flashes and labels."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from featurize.boxes import box_bounds, box_count, box_max, box_mean, box_min, box_sum
from featurize.channels import get_feature_set, ir_channel, model_input, scene_channels, with_halo
from featurize.features import dense_features, feature_names, patch_features
from featurize.glm_grid import flash_pixels, ltg_channel
from featurize.labels import label_grid, labels_at
from featurize.patches import extract_patches
from ingest.geometry import GRS80, LIGHTNING_ELLIPSOID
from ingest.synthetic import ScenarioConfig, sector_grid


def random_frame(rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """ir with scattered NaN, a NaN block (space) and a fully NaN corner; ltg sparse counts."""
    ir = rng.uniform(-0.2, 1.1, shape).astype(np.float32)
    ir[rng.random(shape) < 0.05] = np.nan
    ir[40:90, 100:180] = np.nan
    ir[:70, -70:] = np.nan  # whole 64-boxes without a finite pixel near this corner
    ltg = np.zeros(shape, np.float32)
    hits = rng.integers(0, [shape[0], shape[1]], (300, 2))
    np.add.at(ltg, (hits[:, 0], hits[:, 1]), 1.0)
    trend = rng.normal(0, 1, shape).astype(np.float32)
    trend[ir != ir] = np.nan
    return {"ir": ir, "ltg": ltg, "ir_trend": trend}


def test_dense_and_patch_features_agree_at_random_pixels_edges_and_nan() -> None:
    rng = np.random.default_rng(7)
    shape = (260, 410)
    channels = random_frame(rng, shape)
    dense = dense_features(channels)
    assert tuple(dense) == feature_names(("ir", "ltg", "ir_trend"))
    centers = np.concatenate(
        [
            rng.integers(0, shape, (400, 2)),
            [[0, 0], [0, shape[1] - 1], [shape[0] - 1, 0], [shape[0] - 1, shape[1] - 1], [5, shape[1] - 5]],
            [[60, 140], [10, 400]],  # inside the NaN block; in the all-NaN corner
        ]
    )
    patches = {name: extract_patches(values, centers, 64) for name, values in channels.items()}
    sparse = patch_features(patches)
    for name, values in dense.items():
        at = values[centers[:, 0], centers[:, 1]]
        if "_max_" in name:
            np.testing.assert_array_equal(at, sparse[name], err_msg=name)  # bit-exact, NaN where NaN
        else:
            np.testing.assert_allclose(at, sparse[name], rtol=1e-6, atol=0, err_msg=name)
    assert np.isnan(dense["ir_max_64"][10, 400])  # a box with no finite pixel is NaN, never 0
    assert np.isnan(sparse["ir_mean_16"][-1])


def test_analytic_field_gives_known_box_mean_and_max() -> None:
    rows, cols = np.mgrid[0:200, 0:300].astype(np.float64)
    field = (0.001 * rows + 0.002 * cols).astype(np.float32)
    r, c = 100, 150
    before, after = box_bounds(64)
    assert (before, after) == (32, 31)
    # A linear field's box mean is its value at the box's centre of mass, (r - 0.5, c - 0.5).
    assert box_mean(field, 64)[r, c] == pytest.approx(0.001 * (r - 0.5) + 0.002 * (c - 0.5), rel=1e-6)
    assert box_max(field, 64)[r, c] == field[r + after, c + after]
    assert box_min(field, 64)[r, c] == field[r - before, c - before]
    # At the corner the box is cut by the frame edge: only rows/cols 0..31 remain.
    assert box_mean(field, 64)[0, 0] == pytest.approx(0.001 * 15.5 + 0.002 * 15.5, rel=1e-6)
    assert box_count(np.ones((200, 300), bool), 64)[0, 0] == 32 * 32
    assert box_sum(np.ones((5, 5)), 64)[2, 2] == 25


def test_flash_at_a_known_position_lands_on_its_pixel() -> None:
    grid = sector_grid(
        ScenarioConfig(out=None, sector="C", start=datetime(2024, 6, 15, tzinfo=UTC), minutes=1, seed=0)  # type: ignore[arg-type]
    )
    want = np.array([[100, 300], [750, 1250], [1499, 2499], [321, 1987]])
    x, y = grid.scan_angles_of(want[:, 0], want[:, 1])
    lon, lat = grid.projection.on_ellipsoid(LIGHTNING_ELLIPSOID).lonlat(x, y)
    got = flash_pixels(grid, lat, lon)
    assert got.rows.tolist() == want[:, 0].tolist()
    assert got.cols.tolist() == want[:, 1].tolist()
    assert got.outside == 0
    # The same lat/lon taken as ground positions would land pixels away: the parallax GLM navigation removes.
    ground = grid.rowcol(lat, lon)
    assert np.hypot(ground[0] - want[:, 0], ground[1] - want[:, 1]).max() > 1.0
    assert grid.projection.ellipsoid == GRS80


def test_ltg_channel_counts_only_the_window_before_the_frame() -> None:
    config = ScenarioConfig(out=None, sector="M1", start=datetime(2024, 6, 15, tzinfo=UTC), minutes=1, seed=0)  # type: ignore[arg-type]
    grid = sector_grid(config)
    x, y = grid.scan_angles_of(np.array([100, 100, 100, 20]), np.array([200, 200, 200, 30]))
    lon, lat = grid.projection.on_ellipsoid(LIGHTNING_ELLIPSOID).lonlat(x, y)
    frame_time = 1_000_000.0
    times = np.array([frame_time - 10, frame_time - 899, frame_time - 901, frame_time + 5])
    channel, outside = ltg_channel(grid, lat, lon, times, frame_time, window_s=900)
    assert channel[100, 200] == 2  # the flash 901 s before and the one after the frame are not counted
    assert channel.sum() == 2
    assert outside == 0


def test_labels_for_a_hand_placed_flash_sequence() -> None:
    shape = (64, 64)
    t = 0.0
    rows = np.array([30, 30, 5, 50])
    cols = np.array([30, 40, 5, 50])
    times = np.array([600.0, 1800.0, 1801.0, -1.0])  # in; at the window's end (in); just after; before
    labels = label_grid(rows, cols, times, t, shape, window_s=1800, box=16)
    assert labels[30, 30] == 1
    assert labels[22, 22] == 0  # its box, rows and columns 14..29, stops short of the flash at 30
    assert labels[23, 23] == 1  # rows and columns 15..30 reach it
    assert labels[30, 47] == 1  # the flash exactly at t + 30 min counts: the window is (t, t + 30 min]
    assert labels[5, 5] == 0  # its flash came 1 s too late
    assert labels[50, 50] == 0  # its flash was before the frame
    centers = np.argwhere(np.ones(shape, bool))
    np.testing.assert_array_equal(labels.ravel(), labels_at(rows, cols, times, t, centers, window_s=1800, box=16))


def test_flashes_just_beyond_the_frame_edge_label_the_edge_pixels() -> None:
    labels = label_grid(np.array([-3]), np.array([10]), np.array([60.0]), 0.0, (20, 30), box=16)
    assert labels[0, 10] == 1  # its box, rows -8..7, reaches the flash three rows outside the frame
    assert labels[5, 10] == 1  # rows -3..12: still in
    assert labels[6, 10] == 0  # rows -2..13: out


def test_model_input_fills_nan_once_and_reports_it() -> None:
    bt = np.array([[300.0, np.nan], [200.0, 250.0]])
    channels = {"ir": ir_channel(bt), "ltg": np.zeros((2, 2), np.float32)}
    stacked, filled = model_input(channels, get_feature_set("ir-ltg/1"))
    assert stacked.shape == (2, 2, 2)
    assert stacked.dtype == np.float32
    assert not np.isnan(stacked).any()
    assert filled == {"ir": 0.25, "ltg": 0.0}
    assert np.isnan(channels["ir"][0, 1])  # the input was not changed
    with pytest.raises(ValueError, match=r"needs channels \['ir_trend'\]"):
        model_input(channels, get_feature_set("ir-ltg-trend/1"))
    valid = "ir-ltg/1, ir-ltg-trend/1, ir-ltg/2, ir-ltg-trend/2"
    with pytest.raises(ValueError, match=f"unknown feature set 'ir/9'; expected one of: {valid}"):
        get_feature_set("ir/9")


def test_patch_centres_outside_the_frame_are_refused() -> None:
    with pytest.raises(ValueError, match=r"inside the 4x5 frame; found \[\[4, 0\]\]"):
        extract_patches(np.zeros((4, 5), np.float32), [[1, 1], [4, 0]], size=2)


@pytest.mark.parametrize("key", ["ir-ltg/2", "ir-ltg-trend/2"])
def test_bounded_channels_are_monotone_and_stay_in_range_on_any_weather(key: str) -> None:
    fs = get_feature_set(key)
    bt = np.linspace(150.0, 340.0, 400)[None, :]  # colder than any top to hotter than any desert
    flashes = np.geomspace(1e-3, 1e5, 400)[None, :]  # a fraction of a flash to far beyond the extreme tail
    channels = scene_channels(fs, bt, flashes, previous_bt_k=bt[:, ::-1] if fs.temporal else None)
    ir, ltg = channels["ir"][0], channels["ltg"][0]
    assert (np.diff(ir) <= 0).all()  # colder is higher
    assert (ir.min(), ir.max()) == (0.0, 1.0)  # and never beyond the range
    assert (np.diff(ltg) >= 0).all()  # more flashes is higher
    assert ltg.min() > 0.0
    assert ltg.max() == 1.0
    assert float(scene_channels(fs, np.array([[250.0]]), np.array([[0.0]]), np.array([[250.0]]))["ltg"][0, 0]) == 0.0
    assert float(scene_channels(fs, np.array([[250.0]]), np.array([[1.0]]), np.array([[250.0]]))["ltg"][0, 0]) > 0.1
    if fs.temporal:
        trend = channels["ir_trend"][0]
        assert (trend.min(), trend.max()) == (-1.0, 1.0)
        cooling = scene_channels(fs, np.full((1, 5), 230.0), None, np.array([[230.0, 235.0, 245.0, 250.0, 300.0]]))
        assert (np.diff(cooling["ir_trend"][0]) >= 0).all()


def test_raw_sets_keep_their_old_scaling_for_old_model_cards() -> None:
    fs = get_feature_set("ir-ltg/1")
    channels = scene_channels(fs, np.array([[330.0, 170.0]]), np.array([[0.0, 250.0]]))
    assert channels["ir"][0].tolist() == pytest.approx([-10 / 140, 150 / 140])
    assert channels["ltg"].tolist() == [[0.0, 250.0]]
    assert (fs.scaling, fs.edges) == ("raw", "fill")


def test_mirrored_training_patches_equal_the_dense_halo_at_every_edge() -> None:
    fs = get_feature_set("ir-ltg/2")
    rng = np.random.default_rng(3)
    channels = {name: rng.uniform(0, 1, (70, 90)).astype(np.float32) for name in ("ir", "ltg")}
    stacked, _ = model_input(channels, fs)
    tile = with_halo(stacked, fs, 32)
    centres = np.array([[0, 0], [0, 89], [69, 0], [69, 89], [35, 0], [0, 45], [20, 30]])
    patches = {name: extract_patches(values, centres, 64, edges="mirror") for name, values in channels.items()}
    for k, (r, c) in enumerate(centres):
        expected = np.stack([patches["ir"][k], patches["ltg"][k]], axis=-1)
        np.testing.assert_array_equal(tile[r : r + 64, c : c + 64], expected)


def test_the_mirrored_halo_makes_no_edge_where_the_frame_has_none() -> None:
    """A uniform frame stays uniform beyond its border; a storm cut by the border continues beyond it."""
    fs = get_feature_set("ir-ltg/2")
    flat = np.full((40, 50, 2), 0.3, np.float32)
    assert (with_halo(flat, fs, 32) == np.float32(0.3)).all()
    old = get_feature_set("ir-ltg/1")
    assert (with_halo(flat, old, 32)[0, 0] == 0).all()  # the raw sets' fill: a fake clear-sky edge
    storm = np.zeros((40, 50, 2), np.float32)
    storm[:6, 20:30] = 1.0  # a cold top touching the top edge
    tile = with_halo(storm, fs, 32)
    assert (tile[26:32, 52:62] == 1.0).all()  # mirrored above the border
