"""``ltgcast bench featurize``: dense features plus GLM gridding for one frame, timed in a warm process.

The frame is a synthetic one written by the scenario writer in NOAA's format and
read back through the real reader (so its NaN, space and value ranges are a
reader's); the flashes are the scenario's own plus random ones over the earth
pixels, up to ``--flashes`` (default 50 000, a busy 15 minutes over CONUS). The
per-patch ("naive") cost is measured on a sample of pixels and extrapolated to
the whole frame.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from featurize.channels import ir_channel
from featurize.examples import Flashes
from featurize.features import dense_features, patch_features
from featurize.glm_grid import ltg_channel
from featurize.patches import extract_patches
from ingest.abi import AbiImage
from ingest.geometry import LIGHTNING_ELLIPSOID
from ingest.glm import GlmGranule
from ingest.readers import read_product
from ingest.synthetic import ScenarioConfig, simulate


def simulated_inputs(sector: str, flashes: int, seed: int) -> tuple[AbiImage, Flashes, float]:
    """The last band-13 frame of a 16-minute simulated scenario, its flashes plus random ones up to ``flashes``."""
    start = datetime(2024, 6, 15, 20, 0, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as folder:
        paths = simulate(ScenarioConfig(out=Path(folder), sector=sector, start=start, minutes=16, seed=seed))
        frames = sorted(p for p in paths if "_ABI-" in p.name)
        image = read_product(frames[-1])
        granules = [read_product(p) for p in paths if "_GLM-" in p.name]
    assert isinstance(image, AbiImage)
    found = Flashes.concat([g.flashes for g in granules if isinstance(g, GlmGranule)])
    frame_time = image.scan_start.timestamp()
    extra = max(flashes - found.time.size, 0)
    if extra:
        rng = np.random.default_rng(seed)
        earth = np.argwhere(np.isfinite(image.values))
        chosen = earth[rng.integers(0, len(earth), extra)]
        x, y = image.grid.scan_angles_of(chosen[:, 0], chosen[:, 1])
        more_lon, more_lat = image.grid.projection.on_ellipsoid(LIGHTNING_ELLIPSOID).lonlat(x, y)
        more = Flashes(
            more_lat.astype(np.float32), more_lon.astype(np.float32), frame_time - rng.uniform(0, 900, extra)
        )
        found = Flashes.concat([found, more])
    return image, found, frame_time


def featurize_frame(image: AbiImage, lat: np.ndarray, lon: np.ndarray, times: np.ndarray, t: float) -> int:
    """One frame's work: channels, GLM gridding and every dense feature; returns the feature count."""
    ltg, _ = ltg_channel(image.grid, lat, lon, times, t, window_s=900)
    return len(dense_features({"ir": ir_channel(image.values), "ltg": ltg}))


def bench_featurize(args: argparse.Namespace) -> int:
    """Time :func:`featurize_frame`; print the numbers and write them as JSON."""
    began = time.perf_counter()
    image, flashes, t = simulated_inputs(args.sector, args.flashes, args.seed)
    lat, lon, times = flashes.lat, flashes.lon, flashes.time
    sys.stdout.write(f"inputs ready in {time.perf_counter() - began:.1f} s: {image.values.shape}, {lat.size} flashes\n")
    featurize_frame(image, lat, lon, times, t)  # warm up
    timings = []
    for _ in range(args.repeat):
        began = time.perf_counter()
        featurize_frame(image, lat, lon, times, t)
        timings.append(time.perf_counter() - began)
    naive = _naive_seconds_per_pixel(image, lat, lon, times, t, args.sample)
    pixels = int(image.values.size)
    report: dict[str, Any] = {
        "benchmark": "featurize",
        "sector": args.sector,
        "pixels": pixels,
        "flashes": int(lat.size),
        "repeat": args.repeat,
        "seconds_median": statistics.median(timings),
        "seconds_min": min(timings),
        "seconds_max": max(timings),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "naive_seconds_per_frame_extrapolated": naive * pixels,
        "naive_sample_pixels": args.sample,
        "cpus": os.cpu_count(),
    }
    for key in ("seconds_median", "seconds_min", "seconds_max", "peak_rss_mib", "naive_seconds_per_frame_extrapolated"):
        sys.stdout.write(f"{key:40s} {report[key]:10.3f}\n")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


def _naive_seconds_per_pixel(
    image: AbiImage, lat: np.ndarray, lon: np.ndarray, times: np.ndarray, t: float, sample: int
) -> float:
    """Per-patch extraction and reduction for ``sample`` pixels, as the seed model did it."""
    ltg, _ = ltg_channel(image.grid, lat, lon, times, t, window_s=900)
    channels = {"ir": ir_channel(image.values), "ltg": ltg}
    rng = np.random.default_rng(0)
    centers = rng.integers(0, image.values.shape, (sample, 2))
    began = time.perf_counter()
    for start in range(0, sample, 256):
        chunk = centers[start : start + 256]
        patch_features({name: extract_patches(values, chunk, 64) for name, values in channels.items()})
    return (time.perf_counter() - began) / sample


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """``ltgcast bench featurize`` flags."""
    parser.add_argument("--sector", choices=("C", "F", "M1", "M2"), default="C", help="ABI sector simulated")
    parser.add_argument("--json", default="var/bench/featurize.json", help="where to write the JSON report")
    parser.add_argument("--repeat", type=int, default=7, help="timed passes")
    parser.add_argument("--flashes", type=int, default=50_000, help="flashes in the 15-minute window")
    parser.add_argument("--sample", type=int, default=20_000, help="pixels for the per-patch extrapolation")
    parser.add_argument("--seed", type=int, default=3, help="seed of the simulated scenario")
