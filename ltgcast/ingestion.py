"""``ltgcast ingest`` and ``ltgcast events``: settings at the edge, then the daemon.

Settings come from flags, then ``LTGCAST_*`` environment variables (the flags' defaults, read once), then the
embedded defaults; everything is checked here, before anything starts, and a bad
value stops the command with exit status 2 naming the flag.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import FrameType

from prometheus_client import start_http_server

from foundation.addresses import parse_address
from foundation.clock import FUTURE_TOLERANCE_S, SystemClock
from foundation.errors import ConfigError, EventError
from ingest.bus import Bus, InProcessBus, get_bus
from ingest.checkpoint import Checkpoint
from ingest.daemon import DaemonSettings, IngestDaemon, RunSummary
from ingest.events import DEADLETTER_TOPIC, FRAMES_TOPIC, GLM_TOPIC, GRIDS_TOPIC, describe
from ingest.quarantine import Quarantine
from ingest.sources import ABI_SECTORS, FrameFilter, SourceContext, get_source
from ltgcast.flags import add_env_argument

log = logging.getLogger(__name__)

TOPIC_NAMES = {"frames": FRAMES_TOPIC, "glm": GLM_TOPIC, "grids": GRIDS_TOPIC, "deadletter": DEADLETTER_TOPIC}


def split_list(text: str, flag: str) -> tuple[str, ...]:
    """The items of a comma-separated flag value; ``ConfigError`` naming ``flag`` when there are none."""
    items = tuple(s.strip() for s in text.split(",") if s.strip())
    if not items:
        msg = f"{flag}: expected a comma-separated list, found {text!r}"
        raise ConfigError(msg)
    return items


@dataclass(frozen=True)
class IngestSettings:
    """Everything ``ltgcast ingest`` needs, checked."""

    source: str
    bus: str
    state: Path
    quarantine: Path
    cache: Path
    frame_filter: FrameFilter
    once: bool
    poll_interval_s: float
    retention: timedelta
    metrics: tuple[str, int] | None
    validate: bool
    future_tolerance_s: float = FUTURE_TOLERANCE_S

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> IngestSettings:
        """The settings of parsed ``ltgcast ingest`` flags (their defaults already hold the ``LTGCAST_*`` variables)."""
        state = Path(args.state)
        try:
            bands = tuple(int(b) for b in split_list(args.bands, "--bands"))
        except ValueError as exc:
            msg = f"--bands: expected ABI band numbers like 13 or 8,13, found {args.bands!r}"
            raise ConfigError(msg) from exc
        if args.poll_interval <= 0 or args.retention_hours <= 0:
            msg = "--poll-interval and --retention-hours must be positive"
            raise ConfigError(msg)
        if args.future_tolerance_s < 0:
            msg = f"--future-tolerance-s: expected a number >= 0, found {args.future_tolerance_s}"
            raise ConfigError(msg)
        return cls(
            source=args.source,
            bus=args.bus,
            state=state,
            quarantine=Path(args.quarantine) if args.quarantine else state / "quarantine",
            cache=Path(args.cache) if args.cache else state / "cache",
            frame_filter=FrameFilter(
                satellites=split_list(args.satellite, "--satellite") if args.satellite else (),
                sectors=split_list(args.sectors, "--sectors"),
                bands=bands,
                abi_families=split_list(args.products, "--products"),
                glm=not args.no_glm,
            ),
            once=args.once,
            poll_interval_s=args.poll_interval,
            retention=timedelta(hours=args.retention_hours),
            metrics=parse_address(args.metrics, "--metrics", listen=True) if args.metrics else None,
            validate=not args.no_validate,
            future_tolerance_s=args.future_tolerance_s,
        )


def add_ingest_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``ltgcast ingest``."""
    add_env_argument(parser, "--source", "LTGCAST_SOURCE", default="s3://noaa-goes19",
                     help="dir:PATH, s3://noaa-goes19, sqs://QUEUE?bucket=noaa-goes19 (notifications of NOAA's "
                     "NewGOES19Object topic) or sim:[?options]")  # fmt: skip
    add_env_argument(parser, "--bus", "LTGCAST_BUS", default="inproc://", help="inproc:// or kafka://HOST:PORT")
    add_env_argument(parser, "--state", "LTGCAST_STATE", default="var/state/ingest", help="checkpoint folder")
    parser.add_argument("--quarantine", help="where refused files go (default STATE/quarantine)")
    parser.add_argument("--cache", help="where downloads go (default STATE/cache)")
    parser.add_argument("--once", action="store_true", help="process what is there now, then exit")
    parser.add_argument("--sectors", default=",".join(ABI_SECTORS), help="ABI sectors to announce (C,F,M1,M2)")
    parser.add_argument("--bands", default="13", help="ABI bands to announce (default 13)")
    parser.add_argument("--products", default="ABI-L1b-Rad", help="ABI product families (ABI-L1b-Rad,ABI-L2-CMIP)")
    parser.add_argument("--satellite", help="platforms to accept, e.g. G19 (default: any)")
    parser.add_argument("--no-glm", action="store_true", help="do not announce GLM LCFA granules")
    parser.add_argument("--poll-interval", type=float, default=5.0, help="seconds between polls")
    parser.add_argument("--retention-hours", type=float, default=6.0, help="checkpoint memory behind the newest frame")
    parser.add_argument("--metrics", help="serve Prometheus /metrics on HOST:PORT")
    parser.add_argument("--no-validate", action="store_true", help="announce without decoding each file first")
    parser.add_argument("--future-tolerance-s", type=float, default=FUTURE_TOLERANCE_S,
                        help="refuse files whose scan starts more than this many seconds after the clock "
                        "(quarantine stage future; default %(default)g)")  # fmt: skip


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT set ``stop`` (the current poll or frame finishes first)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current poll, then stopping", signum)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_ingest(settings: IngestSettings) -> RunSummary:
    """Build the source, bus and checkpoint from ``settings`` and run the daemon."""
    stop = threading.Event()
    clock = SystemClock(interrupt=stop)
    context = SourceContext(cache=settings.cache, clock=clock, frame_filter=settings.frame_filter)
    source = get_source(settings.source, context)
    bus = get_bus(settings.bus)
    if settings.metrics:
        try:
            start_http_server(settings.metrics[1], addr=settings.metrics[0])
        except OSError as exc:
            msg = f"--metrics: cannot listen on {settings.metrics[0]}:{settings.metrics[1]}: {exc}"
            raise ConfigError(msg) from exc
        log.info("metrics on http://%s:%d/metrics", *settings.metrics)
    checkpoint = Checkpoint.open(settings.state, retention=settings.retention)
    try:
        daemon = IngestDaemon(
            source,
            bus,
            checkpoint,
            Quarantine(settings.quarantine),
            clock,
            frame_filter=settings.frame_filter,
            settings=DaemonSettings(
                poll_interval_s=settings.poll_interval_s,
                validate=settings.validate,
                future_tolerance_s=settings.future_tolerance_s,
            ),
        )
        log.info("ingest: %s -> %s (state %s)", settings.source, settings.bus, settings.state)
        with stop_on_signals(stop):
            return daemon.run(once=settings.once, stop=stop)
    finally:
        checkpoint.close()
        bus.close()


