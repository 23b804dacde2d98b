"""``ltgcast bench latency``: from a frame landing in the spool to its grid at ``/v1/grids/latest``.

The whole embedded service runs in this process (``ltgcast run``'s :class:`~ltgcast.service.Service`: spool
source, in-process bus, worker with the embedded scorer, file store, HTTP API). A simulated scenario's GLM
granules go into the spool first, as they would have arrived over the previous minutes; then each measured
frame is renamed into the spool (as LDM delivers) and ``/v1/grids/latest`` is polled over HTTP every 20 ms
until it names that frame. The first frame warms the process up and is not counted. Each frame is delivered
once the worker's drift thread has finished the previous one, as it has at a CONUS cadence of 5 minutes;
frames delivered back to back would share the 2 cores with that pass.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest.atomic import atomic_path
from ingest.errors import ConfigError
from ingest.synthetic import ScenarioConfig, simulate
from ltgcast.nowcasting import DEFAULT_BASE
from ltgcast.service import Service, ServiceSettings

START = datetime(2024, 6, 15, 20, 0, tzinfo=UTC)


def add_bench_latency_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ltgcast bench latency``."""
    parser.add_argument("--sector", choices=("C", "M1"), default="C")
    parser.add_argument("--frames", type=int, default=4, help="frames measured after the warm-up frame")
    parser.add_argument("--json", default="var/bench/latency.json", help="where to write the JSON report")
    parser.add_argument("--model-base", help=f"model repository (env LTGCAST_MODELS; default {DEFAULT_BASE})")
    parser.add_argument("--settle", type=float, default=0.2, help="the spool's settle time in seconds")
    parser.add_argument("--poll-interval", type=float, default=0.2, help="the ingest daemon's poll interval")
    parser.add_argument("--seed", type=int, default=5)


def _latest(host: str, port: int, sector: str) -> str | None:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/v1/grids/latest?sector={sector}", timeout=10) as reply:
            return str(json.loads(reply.read())["input_abi_file"])
    except urllib.error.HTTPError:
        return None


def deliver(path: Path, spool: Path) -> None:
    """Put ``path`` into ``spool`` as LDM does: written under a hidden temporary name, then renamed."""
    with atomic_path(spool / path.name, durable=False) as temporary:
        shutil.copyfile(path, temporary)


def _measure(service: Service, frame: Path, spool: Path, sector: str, limit_s: float = 300.0) -> float:
    host, port = service.http.address
    service.worker.wait_monitoring(60.0)  # the previous frame's drift pass is done, as at a sector's cadence
    began = time.perf_counter()
    deliver(frame, spool)
    while time.perf_counter() - began < limit_s:
        if _latest(host, port, sector) == frame.name:
            return time.perf_counter() - began
        time.sleep(0.02)
    msg = f"{frame.name} did not reach /v1/grids/latest within {limit_s:.0f} s"
    raise RuntimeError(msg)


def bench_latency(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run the service on a spool, deliver frames one at a time, time each to ``/v1/grids/latest``."""
    if args.frames < 1:
        msg = f"--frames: expected at least 1, found {args.frames}"
        raise ConfigError(msg)
    minutes = (args.frames + 1) * (5 if args.sector == "C" else 1) + 15
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        paths = simulate(ScenarioConfig(out=work / "sim", sector=args.sector, start=START, minutes=minutes,
                                        seed=args.seed))  # fmt: skip
        frames = sorted(p for p in paths if "_ABI-" in p.name)[-(args.frames + 1) :]
        spool = work / "spool"
        spool.mkdir()
        settings = ServiceSettings(
            source=f"dir:{spool}?settle_s={args.settle}",
            store=work / "grids",
            state=work / "state",
            model_base=Path(args.model_base or env.get("LTGCAST_MODELS") or DEFAULT_BASE),
            http=("127.0.0.1", 0),
            watch_s=0.0,
            sectors=(args.sector,),
            poll_interval_s=args.poll_interval,
            max_age_s=0.0,
        )
        service = Service(settings).start()
        try:
            for granule in sorted(p for p in paths if "_GLM-" in p.name):
                deliver(granule, spool)
            warm = _measure(service, frames[0], spool, args.sector)
            seconds = [_measure(service, frame, spool, args.sector) for frame in frames[1:]]
        finally:
            service.stop()
    report: dict[str, Any] = {
        "benchmark": "latency",
        "sector": args.sector,
        "frames": len(seconds),
        "spool_settle_s": args.settle,
        "poll_interval_s": args.poll_interval,
        "warmup_seconds": round(warm, 3),
        "seconds": [round(s, 3) for s in seconds],
        "seconds_median": round(statistics.median(seconds), 3),
        "seconds_max": round(max(seconds), 3),
        "target_seconds": 5.0,
        "cpus": os.cpu_count(),
    }
    sys.stdout.write(f"{args.sector}: spool -> /v1/grids/latest median {report['seconds_median']:.2f} s, "
                     f"max {report['seconds_max']:.2f} s over {len(seconds)} frames (target 5 s)\n")  # fmt: skip
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0
