"""``ltgcast bench scaleout``: grids per minute for 1, 2, 3… workers of the distributed mode on one backlog.

For each worker count: a fresh Kafka namespace, N ``ltgcast run --source none`` processes (their defaults,
except the bus, folders and ports), started and left to settle into one consumer group (every worker holds
its share of the frame topic's 12 partitions); then a backlog of mixed sectors (GOES-East M1 every minute,
GOES-West CONUS every 5 minutes, with their GLM) is published at once, and the clock runs from that moment to
the last grid in the store. The JSON has, per count, the seconds, grids per minute, and each worker's share.

``--scorer tfserving`` scores on the TF Serving stand-in of the tests (``python -m tests.support.tfs_standin``,
so it needs a source checkout: the wheel does not ship test code) started here with ``--delay-ms`` added to
every request: what scaling looks like when scoring is remote (a GPU server) and the workers mostly wait. On
one small machine, embedded scoring is CPU-bound and the workers share the same cores, so adding workers
cannot add throughput there.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from foundation.addresses import free_port
from foundation.clock import wait_until
from foundation.errors import ConfigError
from ingest.bus import Bus, get_bus
from ingest.events import FrameEvent
from ingest.filenames import parse_filename
from ingest.synthetic import ScenarioConfig, simulate
from ltgcast.flags import add_env_argument
from ltgcast.ingestion import split_list
from ltgcast.nowcasting import add_model_base_argument

PARTITIONS = 12
SETTLE_LIMIT_S = 90.0
RUN_LIMIT_S = 1800.0


def add_bench_scaleout_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``ltgcast bench scaleout``."""
    add_env_argument(parser, "--bus", "LTGCAST_BUS", default="kafka://127.0.0.1:9092", help="kafka://HOST:PORT")
    parser.add_argument("--workers", default="1,2,3", help="worker counts to measure (default %(default)s)")
    parser.add_argument("--scorer", choices=("embedded", "tfserving"), default="embedded",
                        help="embedded (default) or tfserving: a TF Serving stand-in started here")  # fmt: skip
    parser.add_argument("--delay-ms", type=float, default=0.0,
                        help="added by the stand-in to every request (--scorer tfserving; default 0)")  # fmt: skip
    parser.add_argument("--meso", type=int, default=24, help="M1 frames in the backlog (default %(default)s)")
    parser.add_argument("--conus", type=int, default=4, help="CONUS frames in the backlog (default %(default)s)")
    add_model_base_argument(parser)
    parser.add_argument("--json", default="var/bench/scaleout.json", help="where to write the JSON report")


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return int(reply.status), reply.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), ""
    except OSError:
        return 0, ""