def ingest_command(args: argparse.Namespace) -> int:
    """``ltgcast ingest``: exit 0 when all went well, 1 when files were refused or polls kept failing."""
    settings = IngestSettings.from_args(args)
    summary = run_ingest(settings)
    report = summary.to_dict()
    sys.stdout.write(json.dumps(report) + "\n")
    refused = sum(report["outcomes"].get(k, 0) for k in ("quarantined", "deadletter"))
    return 1 if refused or summary.gave_up else 0


def _describe(topic: str, value: bytes) -> str:
    """Validate the event (:func:`ingest.events.describe`) and return it as one JSON line."""
    describe(topic, value)
    return value.decode()


def events_command(args: argparse.Namespace) -> int:
    """``ltgcast events``: print events from a topic as JSON lines, committing each after printing."""
    bus: Bus = get_bus(args.bus or "")
    if isinstance(bus, InProcessBus):
        msg = "ltgcast events needs a shared bus (kafka://HOST:PORT); inproc:// lives inside one process"
        raise ConfigError(msg)
    subscription = bus.subscribe([TOPIC_NAMES[args.topic]], group=args.group)
    printed, bad = 0, 0
    try:
        while args.max is None or printed < args.max:
            messages = subscription.poll(timeout_s=args.timeout)
            if not messages:
                break
            for message in messages[: None if args.max is None else args.max - printed]:
                try:
                    sys.stdout.write(_describe(message.topic, message.value) + "\n")
                    printed += 1
                except (EventError, UnicodeDecodeError) as exc:
                    bad += 1
                    sys.stderr.write(f"ltgcast events: {message.topic}@{message.offset}: {exc}\n")
                sys.stdout.flush()
                subscription.commit(message)
    finally:
        subscription.close()
        bus.close()
    return 1 if bad else 0


def add_events_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``ltgcast events``."""
    add_env_argument(parser, "--bus", "LTGCAST_BUS", help="kafka://HOST:PORT")
    parser.add_argument("--topic", choices=sorted(TOPIC_NAMES), default="frames", help="bus topic to print")
    parser.add_argument("--group", default="ltgcast-events", help="consumer group (offsets are committed)")
    parser.add_argument("--max", type=int, help="stop after this many events")
    parser.add_argument("--timeout", type=float, default=5.0, help="stop after this many seconds without an event")
