"""The ``ltgcast`` command line.

Each subcommand builds a frozen settings object from its flags (with
``LTGCAST_*`` environment fallbacks where noted) and calls one ``main`` step.
Exit codes: 0 success, 1 some input was bad (reported, others still done),
2 bad usage or configuration (one line on stderr, before TensorFlow loads:
see :mod:`ltgcast.flags`). TensorFlow's C++ start-up lines stay off stderr
unless ``--tf-logs`` or ``LTGCAST_TF_LOGS=1`` (:mod:`ltgcast.quiet`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from foundation.errors import ConfigError, FrameDecodeError, IngestError, ModelRejected, TrainingError
from foundation.utc import parse_utc
from ingest.readers import describe, read_product
from ingest.sandbox import preload_in_checks
from ingest.synthetic import SECTORS, SLOTS, ScenarioConfig, simulate
from ltgcast.benchmarks import add_bench_arguments, bench_featurize
from ltgcast.datasets import add_dataset_arguments, dataset_command
from ltgcast.evaluation import add_evaluate_arguments, evaluate_command
from ltgcast.flags import Parser
from ltgcast.fuzzing import add_bench_fuzz_arguments, bench_fuzz
from ltgcast.httpbench import add_bench_http_arguments, bench_http
from ltgcast.ingestion import add_events_arguments, add_ingest_arguments, events_command, ingest_command
from ltgcast.latency import add_bench_latency_arguments, bench_latency
from ltgcast.modelcmd import add_models_arguments
from ltgcast.nowcasting import (
    DEFAULT_BASE,
    add_bench_nowcast_arguments,
    add_nowcast_arguments,
    bench_nowcast,
    nowcast_command,
)
from ltgcast.quiet import quiet_tensorflow
from ltgcast.scaleout import add_bench_scaleout_arguments, bench_scaleout
from ltgcast.service import add_run_arguments, run_command
from ltgcast.training import add_train_arguments, train_command

log = logging.getLogger("ltgcast")


def _inspect(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            summary = describe(read_product(path))
        except FrameDecodeError as exc:
            failed += 1
            sys.stderr.write(f"ltgcast inspect: {exc}\n")
            continue
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
    return 1 if failed else 0


def _simulate(args: argparse.Namespace) -> int:
    try:
        start = parse_utc(args.start, naive_is_utc=True)
    except ValueError as exc:
        msg = f"--start must be ISO 8601 (e.g. 2024-06-15T18:00Z), got {args.start!r}"
        raise ConfigError(msg) from exc
    lat, lon = (float(v) for v in args.meso_center.split(","))
    config = ScenarioConfig(
        out=Path(args.out),
        sector=args.sector,
        start=start,
        minutes=args.minutes,
        seed=args.seed,
        satellite=args.satellite,
        slot=args.slot,
        meso_center=(lat, lon),
        glm=not args.no_glm,
        cloud_top_offset_k=args.cloud_top_offset_k,
    )
    paths = simulate(config)
    abi = sum(1 for p in paths if "_ABI-" in p.name)
    sys.stdout.write(f"wrote {abi} ABI frames and {len(paths) - abi} GLM granules to {config.out}\n")
    return 0


def _bench_read(args: argparse.Namespace) -> int:
    """Time read + calibrate + mask per file; print a table and write JSON."""
    results = []
    for path in args.files:
        timings = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            product = read_product(path)
            timings.append(time.perf_counter() - began)
        summary = describe(product)
        results.append(
            {
                "path": str(path),
                "product": summary["product"],
                "shape": summary["shape"],
                "seconds_best": min(timings),
                "seconds_median": statistics.median(timings),
                "repeat": args.repeat,
            }
        )
        sys.stdout.write(f"{min(timings):8.3f} s best  {statistics.median(timings):8.3f} s median  {Path(path).name}\n")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sys.stdout.write(f"peak RSS {peak_mib:.0f} MiB\n")
    report = {"benchmark": "read", "peak_rss_mib": peak_mib, "cpus": os.cpu_count(), "files": results}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


class _Version(argparse.Action):
    """``--version``: the package's version and the default model's served version, read when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            package = version("ltgcast")
        except PackageNotFoundError:
            package = "unknown (not installed)"
        sys.stdout.write(f"ltgcast {package}\ndefault model: {_default_model()}\n")
        parser.exit(0)


