"""The chaos harness: the distributed mode as real processes, fed through a spool, with faults and an account.

A :class:`Cluster` is one namespace on the real Kafka broker (its own topics), one Redis database, one spool,
one grid store shared by the workers (as ``deploy/compose`` and ``deploy/k8s`` share a volume), the ingest
daemon (``ltgcast ingest``) and N workers (``ltgcast run --source none``), each a process of its own started
with the commands' defaults except addresses, folders and the bus. :meth:`Cluster.account` then counts, from
what reached the store, Redis and the bus:

* frames fed, grids expected (one per band-13 frame fed), grids stored, grids lost;
* conflicting duplicates: a grid id announced with two different contents (other granules, another frame), or
  a stored grid whose values differ from the reference grid of its frame by more than one percentage point;
* grids made without the GLM they should have had: granules used fewer than the fed granules overlapping the
  frame's 15-minute window;
* dead letters, grids in Redis, and whether every process is up and ready on its own.

The reference grids are computed here, in the test process, with the same model and every fed granule.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import redis

from foundation.addresses import free_port
from foundation.clock import wait_until
from foundation.errors import EventError
from foundation.files import atomic_path
from ingest.bus import get_bus
from ingest.events import DEADLETTER_TOPIC, GRIDS_TOPIC, DeadLetterEvent, GridEvent
from ingest.filenames import parse_filename
from serve.stores.gridfile import pack_percent, read_grid

ROOT = Path(__file__).resolve().parents[2]
SERVICES = Path(os.environ.get("LTGCAST_SERVICES_DIR", ROOT / "var" / "services"))
WINDOW = timedelta(minutes=15)


@dataclass(frozen=True)
class Feed:
    """What a scenario feeds: GLM granules and ABI frames, in time order, and the reference grid of each frame."""

    granules: tuple[Path, ...]
    frames: tuple[Path, ...]
    reference: dict[str, np.ndarray]  # frame name -> percent (uint8, 255 = missing), as the store packs it

    def steps(self) -> list[list[Path]]:
        """The files by minute of scan, as a feed would deliver them (a frame after its minute's granules).

        The GLM before the first frame (the first frame's window) comes in one step.
        """
        by_minute: dict[datetime, list[Path]] = defaultdict(list)
        first = min(parse_filename(f).scan_start for f in self.frames).replace(second=0, microsecond=0)
        for path in (*self.granules, *self.frames):
            start = parse_filename(path).scan_start
            by_minute[max(start.replace(second=0, microsecond=0), first)].append(path)
        return [sorted(files, key=lambda p: ("_ABI-" in p.name, p.name)) for _, files in sorted(by_minute.items())]

    def window_granules(self, frame: str) -> set[str]:
        """The fed granules of the frame's satellite overlapping its 15-minute window."""
        name = parse_filename(Path(frame))
        lo, hi = name.scan_start - WINDOW, name.scan_start
        chosen = set()
        for path in self.granules:
            granule = parse_filename(path)
            if granule.satellite == name.satellite and granule.scan_end > lo and granule.scan_start < hi:
                chosen.add(path.name)
        return chosen


@dataclass
class Process:
    """One ``ltgcast`` process of the cluster."""

    name: str
    args: list[str]
    log: Path
    http: int | None = None
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class Account:
    """What a scenario did (one row of the chaos table)."""

    scenario: str
    frames_fed: int = 0
    grids_expected: int = 0
    grids_stored: int = 0
    grids_lost: int = 0
    conflicting: int = 0
    without_glm: int = 0
    dead_letters: int = 0
    redis_grids: int = 0
    recovered: bool = False
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


class Cluster:
    """The ingest daemon and N workers of one scenario, as processes, on the real Kafka and Redis."""

    def __init__(self, root: Path, kafka: str, redis_address: str, redis_db: int, *, name: str) -> None:
        self.root = root
        self.name = name
        self.namespace = f"chaos-{name}-{uuid.uuid4().hex[:8]}"
        self.bus_uri = f"kafka://{kafka}?namespace={self.namespace}"
        self.redis_address = redis_address
        self.redis_db = redis_db
        self.spool = root / "spool"
        self.store = root / "grids"
        self.spool.mkdir(parents=True)
        self.processes: dict[str, Process] = {}
        self.began = time.monotonic()
        client = self.redis()
        client.flushdb()
        client.close()

    # -- processes --------------------------------------------------------------------------------------------------
    def redis(self) -> redis.Redis:
        host, port = self.redis_address.rsplit(":", 1)
        return redis.Redis(host=host, port=int(port), db=self.redis_db, socket_timeout=5)

    def _spawn(self, process: Process) -> None:
        process.starts += 1
        with process.log.open("ab") as out:
            out.write(f"\n==== start {process.starts} at {time.strftime('%H:%M:%S')} ====\n".encode())
            process.popen = subprocess.Popen(
                [sys.executable, "-m", "ltgcast", *process.args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip

    def ingest(self) -> Process:
        """Start (or restart) ``ltgcast ingest`` on the spool, with its default poll interval and settle time."""
        process = self.processes.get("ingest") or Process(
            "ingest",
            ["ingest", "--source", f"dir:{self.spool}", "--bus", self.bus_uri, "--state", str(self.root / "ingest"),
             "--sectors", "C,M1"],
            self.root / "ingest.log",
        )  # fmt: skip
        self.processes["ingest"] = process
        self._spawn(process)
        return process

    def worker(self, name: str) -> Process:
        """Start (or restart) a worker: ``ltgcast run --source none`` on the bus, the shared store and Redis."""
        process = self.processes.get(name)
        if process is None:
            port = free_port()
            process = Process(
                name,
                ["run", "--source", "none", "--bus", self.bus_uri, "--store", str(self.store),
                 "--redis", f"redis://{self.redis_address}/{self.redis_db}", "--http", f"127.0.0.1:{port}",
                 "--state", str(self.root / name), "--sectors", "C,M1"],
                self.root / f"{name}.log",
                http=port,
            )  # fmt: skip
            self.processes[name] = process
        self._spawn(process)
        return process

    def ready(self, process: Process, limit_s: float = 120.0) -> None:
        """Wait until the worker's ``/readyz`` answers 200 (its loop comes round)."""
        wait_until(lambda: self.http(process, "/readyz")[0] == 200, f"{process.name} ready", limit_s)

    def http(self, process: Process, target: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{process.http}{target}", timeout=5) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def metric(self, process: Process, name: str, labels: dict[str, str] | None = None) -> float:
        """The sum of a metric's samples on a worker's ``/metrics`` (with these labels), 0 when absent."""
        _, body = self.http(process, "/metrics")
        total = 0.0
        for line in body.decode(errors="replace").splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            if head.split("{")[0] != name:
                continue
            if labels and not all(f'{k}="{v}"' in head for k, v in labels.items()):
                continue
            total += float(value)
        return total

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (default ``kill -9``) and wait for the process to end."""
        process = self.processes[name]
        assert process.popen is not None
        process.popen.send_signal(sig)
        process.popen.wait(timeout=90)

    def stop(self) -> None:
        """Stop every process gracefully (SIGTERM), then hard after 60 s."""
        for process in self.processes.values():
            if process.alive() and process.popen is not None:
                process.popen.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            if process.popen is not None:
                try:
                    process.popen.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.popen.kill()
                    process.popen.wait(timeout=10)

    # -- feeding ----------------------------------------------------------------------------------------------------
    def deliver(self, files: Iterable[Path]) -> None:
        """Rename each file into the spool (written under a hidden name first, as LDM's pqact does)."""
        for path in files:
            with atomic_path(self.spool / path.name, durable=False) as temporary:
                shutil.copyfile(path, temporary)

    def feed(self, steps: list[list[Path]], pace_s: float, on_step: Callable[[int], None] | None = None) -> None:
        """Deliver one minute of files every ``pace_s`` seconds, calling ``on_step(i)`` before step ``i``."""
        for i, files in enumerate(steps):
            if on_step is not None:
                on_step(i)
            self.deliver(files)
            time.sleep(pace_s)

    def feed_in_background(self, steps: list[list[Path]], pace_s: float) -> threading.Thread:
        thread = threading.Thread(target=self.feed, args=(steps, pace_s), daemon=True)
        thread.start()
        return thread

    # -- what happened ----------------------------------------------------------------------------------------------
    def stored(self) -> dict[str, Path]:
        """Stored grids by frame name (the ``input_abi_file`` is in the id's frame; read from the file)."""
        found = {}
        for path in self.store.glob("*/*/*.nc"):
            if path.name.startswith("."):
                continue
            _, attrs = read_grid(path)
            found[str(attrs["input_abi_file"])] = path
        return found

    def grids_stored(self) -> int:
        return sum(1 for p in self.store.glob("*/*/*.nc") if not p.name.startswith("."))

    def events(self, topic: str) -> list[bytes]:
        bus = get_bus(self.bus_uri)
        reader = bus.broadcast(topic, lookback_s=None)
        values: list[bytes] = []
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline:
                got = reader.poll(0.5)
                values += [m.value for m in got]
                if not got and reader.caught_up():
                    break
        finally:
            reader.close()
            bus.close()
        return values

    def dead_letters(self) -> int:
        """How many dead letters (that decode) the workers wrote so far."""
        return len(self.decoded(DEADLETTER_TOPIC, DeadLetterEvent, Account("count")))

    def decoded(self, topic: str, record: type[Any], result: Account) -> list[Any]:
        """The records on a topic; what does not decode (injected by a scenario) is counted in the notes."""
        out = []
        for value in self.events(topic):
            try:
                out.append(record.from_json(value))
            except EventError:
                key = f"undecodable_on_{topic}"
                result.notes[key] = result.notes.get(key, 0) + 1
        return out

    def account(self, scenario: str, feed: Feed, *, workers: Iterable[str]) -> Account:
        """Count what the scenario left in the store, Redis and on the bus; check every worker is ready."""
        result = Account(scenario, frames_fed=len(feed.frames), grids_expected=len(feed.frames))
        stored = self.stored()
        result.grids_stored = sum(1 for f in feed.frames if f.name in stored)
        result.grids_lost = result.grids_expected - result.grids_stored
        grids = self.decoded(GRIDS_TOPIC, GridEvent, result)
        contents: dict[str, set[tuple[str, int, int]]] = defaultdict(set)
        for event in grids:
            contents[event.grid_id].add((event.frame, event.glm_used, event.glm_missing))
        conflicting = {grid_id for grid_id, seen in contents.items() if len(seen) > 1}
        result.notes["grid_events"] = len(grids)
        result.notes["differing_from_reference"] = self.check_contents(stored, feed, result, conflicting)
        result.conflicting = len(conflicting)
        letters = self.decoded(DEADLETTER_TOPIC, DeadLetterEvent, result)
        result.dead_letters = len(letters)
        result.notes["dead_letter_stages"] = sorted({f"{d.stage}:{d.reason[:60]}" for d in letters})[:12]
        client = self.redis()
        try:
            result.redis_grids = sum(1 for _ in client.scan_iter(match="ltgcast:grid:*"))
        finally:
            client.close()
        chosen = [self.processes[name] for name in workers]
        result.recovered = all(p.alive() for p in chosen) and all(self.http(p, "/readyz")[0] == 200 for p in chosen)
        result.recovered = result.recovered and self.processes["ingest"].alive()
        result.seconds = round(time.monotonic() - self.began, 1)
        return result

    @staticmethod
    def check_contents(stored: dict[str, Path], feed: Feed, result: Account, conflicting: set[str]) -> list[str]:
        """Count grids made without their window's granules; add grids that differ from the reference."""
        differing = []
        for name, path in stored.items():
            values, attrs = read_grid(path)
            used = set(str(attrs.get("input_glm_files", "")).split())
            if not feed.window_granules(name) <= used:
                result.without_glm += 1
            reference = feed.reference.get(name)
            if reference is None:
                continue
            delta = np.abs(pack_percent(values).astype(np.int16) - reference.astype(np.int16))
            if int(delta.max()) > 1:
                differing.append(name)
                conflicting.add(str(attrs["grid_id"]))
        return differing

    def logs(self) -> str:
        """The tail of every process log (for a failing assertion's message)."""
        parts = []
        for process in self.processes.values():
            text = process.log.read_text(errors="replace") if process.log.exists() else ""
            parts.append(f"--- {process.name} ---\n" + "\n".join(text.splitlines()[-25:]))
        return "\n".join(parts)


def reference_grids(frames: Iterable[Path], granules: Iterable[Path], model: Path) -> dict[str, np.ndarray]:
    """Each frame scored here with every granule of its window, packed as the store packs it."""
    from featurize.examples import Flashes
    from ingest.abi import AbiImage
    from ingest.glm import GlmGranule
    from ingest.readers import read_product
    from serve.scoring import EmbeddedScorer
    from serve.worker.nowcast import nowcast_frame, previous_problem

    scorer = EmbeddedScorer(model)
    flashes = {p.name: g.flashes for p in granules if isinstance(g := read_product(p), GlmGranule)}
    spans = {name: parse_filename(Path(name)) for name in flashes}
    images = [read_product(frame) for frame in frames]
    out = {}
    for frame, image in zip(frames, images, strict=True):
        assert isinstance(image, AbiImage)
        lo, hi = image.scan_start - WINDOW, image.scan_start
        chosen = sorted((n for n, s in spans.items() if s.satellite == image.name.satellite
                         and s.scan_end > lo and s.scan_start < hi), key=lambda n: spans[n].scan_start)  # fmt: skip
        previous = None
        if scorer.feature_set.temporal:  # the worker's policy: a fed predecessor 15 min before, else no change
            window = scorer.feature_set.window_minutes
            found = [b for b in images if isinstance(b, AbiImage) and previous_problem(image, b, window) is None]
            offsets = [abs((image.scan_start - b.scan_start).total_seconds() - 60 * window) for b in found]
            previous = found[int(np.argmin(offsets))].values if found else image.values  # the worker takes the nearest
        result = nowcast_frame(image, Flashes.concat([flashes[n] for n in chosen]), scorer, previous)
        out[frame.name] = pack_percent(result.probability)
    return out


def services_script(*args: str) -> subprocess.CompletedProcess[str]:
    """``deploy/local/services.sh`` (the project's own script), as CI runs it."""
    return subprocess.run(["bash", str(ROOT / "deploy" / "local" / "services.sh"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip


def service_pid(name: str) -> int:
    """The pid ``services.sh`` recorded for a service it started (the chaos suite kills only those)."""
    pidfile = SERVICES / name / "pid"
    assert pidfile.is_file(), f"{name} was not started by deploy/local/services.sh (no {pidfile}); run make services-up"
    return int(pidfile.read_text().strip())


def dump(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1, default=str) + "\n", encoding="utf-8")
