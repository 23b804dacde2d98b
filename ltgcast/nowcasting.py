"""``ltgcast nowcast`` (one frame → one NetCDF grid) and ``ltgcast bench nowcast`` (the worker path, timed).

The model is a version of the repository (``--model-base``, env
``LTGCAST_MODELS``, default ``models/repository``): the served version unless
``--version`` says otherwise.
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
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from featurize.examples import Flashes
from ingest.abi import AbiImage
from ingest.errors import ConfigError
from ingest.glm import GlmGranule
from ingest.readers import read_product
from ltgcast.benchmarks import simulated_inputs

DEFAULT_BASE = "models/repository"
HORIZON = timedelta(minutes=30)


def version_path(base: Path, name: str, version: int | None) -> Path:
    """The folder of ``name``'s ``version`` (or its served version) under ``base``."""
    from models.repository import ModelRepository

    repo = ModelRepository(base)
    chosen = version if version is not None else repo.current(name)
    if chosen is None or chosen not in repo.versions(name):
        msg = f"--model-base: no {'version ' + str(version) if version else 'served version'} of {name!r} under {base}"
        raise ConfigError(msg)
    return repo.path(name, chosen)


def _flashes(paths: list[str], satellite: str) -> tuple[Flashes, list[str]]:
    granules = []
    for path in paths:
        granule = read_product(path)
        if not isinstance(granule, GlmGranule):
            msg = f"--glm: {path} is not a GLM LCFA granule"
            raise ConfigError(msg)
        if granule.name.satellite != satellite:
            msg = f"--glm: {path} is from {granule.name.satellite}; the frame is from {satellite}"
            raise ConfigError(msg)
        granules.append(granule)
    return Flashes.concat([g.flashes for g in granules]), [Path(p).name for p in paths]


def nowcast_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Score one frame and write its grid; print a JSON summary."""
    from serve.gridfile import GridMeta, write_grid
    from serve.nowcast import nowcast_frame
    from serve.scoring import DEFAULT_TFSERVING, ScorerSettings, get_scorer

    image = read_product(args.ir)
    if not isinstance(image, AbiImage):
        msg = f"--ir: {args.ir} is not an ABI L1b/CMIP image"
        raise ConfigError(msg)
    flashes, used = _flashes(args.glm or [], image.name.satellite)
    base = Path(args.model_base or env.get("LTGCAST_MODELS") or DEFAULT_BASE)
    target = args.tfserving or env.get("LTGCAST_TFSERVING") or DEFAULT_TFSERVING
    settings = ScorerSettings(args.backend, args.tile, target=target)
    scorer = get_scorer(version_path(base, args.name, args.version), settings)
    previous = None
    if "ir_trend" in scorer.feature_set.channels:
        if not args.previous:
            msg = f"--previous: model feature set {scorer.feature_set.key} needs the frame 15 minutes earlier"
            raise ConfigError(msg)
        before = read_product(args.previous)
        if not isinstance(before, AbiImage) or before.band != image.band or before.grid.shape != image.grid.shape:
            msg = f"--previous: {args.previous} must be a band-{image.band} frame on the same {image.grid.shape} grid"
            raise ConfigError(msg)
        previous = before.values
    result = nowcast_frame(image, flashes, scorer, previous)
    meta = GridMeta(
        satellite=image.name.satellite, sector=image.name.sector or "F", scan_start=image.scan_start,
        valid_time=image.scan_start + HORIZON, model_name=scorer.name, model_version=scorer.version,
        abi_file=image.name.name, glm_files=tuple(used), extra={"filled": result.filled},
    )  # fmt: skip
    write_grid(Path(args.out), result.probability, image.grid, meta, encoding=args.encoding)
    p = result.probability
    summary = {
        "out": args.out,
        "grid_id": meta.grid_id,
        "shape": list(p.shape),
        "max_probability": float(np.nanmax(p)) if np.isfinite(p).any() else None,
        "pixels_at_least_25pct": int(np.sum(p >= 0.25)),
        "missing_pixels": int(np.sum(~np.isfinite(p))),
        "flashes": int(flashes.time.size),
        "seconds": result.seconds,
    }
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


def bench_nowcast(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Time the worker path (featurize, score, write NetCDF) on a simulated frame; print and write JSON."""
    from serve.gridfile import GridMeta, write_grid
    from serve.nowcast import nowcast_frame
    from serve.scoring import EmbeddedScorer, ScorerSettings

    began = time.perf_counter()
    image, flashes, _ = simulated_inputs(args.sector, 0, args.seed)  # the scenario's own flashes only
    sys.stdout.write(f"inputs ready in {time.perf_counter() - began:.1f} s: {image.values.shape}\n")
    path = version_path(Path(args.model_base or env.get("LTGCAST_MODELS") or DEFAULT_BASE), args.name, args.version)
    scorer = EmbeddedScorer(path, ScorerSettings("embedded", args.tile, args.threads))
    meta = GridMeta(image.name.satellite, args.sector, image.scan_start, image.scan_start + HORIZON, scorer.name,
                    scorer.version, image.name.name)  # fmt: skip
    timings, parts = [], []
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "grid.nc"
        for k in range(args.repeat + 1):  # the first is the warm-up (graph tracing), not counted
            t0 = time.perf_counter()
            result = nowcast_frame(image, flashes, scorer)
            t1 = time.perf_counter()
            write_grid(out, result.probability, image.grid, meta)
            if k:
                timings.append(time.perf_counter() - t0)
                parts.append({**result.seconds, "write": time.perf_counter() - t1})
    naive = _naive_seconds_per_pixel(path, image, flashes, args.sample)
    pixels = int(image.values.size)
    report: dict[str, Any] = {
        "benchmark": "nowcast",
        "sector": args.sector,
        "pixels": pixels,
        "frame_seconds_median": statistics.median(timings),
        "frame_seconds_min": min(timings),
        "frame_seconds_max": max(timings),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "naive_seconds_per_frame_extrapolated": naive * pixels,
        "speedup": naive * pixels / statistics.median(timings),
        "parts_seconds_median": {k: statistics.median(p[k] for p in parts) for k in parts[0]},
        "naive_sample_pixels": args.sample,
        "model": f"{scorer.name}/{scorer.version}",
        "tile": args.tile,
        "threads": args.threads,
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
    }
    for key in ("frame_seconds_median", "frame_seconds_min", "frame_seconds_max", "peak_rss_mib",
                "naive_seconds_per_frame_extrapolated", "speedup"):  # fmt: skip
        sys.stdout.write(f"{key:40s} {report[key]:10.3f}\n")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


