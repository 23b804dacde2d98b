"""``ltgcast nowcast`` (one frame → one NetCDF grid) and ``ltgcast bench nowcast`` (the worker path, timed).

The model is a version of the repository (``--model-base``, env
``LTGCAST_MODEL_BASE`` or ``LTGCAST_MODELS``, default :data:`DEFAULT_BASE`, the
project's ``models/repository`` wherever the command runs): the served version
unless ``--version`` says otherwise.

A temporal model (``ir_trend``) takes ``--previous``, the band-13 frame of the
same satellite and sector 15 minutes (± 90 s) earlier on the same grid
(:func:`serve.worker.nowcast.previous_problem`). Without it the frame is scored as the
worker scores a frame with no predecessor (:mod:`serve.worker.trend`): with
``ir_trend`` 0 (no change), a warning, and ``trend: missing`` in the summary and
the grid. A ``--previous`` that does not qualify is refused with the reason
(exit 2): a wrong frame would be a wrong trend. ``ltgcast bench nowcast`` gives a
temporal model the frame 15 minutes before the one it times, from the same
simulated scenario.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from featurize.examples import Flashes
from foundation.errors import ConfigError
from ingest.abi import AbiImage
from ingest.glm import GlmGranule
from ingest.readers import read_product
from ltgcast.flags import add_env_argument

log = logging.getLogger(__name__)

_PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: The committed repository next to the installed package (an editable install), else ``models/repository`` under
#: the working directory.
DEFAULT_BASE = (
    str(_PROJECT_ROOT / "models" / "repository")
    if (_PROJECT_ROOT / "models" / "repository").is_dir()
    else "models/repository"
)
#: The variables a ``--model-base`` flag's default comes from, the first set one winning.
MODEL_BASE_VARIABLES = ("LTGCAST_MODEL_BASE", "LTGCAST_MODELS")


def add_model_base_argument(parser: argparse.ArgumentParser, **kwargs: Any) -> None:
    """``--model-base``: the model repository (``LTGCAST_MODEL_BASE``, else ``LTGCAST_MODELS``, else the default)."""
    add_env_argument(parser, "--model-base", MODEL_BASE_VARIABLES, default=DEFAULT_BASE, metavar="PATH",
                     help="model repository",
                     **kwargs)  # fmt: skip


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


def nowcast_command(args: argparse.Namespace) -> int:
    """Score one frame and write its grid; print a JSON summary."""
    from serve.scoring import get_scorer
    from serve.scoring.settings import ScorerSettings
    from serve.stores.gridfile import GridMeta, write_grid
    from serve.worker.nowcast import nowcast_frame

    image = read_product(args.ir)
    if not isinstance(image, AbiImage):
        msg = f"--ir: {args.ir} is not an ABI L1b/CMIP image"
        raise ConfigError(msg)
    flashes, used = _flashes(args.glm or [], image.name.satellite)
    base = Path(args.model_base)
    settings = ScorerSettings(args.backend, args.tile, tfserving=tfserving_settings(args))
    scorer = get_scorer(version_path(base, args.name, args.version), settings)
    previous = _previous(args.previous, image, scorer.feature_set)
    result = nowcast_frame(image, flashes, scorer, previous)
    extra: dict[str, Any] = {"filled": result.filled}
    if previous is not None:
        given = {"trend": "ok", "trend_from": Path(args.previous).name} if args.previous else None
        extra |= given or {"trend": "missing", "trend_missing": "not_given"}
    meta = GridMeta(
        satellite=image.name.satellite, sector=image.name.sector or "F", scan_start=image.scan_start,
        valid_time=image.scan_start + HORIZON, model_name=scorer.name, model_version=scorer.version,
        abi_file=image.name.name, glm_files=tuple(used), extra=extra,
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
        "trend": extra.get("trend"),
        "seconds": result.seconds,
    }
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


def _previous(path: str | None, image: AbiImage, feature_set: Any) -> np.ndarray | None:
    """Band 13 of ``--previous`` for a temporal model (``None`` for another); a clear refusal when it cannot be.

    Without ``--previous`` a temporal model is scored with the frame itself as its predecessor (``ir_trend`` 0,
    no change), as the worker does when it has none, with a warning and ``trend: missing`` in the grid.
    """
    from serve.worker.nowcast import previous_problem

    if not feature_set.temporal:
        return None
    window = f"{feature_set.window_minutes:g} minutes"
    if not path:  # the worker's policy: score with no change (ir_trend 0) and say so, in the grid and here
        log.warning("the model's feature set %s has ir_trend and no --previous (the band-13 frame %s earlier, same "
                    "satellite, sector and grid) was given: scored with no change, the grid says trend missing",
                    feature_set.key, window)  # fmt: skip
        return image.values
    before = read_product(path)
    if not isinstance(before, AbiImage):
        msg = f"--previous: {path} is not an ABI L1b/CMIP image"
        raise ConfigError(msg)
    problem = previous_problem(image, before, feature_set.window_minutes)
    if problem:
        msg = f"--previous: {problem}"
        raise ConfigError(msg)
    return before.values


def bench_nowcast(args: argparse.Namespace) -> int:
    """Time the worker path on a simulated frame, stage by stage (read, featurize, score, write); print and JSON.

    ``peak_rss_mib`` is the process's peak (simulation, inputs and the timed passes) before the naive pass, which
    loads TensorFlow for the ``patch`` signature; ``peak_rss_mib_with_naive_pass`` includes it.

    The scorer is the one ``ltgcast run`` builds with its defaults (``--backend embedded``: the fastest exact
    in-process backend of the version, see :mod:`serve.scoring`). ``read`` is the frame's file through its
    reader (in the embedded service the ingest daemon's check does this read, :mod:`ingest.handoff`); the GLM
    granules are read as they arrive, before the frame, and are not timed. A temporal model gets the frame 15
    minutes before; full disk (every 10 minutes) has none and is scored as the worker scores it then, with no
    change (``trend: missing`` in the report).
    """
    from serve.scoring import get_scorer
    from serve.scoring.settings import ScorerSettings
    from serve.stores.gridfile import GridMeta, write_grid
    from serve.worker.nowcast import nowcast_frame

    began = time.perf_counter()
    path = version_path(Path(args.model_base), args.name, args.version)
    scorer = get_scorer(path, ScorerSettings(args.backend, args.tile, args.threads))
    with tempfile.TemporaryDirectory() as folder:
        window = scorer.feature_set.window_minutes if scorer.feature_set.temporal else None
        frame, flashes, before = simulated_frame(Path(folder), args.sector, args.seed, window)
        image = _abi(read_product(frame))
        previous = None if not scorer.feature_set.temporal else before.values if before is not None else image.values
        sys.stdout.write(f"inputs ready in {time.perf_counter() - began:.1f} s: {image.values.shape}, "
                         f"scorer {type(scorer).__name__}\n")  # fmt: skip
        meta = GridMeta(image.name.satellite, args.sector, image.scan_start, image.scan_start + HORIZON, scorer.name,
                        scorer.version, image.name.name)  # fmt: skip
        timings, parts = [], []
        out = Path(folder) / "grid.nc"
        for k in range(args.repeat + 1):  # the first is the warm-up (graph tracing, first touch), not counted
            t0 = time.perf_counter()
            image = _abi(read_product(frame))
            t1 = time.perf_counter()
            result = nowcast_frame(image, flashes, scorer, previous)
            t2 = time.perf_counter()
            write_grid(out, result.probability, image.grid, meta)
            if k:
                timings.append(time.perf_counter() - t0)
                parts.append({"read": t1 - t0, **result.seconds, "write": time.perf_counter() - t2})
    worker_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the naive pass loads TensorFlow
    naive = _naive_seconds_per_pixel(path, image, flashes, args.sample, previous)
    pixels = int(image.values.size)
    report: dict[str, Any] = {
        "benchmark": "nowcast",
        "sector": args.sector,
        "pixels": pixels,
        "frame_seconds_median": statistics.median(timings),
        "frame_seconds_min": min(timings),
        "frame_seconds_max": max(timings),
        "peak_rss_mib": worker_rss,
        "peak_rss_mib_with_naive_pass": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "naive_seconds_per_frame_extrapolated": naive * pixels,
        "speedup": naive * pixels / statistics.median(timings),
        "parts_seconds_median": {k: statistics.median(p[k] for p in parts) for k in parts[0]},
        "naive_sample_pixels": args.sample,
        "model": f"{scorer.name}/{scorer.version}",
        "backend": args.backend,
        "scorer": getattr(scorer, "describe", lambda: type(scorer).__name__)(),
        "trend": None if not scorer.feature_set.temporal else "ok" if before is not None else "missing",
        "tile": args.tile,
        "threads": args.threads,
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
    }
    for key in ("frame_seconds_median", "frame_seconds_min", "frame_seconds_max", "peak_rss_mib",
                "naive_seconds_per_frame_extrapolated", "speedup"):  # fmt: skip
        sys.stdout.write(f"{key:40s} {report[key]:10.3f}\n")
    for key, seconds in report["parts_seconds_median"].items():
        sys.stdout.write(f"{'median ' + key + ' (s)':40s} {seconds:10.3f}\n")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


def _abi(product: AbiImage | GlmGranule) -> AbiImage:
    if not isinstance(product, AbiImage):
        msg = f"expected an ABI image, found {type(product).__name__}"
        raise ConfigError(msg)
    return product


def simulated_frame(folder: Path, sector: str, seed: int, window_minutes: float | None
                    ) -> tuple[Path, Flashes, AbiImage | None]:  # fmt: skip
    """The last band-13 frame file of a 16-minute simulated scenario in ``folder``, its flashes, and its predecessor.

    The scenario is :func:`ltgcast.benchmarks.simulated_inputs`'s (same start, seed, sector and 16 minutes). The
    predecessor is the frame ``window_minutes`` before (read) for a temporal model; ``None`` without a window,
    or where the sector has none (full disk is scanned every 10 minutes).
    """
    from ingest.synthetic import ScenarioConfig, simulate
    from serve.worker.nowcast import previous_problem

    start = datetime(2024, 6, 15, 20, 0, tzinfo=UTC)
    paths = simulate(ScenarioConfig(out=folder, sector=sector, start=start, minutes=16, seed=seed))
    frames = sorted(p for p in paths if "_ABI-" in p.name)
    granules = [read_product(p) for p in paths if "_GLM-" in p.name]
    flashes = Flashes.concat([g.flashes for g in granules if isinstance(g, GlmGranule)])
    if window_minutes is None:
        return frames[-1], flashes, None
    images = [f for f in (read_product(p) for p in frames) if isinstance(f, AbiImage)]
    before = next((f for f in images if previous_problem(images[-1], f, window_minutes) is None), None)
    return frames[-1], flashes, before


def simulated_pair(sector: str, seed: int, window_minutes: float) -> tuple[AbiImage, Flashes, AbiImage]:
    """The last band-13 frame of :func:`simulated_frame`'s scenario, its flashes, and the frame before it.

    A sector with no frame ``window_minutes`` before its last (full disk, every 10 minutes) is refused.
    """
    with tempfile.TemporaryDirectory() as folder:
        frame, flashes, before = simulated_frame(Path(folder), sector, seed, window_minutes)
        image = _abi(read_product(frame))
    if before is None:
        msg = f"bench nowcast: the simulated {sector} scenario has no frame {window_minutes:g} minutes before its last"
        raise ConfigError(msg)
    return image, flashes, before


def _naive_seconds_per_pixel(path: Path, image: AbiImage, flashes: Flashes, sample: int,
                             previous: np.ndarray | None = None) -> float:  # fmt: skip
    """The ``patch`` scorer on ``sample`` random pixels (channels built once, as a kindness to it)."""
    from featurize.channels import model_input
    from featurize.examples import frame_channels
    from serve.scoring import PatchScorer

    scorer = PatchScorer(path)
    t = image.scan_start.timestamp()
    channels = frame_channels(image.values, image.grid, flashes, t, scorer.feature_set, previous)
    stacked, _ = model_input(channels, scorer.feature_set)
    pixels = np.random.default_rng(0).integers(0, stacked.shape[:2], (sample, 2))
    scorer.score_pixels(stacked, pixels[:64])  # warm-up
    began = time.perf_counter()
    scorer.score_pixels(stacked, pixels)
    return (time.perf_counter() - began) / sample


#: TF Serving's knobs as flags: (flag suffix, TFServingSettings field, type, help); ``--tfserving`` is the target.
TFSERVING_FLAGS: tuple[tuple[str, str, Callable[[str], Any], str, str], ...] = (
    ("rest", "rest", str, "URL", "REST base URL of the fallback, e.g. http://127.0.0.1:8501 (default: none)"),
    ("model", "model", str, "NAME", "model name on the server (default: the card's name, the repository folder)"),
    ("label", "label", str, "LABEL", "version label (stable, canary) to ask for (default: none, the served version)"),
    ("transport", "transport", str, "DTYPE", "tile dtype on the wire: float32, or float16 where the card allows it"),
    ("timeout", "timeout_s", float, "SECONDS", "how long one request may take"),
    ("retries", "retries", int, "N", "further tries after a retryable failure"),
    ("backoff", "backoff_s", float, "SECONDS", "wait before the first retry, doubled after each"),
    ("backoff-max", "backoff_max_s", float, "SECONDS", "the longest wait between two tries"),
    ("breaker-failures", "breaker_failures", int, "N", "consecutive retryable failures that open the breaker"),
    ("breaker-cooldown", "breaker_cooldown_s", float, "SECONDS", "how long an open breaker waits before a trial"),
    ("max-message-mb", "max_message_mb", int, "MB", "gRPC message size limit, both ways"),
)


def add_tfserving_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tfserving HOST:PORT`` and every other knob of :class:`TFServingSettings`, in a group of their own."""
    from serve.scoring.settings import TFServingSettings

    d = TFServingSettings()
    group = parser.add_argument_group("TF Serving (--scorer tfserving)")
    add_env_argument(parser, "--tfserving", "LTGCAST_TFSERVING", default=d.target, group=group, metavar="HOST:PORT",
                     help="TF Serving's gRPC address")  # fmt: skip
    for flag, name, kind, metavar, text in TFSERVING_FLAGS:
        group.add_argument(f"--tfserving-{flag}", dest=f"tfserving_{name}", type=kind, default=getattr(d, name),
                           metavar=metavar, help=text)  # fmt: skip


def tfserving_settings(args: argparse.Namespace) -> Any:
    """The :class:`TFServingSettings` of parsed :func:`add_tfserving_arguments` flags (checked on construction)."""
    from serve.scoring.settings import TFServingSettings

    knobs = {name: getattr(args, f"tfserving_{name}") for _, name, _, _, _ in TFSERVING_FLAGS}
    return TFServingSettings(target=args.tfserving, **knobs)


def _model_flags(parser: argparse.ArgumentParser, backends: tuple[str, ...] | None) -> None:
    """The model flags ``nowcast`` and ``bench nowcast`` share (``--name`` and ``--backend``: their old spellings)."""
    from ltgcast.flags import add_old_spelling

    add_model_base_argument(parser)
    parser.add_argument("--model-name", dest="name", default="lightning", help="model name in the repository")
    add_old_spelling(parser, "--name", "--model-name")
    parser.add_argument("--version", type=int, help="model version (default: the served one)")
    parser.add_argument("--tile", type=int, default=512, help="output pixels per tile side; 0 = whole frame")
    parser.add_argument("--scorer", dest="backend", choices=backends, default="embedded",
                        help="scorer backend (embedded: the fastest exact one in process, as `run` uses)")  # fmt: skip
    add_old_spelling(parser, "--backend", "--scorer", choices=backends)


def add_nowcast_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ltgcast nowcast``."""
    parser.add_argument("--ir", required=True, help="ABI band-13 L1b Rad (or L2 CMIP) file")
    parser.add_argument("--glm", nargs="*", help="GLM LCFA granules of the 15 minutes before the frame")
    parser.add_argument("--previous", help="band-13 frame 15 minutes earlier (feature sets with ir_trend)")
    parser.add_argument("--out", required=True, help="output NetCDF path")
    from serve.scoring import BACKENDS

    add_tfserving_arguments(parser)
    parser.add_argument("--encoding", choices=("uint8", "float32"), default="uint8", help="probability storage")
    _model_flags(parser, BACKENDS)


def add_bench_nowcast_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ltgcast bench nowcast``."""
    parser.add_argument("--sector", choices=("C", "F", "M1", "M2"), default="C", help="ABI sector simulated")
    parser.add_argument("--json", default="var/bench/nowcast.json", help="where to write the JSON report")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes (after one warm-up pass)")
    parser.add_argument("--sample", type=int, default=2000, help="pixels for the naive (patch) extrapolation")
    parser.add_argument("--threads", type=int, default=0, help="in-process scorer threads (0 = its default)")
    parser.add_argument("--seed", type=int, default=3, help="seed of the simulated scenario")
    _model_flags(parser, None)
