"""One frame → training examples: channels, labels, sampled pixels, patches and features.

Pure: arrays and scalars in, arrays out (the caller reads the files).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featurize.boxes import box_max
from featurize.channels import FeatureSet, scene_channels
from featurize.features import COLD_IR, CORE, patch_features
from featurize.glm_grid import flash_pixels, ltg_channel
from featurize.labels import label_grid
from featurize.patches import extract_patches
from featurize.sampling import Sample, SamplingPlan, sample_pixels
from ingest.geometry import FixedGrid

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]


@dataclass(frozen=True)
class Flashes:
    """GLM flashes from any number of granules: lat/lon (degrees, lightning ellipsoid), time (s since 1970)."""

    lat: F32
    lon: F32
    time: F64

    @classmethod
    def concat(cls, parts: Sequence[Any]) -> Flashes:
        """All flashes of ``parts`` (anything with ``lat``, ``lon`` and ``time`` arrays, e.g. a granule's flashes).

        >>> one = Flashes(np.array([1.0], np.float32), np.array([2.0], np.float32), np.array([3.0]))
        >>> len(Flashes.concat([one, one]).time), len(Flashes.concat([]).lat)
        (2, 0)
        """
        if not parts:
            return cls(np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, np.float64))
        return cls(
            np.concatenate([np.asarray(f.lat, np.float32) for f in parts]),
            np.concatenate([np.asarray(f.lon, np.float32) for f in parts]),
            np.concatenate([np.asarray(f.time, np.float64) for f in parts]),
        )


@dataclass(frozen=True)
class LabelRule:
    """The label of a pixel: a flash in the ``box`` × ``box`` pixels around it within ``window_s`` after the frame."""

    window_s: float = 1800.0
    box: int = 16

    @classmethod
    def of(cls, recorded: Mapping[str, Any] | None) -> LabelRule:
        """The rule as a dataset or model card records it (``asdict``); missing keys default, unknown ones are ignored.

        >>> LabelRule.of({"window_s": 900, "box": 8.0, "note": "x"}), LabelRule.of(None)
        (LabelRule(window_s=900.0, box=8), LabelRule(window_s=1800.0, box=16))
        """
        default = cls()
        given = recorded or {}
        return cls(**{f.name: type(getattr(default, f.name))(given[f.name]) for f in fields(cls) if f.name in given})


@dataclass(frozen=True)
class Examples:
    """The examples of one frame; every array's first axis is the example.

    ``patches`` channel → float32 ``[N, 64, 64]`` (NaN kept); ``features`` name →
    float32 ``[N]``; ``labels`` uint8 ``[N]``; ``kinds`` int8 ``[N]`` (0
    positive, 1 near-storm negative, 2 far negative); ``centers`` int64
    ``[N, 2]``; ``weights`` float32 ``[N]`` (pixels each example stands for,
    :class:`featurize.sampling.Sample`); ``lat``/``lon`` float32 ``[N]`` of the
    pixel centres (ground); ``positive_rate`` the frame's fraction of label-1
    pixels on the Earth; ``persistence`` (pixels whose 16×16 box held a flash
    in the window before the frame, how many of them are labelled 1): the
    frame's share of the training data's persistence rate; ``channels`` the
    whole frame's channels ``[H, W]``.
    """

    patches: dict[str, F32]
    features: dict[str, F32]
    labels: NDArray[np.uint8]
    kinds: NDArray[np.int8]
    weights: F32
    centers: NDArray[np.int64]
    lat: F32
    lon: F32
    positive_rate: float
    channels: dict[str, F32]
    persistence: tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        """Number of examples."""
        return int(self.labels.size)


def frame_channels(
    bt_k: F32,
    grid: FixedGrid,
    flashes: Flashes,
    frame_time: float,
    feature_set: FeatureSet,
    previous_bt_k: F32 | None = None,
) -> dict[str, F32]:
    """The channels of ``feature_set`` for one frame (NaN kept).

    Parameters
    ----------
    bt_k
        Band-13 brightness temperature ``[H, W]`` (K, NaN where missing).
    grid
        The frame's fixed grid.
    flashes
        Flashes around the frame (at least the ``ltg`` window before it).
    frame_time
        Scan start, s since 1970 UTC.
    feature_set
        Which channels.
    previous_bt_k
        Band 13 of the frame ``window`` earlier on the same grid (``ir_trend`` only).
    """
    counts = None
    if "ltg" in feature_set.channels:
        window = feature_set.window_minutes * 60.0
        counts, _ = ltg_channel(grid, flashes.lat, flashes.lon, flashes.time, frame_time, window)
    return scene_channels(feature_set, bt_k, counts, previous_bt_k)


def frame_labels(
    grid: FixedGrid, lat: NDArray[Any], lon: NDArray[Any], times: NDArray[Any], frame_time: float, rule: LabelRule
) -> NDArray[np.uint8]:
    """The label of every pixel of a frame ``[H, W]`` under ``rule``, from flashes at ``lat``/``lon``/``times``.

    ``lat``/``lon`` are degrees on the lightning ellipsoid, ``times`` and
    ``frame_time`` (the scan start) s since 1970 UTC. Training
    (:func:`frame_examples`) and live verification (``monitor.verify``) label
    with this one function.
    """
    pixels = flash_pixels(grid, lat, lon, margin=rule.box)
    flash_times = np.asarray(times)[pixels.index]
    return label_grid(
        pixels.rows, pixels.cols, flash_times, frame_time, grid.shape, window_s=rule.window_s, box=rule.box
    )


def frame_examples(
    bt_k: F32,
    grid: FixedGrid,
    flashes: Flashes,
    frame_time: float,
    feature_set: FeatureSet,
    rng: np.random.Generator,
    *,
    previous_bt_k: F32 | None = None,
    rule: LabelRule | None = None,
    plan: SamplingPlan | None = None,
    patch_size: int = 64,
) -> Examples:
    """Label every pixel, sample pixels, cut their patches and compute their features.

    See :func:`frame_channels` for the inputs; ``rule`` and ``plan`` set the
    label and the sampling; ``rng`` makes the sampling reproducible.
    """
    rule = rule or LabelRule()
    channels = frame_channels(bt_k, grid, flashes, frame_time, feature_set, previous_bt_k)
    labels = frame_labels(grid, flashes.lat, flashes.lon, flashes.time, frame_time, rule)
    ltg = channels.get("ltg", np.zeros(grid.shape, np.float32))
    sample: Sample = sample_pixels(labels, channels["ir"], ltg, rng, cold_ir=float(COLD_IR), plan=plan)
    patches = {name: extract_patches(values, sample.centers, patch_size) for name, values in channels.items()}
    features = patch_features(patches)  # NaN beyond the frame: the box statistics of the in-frame pixels
    if feature_set.edges == "mirror":  # the model's patches see beyond the frame as the dense halo does
        patches = {
            name: extract_patches(values, sample.centers, patch_size, edges="mirror")
            for name, values in channels.items()
        }
    lon, lat = grid.projection.lonlat(*grid.scan_angles_of(sample.centers[:, 0], sample.centers[:, 1]))
    earth = np.isfinite(channels["ir"])
    active = (box_max(ltg, CORE) > 0) & earth  # lightning in the 16×16 box now
    return Examples(
        patches=patches,
        features=features,
        labels=labels[sample.centers[:, 0], sample.centers[:, 1]],
        kinds=sample.kinds,
        weights=sample.weights,
        centers=sample.centers,
        lat=np.asarray(lat, np.float32),
        lon=np.asarray(lon, np.float32),
        positive_rate=float(labels[earth].mean()) if earth.any() else 0.0,
        channels=channels,
        persistence=(int(active.sum()), int(labels[active].sum())),
    )