def _metric(text: str, name: str, label: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (not label or label in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _backlog(work: Path, meso: int, conus: int) -> list[FrameEvent]:
    """GLM granules, then frames of both satellites (each with its whole 15-minute window), as events."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    east = simulate(ScenarioConfig(out=work / "east", sector="M1", start=now - timedelta(minutes=meso + 17),
                                   minutes=meso + 16, seed=31))  # fmt: skip
    west = simulate(ScenarioConfig(out=work / "west", sector="C", start=now - timedelta(minutes=5 * conus + 17),
                                   minutes=5 * conus + 16, seed=32, satellite="G18", slot="GOES-West"))  # fmt: skip
    frames = (
        sorted(p for p in east if "_ABI-" in p.name)[-meso:] + sorted(p for p in west if "_ABI-" in p.name)[-conus:]
    )
    granules = sorted(p for p in east + west if "_GLM-" in p.name)
    now_utc = datetime.now(UTC)
    return [FrameEvent.of(parse_filename(p), uri=p.resolve().as_uri(), source_uri=str(p), size=p.stat().st_size,
                          ingest_time=now_utc) for p in granules + frames]  # fmt: skip


def _with_namespace(bus: str, namespace: str) -> str:
    return f"{bus}{'&' if '?' in bus else '?'}namespace={namespace}"


class _Run:
    """N worker processes on one namespace."""

    def __init__(self, work: Path, bus: str, count: int, model_base: Path, scorer_args: list[str]) -> None:
        self.work = work
        self.store = work / "grids"
        self.ports = [free_port() for _ in range(count)]
        self.logs: list[TextIO] = []
        self.processes = []
        for i, port in enumerate(self.ports):
            log = (work / f"worker{i}.log").open("w")
            self.logs.append(log)
            args = ["run", "--source", "none", "--bus", bus, "--store", str(self.store), "--http", f"127.0.0.1:{port}",
                    "--state", str(work / f"state{i}"), "--sectors", "C,M1", "--model-base", str(model_base),
                    *scorer_args]  # fmt: skip
            self.processes.append(subprocess.Popen([sys.executable, "-m", "ltgcast", *args], stdout=log,
                                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))  # fmt: skip

    def settled(self) -> bool:
        """Every worker ready and holding a share, the 12 partitions held between them: the group is stable."""
        held = []
        for port in self.ports:
            status, text = _get(port, "/readyz")
            if status != 200:
                return False
            held.append(_metric(_get(port, "/metrics")[1], "ltgcast_worker_assigned_partitions"))
        return min(held) > 0 and sum(held) == PARTITIONS

    def grids(self) -> int:
        return sum(1 for p in self.store.glob("*/*/*.nc") if not p.name.startswith("."))

    def shares(self) -> list[float]:
        return [_metric(_get(port, "/metrics")[1], "ltgcast_frames_total", 'reason="scored') for port in self.ports]

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in self.logs:
            log.close()


def _publish(bus: Bus, events: list[FrameEvent]) -> None:
    for event in events:
        bus.publish(event.topic, event.key, event.to_json(), slot=event.slot)


def _measure(work: Path, bus_uri: str, count: int, events: list[FrameEvent], model_base: Path,
             scorer_args: list[str]) -> dict[str, Any]:  # fmt: skip
    namespaced = _with_namespace(bus_uri, f"bench-scaleout-{uuid.uuid4().hex[:8]}")
    run = _Run(work, namespaced, count, model_base, scorer_args)
    frames = sum(1 for e in events if not e.is_glm)
    try:
        wait_until(
            run.settled, f"{count} worker(s) ready and holding the 12 partitions (logs in {work})", SETTLE_LIMIT_S
        )
        time.sleep(3.0)  # and still stable a moment later (a late joiner would have started a rebalance)
        wait_until(run.settled, f"{count} worker(s) still holding the 12 partitions", SETTLE_LIMIT_S)
        bus = get_bus(namespaced)
        began = time.monotonic()
        try:
            _publish(bus, events)
        finally:
            bus.close()
        wait_until(lambda: run.grids() >= frames, f"{frames} grids (logs in {work})", RUN_LIMIT_S)
        seconds = time.monotonic() - began
        shares = run.shares()
    finally:
        run.stop()
    total = sum(shares) or 1.0
    return {"workers": count, "frames": frames, "seconds": round(seconds, 2),
            "grids_per_minute": round(frames / seconds * 60.0, 2),
            "share_per_worker": [round(s / total, 3) for s in shares]}  # fmt: skip


def _standin(model_base: Path, delay_ms: float, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    checkout = Path(__file__).resolve().parents[1]
    if not (checkout / "tests" / "support" / "tfs_standin.py").is_file():
        msg = (
            f"--scorer tfserving runs the tests' TF Serving stand-in: needs a source checkout, not found at {checkout}"
        )
        raise ConfigError(msg)
    grpc_port, rest_port = free_port(), free_port()
    log = (work / "standin.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.tfs_standin", "--base", str(model_base), "--grpc-port", str(grpc_port),
         "--rest-port", str(rest_port), "--delay-ms", str(delay_ms), "--threads", "16"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=checkout,
    )  # fmt: skip
    wait_until(
        lambda: _get(rest_port, "/v1/models/lightning")[0] == 200, "the TF Serving stand-in", SETTLE_LIMIT_S, 0.25
    )
    return process, grpc_port


def bench_scaleout(args: argparse.Namespace) -> int:
    """Measure each worker count; print a table and write JSON."""
    counts = [int(n) for n in split_list(args.workers, "--workers")]
    if any(n < 1 or n > PARTITIONS for n in counts) or args.meso < 1 or args.conus < 0 or args.delay_ms < 0:
        msg = f"--workers must be 1..{PARTITIONS}, --meso >= 1, --conus >= 0, --delay-ms >= 0"
        raise ConfigError(msg)
    bus_uri = args.bus
    if not bus_uri.startswith("kafka://"):
        msg = f"--bus: the distributed mode needs Kafka (kafka://HOST:PORT); found {bus_uri!r}"
        raise ConfigError(msg)
    base = Path(args.model_base).resolve()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ltgcast-scaleout-") as folder:
        work = Path(folder)
        events = _backlog(work / "backlog", args.meso, args.conus)
        standin = None
        scorer_args: list[str] = []
        if args.scorer == "tfserving":
            standin, port = _standin(base, args.delay_ms, work)
            scorer_args = ["--scorer", "tfserving", "--tfserving", f"127.0.0.1:{port}", "--watch", "0"]
        try:
            for count in counts:
                (work / f"run{count}").mkdir()
                row = _measure(work / f"run{count}", bus_uri, count, events, base, scorer_args)
                rows.append(row)
                label = args.scorer + (f" (+{args.delay_ms:g} ms a request)" if args.delay_ms else "")
                rate, shares = row["grids_per_minute"], row["share_per_worker"]
                sys.stdout.write(f"{label}: {count} worker(s): {row['frames']} grids in {row['seconds']:.1f} s = "
                                 f"{rate:.1f} grids/min, shares {shares}\n")  # fmt: skip
                sys.stdout.flush()
        finally:
            if standin is not None:
                standin.send_signal(signal.SIGTERM)
                standin.wait(timeout=60)
    report = {"benchmark": "scaleout", "scorer": args.scorer, "delay_ms": args.delay_ms, "cpus": os.cpu_count(),
              "backlog": {"meso": args.meso, "conus": args.conus}, "runs": rows}  # fmt: skip
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0
