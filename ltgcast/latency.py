"""``ltgcast bench latency``: from a frame landing in the spool to its grid at ``/v1/grids/latest``.

The whole embedded service runs in this process (``ltgcast run``'s :class:`~ltgcast.service.Service`: spool
source, in-process bus, worker with the default scorer, file store, HTTP API) with **the settings ``ltgcast run``
starts with**: the spool's default settle and notifications, the default poll interval, GLM deadline, age limit
and hot-swap watcher. Only the folders and the HTTP port (a free one) are the benchmark's own. ``--settle`` and
``--poll-interval`` change those two settings; the report then says ``settings: tuned``.

The scenario is simulated to end now, so the service's default age limit (60 min) accepts its frames as it
would live ones. Its GLM granules go into the spool first, as they would have arrived over the previous
minutes; then each measured frame is renamed into the spool (as LDM delivers) and ``/v1/grids/latest`` is
polled over HTTP every 20 ms until it names that frame. The first frame warms the process up and is not
counted. Each frame is delivered once the worker's drift thread has finished the previous one, as it has at
a CONUS cadence of 5 minutes; frames delivered back to back would share the 2 cores with that pass.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from foundation.errors import ConfigError
from foundation.files import atomic_path
from foundation.utc import parse_utc
from ingest.bus import InProcessBus
from ingest.events import FRAMES_TOPIC, FrameEvent
from ingest.synthetic import ScenarioConfig, simulate
from ltgcast.nowcasting import add_model_base_argument
from ltgcast.service import Service, ServiceSettings


def add_bench_latency_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ltgcast bench latency``."""
    parser.add_argument("--sector", choices=("C", "M1"), default="C", help="ABI sector simulated")
    parser.add_argument("--frames", type=int, default=5, help="frames measured after the warm-up frame")
    parser.add_argument("--json", default="var/bench/latency.json", help="where to write the JSON report")
    add_model_base_argument(parser)
    parser.add_argument("--settle", type=float, help="the spool's settle time in seconds (default: the service's)")
    parser.add_argument("--poll-interval", type=float, help="the daemon's poll interval (default: the service's)")
    parser.add_argument("--seed", type=int, default=5, help="seed of the simulated scenario")


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


def _measure(service: Service, frame: Path, spool: Path, sector: str, limit_s: float = 300.0) -> dict[str, float]:
    """Seconds from the rename into the spool to ``/v1/grids/latest`` naming the frame, and where they went.

    ``announced`` is the frame event's ingest time, ``stored`` the grid file's modification time, both on the
    same wall clock as the rename: spool (notice, vet) → worker (read, featurize, score, write) → API.
    """
    host, port = service.http.address
    service.worker.wait_monitoring(60.0)  # the previous frame's drift pass is done, as at a sector's cadence
    hidden = spool / f".{frame.name}.part"
    shutil.copyfile(frame, hidden)  # written before the clock starts: the rename is the delivery
    delivered = time.time()
    began = time.perf_counter()
    os.replace(hidden, spool / frame.name)
    while time.perf_counter() - began < limit_s:
        if _latest(host, port, sector) == frame.name:
            total = time.perf_counter() - began
            grid = service.store.latest(sector)
            stored = grid.path.stat().st_mtime if grid is not None else math.nan
            announced = _announced(service, frame.name)
            return {"total": total, "to_announced": announced - delivered, "announced_to_stored": stored - announced,
                    "stored_to_api": delivered + total - stored}  # fmt: skip
        time.sleep(0.02)
    msg = f"{frame.name} did not reach /v1/grids/latest within {limit_s:.0f} s"
    raise RuntimeError(msg)


def _announced(service: Service, name: str) -> float:
    """When the daemon announced ``name`` (its frame event's ingest time, epoch seconds), or NaN."""
    if not isinstance(service.bus, InProcessBus):
        return math.nan
    for message in reversed(service.bus.messages(FRAMES_TOPIC)):
        event = FrameEvent.from_json(message.value)
        if event.name == name:
            return parse_utc(event.ingest_time).timestamp()
    return math.nan


def bench_latency(args: argparse.Namespace) -> int:
    """Run the service on a spool, deliver frames one at a time, time each to ``/v1/grids/latest``."""
    if args.frames < 1:
        msg = f"--frames: expected at least 1, found {args.frames}"
        raise ConfigError(msg)
    minutes = (args.frames + 1) * (5 if args.sector == "C" else 1) + 15
    now = datetime.now(UTC)
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes + 1)  # ends a minute or two ago
    tuned = args.settle is not None or args.poll_interval is not None
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        paths = simulate(ScenarioConfig(out=work / "sim", sector=args.sector, start=start, minutes=minutes,
                                        seed=args.seed))  # fmt: skip
        frames = sorted(p for p in paths if "_ABI-" in p.name)[-(args.frames + 1) :]
        spool = work / "spool"
        spool.mkdir()
        defaults = ServiceSettings()
        settings = defaults.replaced(
            source=f"dir:{spool}" + ("" if args.settle is None else f"?settle_s={args.settle}"),
            store=work / "grids",
            state=work / "state",
            model_base=Path(args.model_base),
            http=("127.0.0.1", 0),
            poll_interval_s=defaults.daemon.poll_interval_s if args.poll_interval is None else args.poll_interval,
        )
        service = Service(settings).start()
        try:
            for granule in sorted(p for p in paths if "_GLM-" in p.name):
                deliver(granule, spool)
            warm = _measure(service, frames[0], spool, args.sector)["total"]
            parts = [_measure(service, frame, spool, args.sector) for frame in frames[1:]]
            seconds = [p["total"] for p in parts]
            watch = "events" if getattr(service.daemon.source if service.daemon else None, "watching", 0) else "poll"
            model = _served(service)
        finally:
            service.stop()
    report: dict[str, Any] = {
        "benchmark": "latency",
        "sector": args.sector,
        "frames": len(seconds),
        "settings": "tuned" if tuned else "defaults",
        "spool_settle_s": args.settle if args.settle is not None else "default (a renamed-in file: none)",
        "poll_interval_s": settings.daemon.poll_interval_s,
        "spool_watch": watch,
        "scorer": settings.scorer.backend,
        "model": model,
        "warmup_seconds": round(warm, 3),
        "seconds": [round(s, 3) for s in seconds],
        "seconds_median": round(statistics.median(seconds), 3),
        "seconds_max": round(max(seconds), 3),
        "parts_seconds_median": {k: round(statistics.median(p[k] for p in parts), 3) for k in parts[0] if k != "total"},
        "target_seconds": 1.5,
        "cpus": os.cpu_count(),
    }
    parts_text = ", ".join(f"{k} {v:.2f} s" for k, v in report["parts_seconds_median"].items())
    sys.stdout.write(f"{args.sector} ({report['settings']} settings, spool {report['spool_watch']}): spool -> "
                     f"/v1/grids/latest median {report['seconds_median']:.2f} s, max {report['seconds_max']:.2f} s "
                     f"over {len(seconds)} frames (target 1.5 s); medians: {parts_text}\n")  # fmt: skip
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


def _served(service: Service) -> str:
    """``name/version (backend)`` of the model the service scored with."""
    scorer = service.models.current().stable
    return f"{scorer.name}/{scorer.version} ({type(scorer).__name__})"