def _default_model() -> str:
    """``name vN (repository)`` of the default repository's served version of ``lightning``, or why there is none."""
    from models.repository import ModelRepository

    try:
        current = ModelRepository(Path(DEFAULT_BASE)).current("lightning")
    except (OSError, ValueError, KeyError) as exc:
        return f"unreadable under {DEFAULT_BASE} ({exc})"
    return f"lightning v{current} ({DEFAULT_BASE})" if current is not None else f"none served under {DEFAULT_BASE}"


def _add_bench_read(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="GOES-R NetCDF files (ABI or GLM)")
    parser.add_argument("--repeat", type=int, default=3, help="reads per file (the best and the median are kept)")
    parser.add_argument("--json", default="var/bench/read.json", help="where to write the JSON report")
    parser.set_defaults(func=_bench_read)


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The argument parser of every subcommand (a :class:`ltgcast.flags.Parser`, as are all its subparsers).

    ``env`` (the process's environment unless given) is where the ``LTGCAST_*`` defaults of the flags come from.
    """
    parser = Parser(
        env=env,
        prog="ltgcast",
        description="ltgcast: the probability of lightning in the next 30 minutes "
        "from GOES-R ABI and GLM, as a streaming service and its tools.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument("--version", action=_Version, help="print the version of ltgcast and of its default model")
    parser.add_argument("--tf-logs", action="store_true",
                        help="let TensorFlow's C++/CUDA start-up lines through (env LTGCAST_TF_LOGS=1)")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    inspect = sub.add_parser("inspect", help="print one JSON summary per GOES-R file")
    inspect.add_argument("files", nargs="+", help="ABI L1b/L2 CMIP or GLM LCFA NetCDF files")
    inspect.set_defaults(func=_inspect)

    sim = sub.add_parser("simulate", help="write a synthetic GOES-R scenario in NOAA format")
    sim.add_argument("--out", required=True, help="output directory")
    sim.add_argument("--sector", choices=sorted(SECTORS), default="M1", help="ABI sector")
    sim.add_argument("--start", required=True, help="ISO 8601 UTC start, e.g. 2024-06-15T18:00Z")
    sim.add_argument("--minutes", type=int, default=30, help="length of the scenario")
    sim.add_argument("--seed", type=int, default=0, help="random seed of the storms")
    sim.add_argument("--satellite", default="G19", help="platform ID, e.g. G16, G18, G19")
    sim.add_argument("--slot", choices=sorted(SLOTS), default="GOES-East", help="orbital slot (the projection)")
    sim.add_argument("--meso-center", default="35.0,-97.5", help="lat,lon of a mesoscale sector")
    sim.add_argument("--no-glm", action="store_true", help="write ABI frames only")
    sim.add_argument(
        "--cloud-top-offset-k", type=float, default=0.0,
        help="every cloud top this much warmer (a regime change, to drill the drift alert)",
    )  # fmt: skip
    sim.set_defaults(func=_simulate)

    # `bench-read` and `bench-fuzz`: the old spellings of `bench read` and `bench fuzz`, for one release (no help line).
    _add_bench_read(sub.add_parser("bench-read"))
    old_fuzz = sub.add_parser("bench-fuzz")
    add_bench_fuzz_arguments(old_fuzz)
    old_fuzz.set_defaults(func=bench_fuzz)

    ingest = sub.add_parser("ingest", help="announce each new GOES-R file on the bus, exactly once")
    add_ingest_arguments(ingest)
    ingest.set_defaults(func=ingest_command)

    events = sub.add_parser("events", help="print events from a bus topic as JSON lines")
    add_events_arguments(events)
    events.set_defaults(func=events_command)

    bench_all = sub.add_parser("bench", help="benchmarks that print numbers and write JSON")
    bench_kinds = bench_all.add_subparsers(dest="benchmark", required=True)
    _add_bench_read(bench_kinds.add_parser("read", help="time the readers on files; print and write JSON"))
    fuzz = bench_kinds.add_parser("fuzz", help="read seeded mutations of real-format files; print and write JSON")
    add_bench_fuzz_arguments(fuzz)
    fuzz.set_defaults(func=bench_fuzz)
    bench_featurize_parser = bench_kinds.add_parser("featurize", help="dense features + GLM gridding of one frame")
    add_bench_arguments(bench_featurize_parser)
    bench_featurize_parser.set_defaults(func=bench_featurize)
    bench_nowcast_parser = bench_kinds.add_parser("nowcast", help="the worker path on a simulated frame")
    add_bench_nowcast_arguments(bench_nowcast_parser)
    bench_nowcast_parser.set_defaults(func=bench_nowcast)
    bench_latency_parser = bench_kinds.add_parser("latency", help="a frame in the spool -> /v1/grids/latest")
    add_bench_latency_arguments(bench_latency_parser)
    bench_latency_parser.set_defaults(func=bench_latency)
    bench_http_parser = bench_kinds.add_parser(
        "http", help="the HTTP server of `ltgcast run` under a burst and slow clients"
    )
    add_bench_http_arguments(bench_http_parser)
    bench_http_parser.set_defaults(func=bench_http)
    bench_scaleout_parser = bench_kinds.add_parser(
        "scaleout", help="grids per minute for 1, 2, 3 workers of the distributed mode (needs Kafka)"
    )
    add_bench_scaleout_arguments(bench_scaleout_parser)
    bench_scaleout_parser.set_defaults(func=bench_scaleout)

    nowcast = sub.add_parser("nowcast", help="score one frame into a NetCDF probability grid")
    add_nowcast_arguments(nowcast)
    nowcast.set_defaults(func=nowcast_command)

    dataset = sub.add_parser("dataset", help="training sets")
    dataset_kinds = dataset.add_subparsers(dest="action", required=True)
    build = dataset_kinds.add_parser("build", help="archive of frames and GLM granules -> sharded TFRecords")
    add_dataset_arguments(build)
    build.set_defaults(func=dataset_command)

    train = sub.add_parser("train", help="train a model on a dataset folder")
    add_train_arguments(train)
    train.set_defaults(func=train_command)

    evaluate = sub.add_parser("evaluate", help="score models and baselines on a dataset's test split")
    add_evaluate_arguments(evaluate)
    evaluate.set_defaults(func=evaluate_command)

    models = sub.add_parser("models", help="the model repository: add, list, validate, promote, rollback")
    add_models_arguments(models)

    run = sub.add_parser("run", help="the main job: the embedded nowcast service (ingest, worker, HTTP API)")
    add_run_arguments(run)
    run.set_defaults(func=run_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ltgcast`` console script."""
    args = build_parser().parse_args(argv)
    if not (args.tf_logs or os.environ.get("LTGCAST_TF_LOGS") == "1"):
        quiet_tensorflow(os.environ)  # before any command can import TensorFlow
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:  # kafka-python logs every connection at INFO: operators see its warnings, ltgcast's info
        logging.getLogger("kafka").setLevel(logging.WARNING)
    preload_in_checks("ltgcast.cli")  # the ingest checks' children then start without importing the CLI again
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ConfigError, ValueError) as exc:
        sys.stderr.write(f"ltgcast {args.command}: {exc}\n")
        return 2
    except (IngestError, TrainingError, ModelRejected) as exc:
        sys.stderr.write(f"ltgcast {args.command}: {exc}\n")
        return 1