def _naive_seconds_per_pixel(path: Path, image: AbiImage, flashes: Flashes, sample: int) -> float:
    """The ``patch`` scorer on ``sample`` random pixels (channels built once, as a kindness to it)."""
    from featurize.channels import model_input
    from featurize.examples import frame_channels
    from serve.scoring import PatchScorer

    scorer = PatchScorer(path)
    channels = frame_channels(image.values, image.grid, flashes, image.scan_start.timestamp(), scorer.feature_set)
    stacked, _ = model_input(channels, scorer.feature_set)
    pixels = np.random.default_rng(0).integers(0, stacked.shape[:2], (sample, 2))
    scorer.score_pixels(stacked, pixels[:64])  # warm-up
    began = time.perf_counter()
    scorer.score_pixels(stacked, pixels)
    return (time.perf_counter() - began) / sample


def _model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-base", help=f"model repository (env LTGCAST_MODELS; default {DEFAULT_BASE})")
    parser.add_argument("--name", default="lightning", help="model name in the repository")
    parser.add_argument("--version", type=int, help="model version (default: the served one)")
    parser.add_argument("--tile", type=int, default=512, help="output pixels per tile side; 0 = whole frame")


def add_nowcast_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ltgcast nowcast``."""
    parser.add_argument("--ir", required=True, help="ABI band-13 L1b Rad (or L2 CMIP) file")
    parser.add_argument("--glm", nargs="*", help="GLM LCFA granules of the 15 minutes before the frame")
    parser.add_argument("--previous", help="band-13 frame 15 minutes earlier (feature sets with ir_trend)")
    parser.add_argument("--out", required=True, help="output NetCDF path")
    parser.add_argument("--backend", choices=("embedded", "patch", "tfserving"), default="embedded")
    parser.add_argument("--tfserving", help="TF Serving gRPC HOST:PORT for --backend tfserving (env LTGCAST_TFSERVING)")
    parser.add_argument("--encoding", choices=("uint8", "float32"), default="uint8", help="probability storage")
    _model_flags(parser)


def add_bench_nowcast_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ltgcast bench nowcast``."""
    parser.add_argument("--sector", choices=("C", "F", "M1", "M2"), default="C")
    parser.add_argument("--json", default="var/bench/nowcast.json", help="where to write the JSON report")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sample", type=int, default=2000, help="pixels for the naive (patch) extrapolation")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow intra-op threads (0 = default)")
    parser.add_argument("--seed", type=int, default=3)
    _model_flags(parser)
