"""``ltgcast run``: the whole embedded service in one process.

Four threads share one bus: the ingest daemon (source → ``FrameEvent``s), the
nowcast worker (frames → grids in the file store, plus Redis when configured),
the model slot's watcher (hot-swap), and the HTTP API with the viewer and
``/metrics``. The main thread waits for SIGINT/SIGTERM and then stops them in
order: ingest first (no new frames), the worker after its current frame, the
HTTP server last. The worker object is only ever touched by the worker thread:
on the in-process bus that thread itself takes what the ingest daemon
announced last and scores it before leaving, and it closes the worker (leaving
the Kafka group at once, so the other workers take its partitions without
waiting for a session time-out).

With ``--source none`` the service is a worker (and API) of the distributed
mode: there is no ingest thread, and ``/readyz`` asks only that the worker loop
comes round.

Beside them, unless ``--sites none``, the site-alert runner (:mod:`serve.alerts.states`)
derives each site's ALERT/CLEAR/UNKNOWN state from the stored grids, serves it at
``/v1/alerts`` and hands transitions to the webhook thread (``--alert-webhook``);
neither ever waits on the worker.

Settings come from flags, then ``LTGCAST_*`` environment variables (read once,
as the flags' defaults: ``--help`` shows each as ``[env: …]``), then the
embedded defaults; :class:`ServiceSettings` holds each stage's settings and
checks them, and what spans them, before anything starts.
"""

from __future__ import annotations

import argparse
import logging
import math
import socket
import sys
import threading
import time
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from foundation.addresses import format_address, parse_address
from foundation.clock import SystemClock
from foundation.errors import ConfigError
from foundation.settings import check_numbers
from ingest.bus import Bus, InProcessBus, get_bus
from ingest.checkpoint import Checkpoint
from ingest.daemon import DaemonSettings, IngestDaemon
from ingest.handoff import DecodedFiles
from ingest.quarantine import Quarantine
from ingest.readers import read_product
from ingest.sources import ABI_SECTORS, FrameFilter, SourceContext, get_source
from ltgcast.flags import add_env_argument, env_of
from ltgcast.ingestion import split_list, stop_on_signals
from ltgcast.nowcasting import DEFAULT_BASE, add_model_base_argument, add_tfserving_arguments, tfserving_settings
from serve.api.settings import ApiSettings, WebSettings
from serve.scoring.hotswap import HotSwapSettings
from serve.scoring.settings import ScorerSettings
from serve.worker.settings import WorkerSettings

if TYPE_CHECKING:
    from serve.alerts.states import AlertRunner
    from serve.alerts.webhook import WebhookSender

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 600.0
WORKER_STALL_S = 60.0  # /readyz fails when the worker loop has not come round for this long
STOP_TIMEOUT_S = 60.0  # how long stop() waits for the worker thread (deploy/k8s gives a pod 120 s to stop)
RUN_SECTORS = ("C", "M1", "M2")  # CONUS and both mesoscale sectors; the full disk only when asked
NO_SOURCE = "none"  # --source none: a worker (and API) of the distributed mode; frames come from Kafka


@dataclass(frozen=True)
class ServiceSettings:
    """Everything ``ltgcast run`` needs: the service's own choices and each stage's settings, checked on construction.

    The stages' settings are the ones the stages take (:class:`DaemonSettings`, :class:`WorkerSettings`,
    :class:`ScorerSettings`, :class:`HotSwapSettings`, :class:`WebSettings`), each validated in its own
    ``__post_init__``; this class checks what spans them. Facts two stages share (the sectors, the future tolerance)
    are held by the worker's settings and must agree with the daemon's. The defaults are ``ltgcast run``'s.
    """

    source: str = "s3://noaa-goes19"
    bus: str = "inproc://"
    store: Path = Path("var/grids")
    state: Path = Path("var/state/run")
    model_base: Path = Path(DEFAULT_BASE)
    model_name: str = "lightning"
    http: tuple[str, int] = ("127.0.0.1", 8080)
    redis: str = ""  # also store grids in Redis (redis://HOST:PORT/DB); "" none
    watch: bool = True  # the model slot's watcher thread (hot-swap); hotswap.interval_s is its period
    keep_days: float = 7.0  # 0: never prune (replays of old archives)
    exit_when_idle: bool = False
    sites: str = ""  # the sites file of the site alerts: "" the packaged airports, "none" off (serve.alerts.sites)
    alert_webhook: str = ""  # http(s) URL each site-alert transition is POSTed to ("" none)
    scorer: ScorerSettings = field(default_factory=ScorerSettings)
    hotswap: HotSwapSettings = field(default_factory=HotSwapSettings)
    daemon: DaemonSettings = field(default_factory=lambda: DaemonSettings(poll_interval_s=2.0))
    worker: WorkerSettings = field(default_factory=lambda: WorkerSettings(sectors=frozenset(RUN_SECTORS),
                                                                          poll_timeout_s=0.25))  # fmt: skip
    web: WebSettings = field(default_factory=WebSettings)
    api: ApiSettings = field(default_factory=ApiSettings)  # its admin_token comes from LTGCAST_ADMIN_TOKEN only

    def __post_init__(self) -> None:
        check_numbers(self, non_negative=("keep_days",))
        if self.source == NO_SOURCE and not self.bus.startswith("kafka://"):
            msg = "--source none (a worker without ingest) needs a shared bus: --bus kafka://HOST:PORT"
            raise ConfigError(msg)
        if self.scorer.backend == "tfserving" and (self.hotswap.shadow or self.watch):
            msg = ("--scorer tfserving: TF Serving loads versions from models.config, so the service cannot gate, "
                   "warm up and swap them itself; run with --watch 0 and without --shadow, and move versions with "
                   "`ltgcast models promote` (models.config) and TF Serving's version labels")  # fmt: skip
            raise ConfigError(msg)
        if self.daemon.future_tolerance_s != self.worker.future_tolerance_s:
            msg = (f"ServiceSettings: the daemon and the worker must refuse the same future scans; found "
                   f"future_tolerance_s {self.daemon.future_tolerance_s} and "
                   f"{self.worker.future_tolerance_s}")  # fmt: skip
            raise ConfigError(msg)

    @property
    def sectors(self) -> tuple[str, ...]:
        """The ABI sectors nowcast (ingest announces only these), in the order ``ABI_SECTORS`` lists them."""
        return tuple(sector for sector in ABI_SECTORS if sector in self.worker.sectors)

    @property
    def future_tolerance_s(self) -> float:
        """Scans starting further ahead of the clock are refused (ingest, worker) and hidden (store)."""
        return self.worker.future_tolerance_s

    @property
    def max_age_s(self) -> float:
        """Frames older than this on arrival are let go; 0: no limit (replays)."""
        return self.worker.max_age_s

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServiceSettings:
        """The settings of parsed ``ltgcast run`` flags (their defaults already hold the ``LTGCAST_*`` variables)."""
        d = cls()
        numbers = {"poll_interval": args.poll_interval, "glm_deadline": args.glm_deadline, "watch": args.watch,
                   "max_age_minutes": args.max_age_minutes, "keep_days": args.keep_days,
                   "future_tolerance_s": args.future_tolerance_s}  # fmt: skip
        for name, value in numbers.items():
            if not value >= 0:
                msg = f"--{name.replace('_', '-')}: expected a number >= 0, found {value}"
                raise ConfigError(msg)
        if args.poll_interval == 0:
            msg = "--poll-interval: expected a number > 0, found 0"
            raise ConfigError(msg)
        sectors = split_list(args.sectors, "--sectors")
        unknown = sorted(set(sectors) - set(ABI_SECTORS))
        if unknown:
            msg = f"--sectors: expected a subset of {','.join(ABI_SECTORS)}, found {','.join(unknown)}"
            raise ConfigError(msg)
        return cls(
            source=args.source,
            bus=args.bus,
            store=Path(args.store),
            state=Path(args.state),
            model_base=Path(args.model_base),
            model_name=args.model_name,
            http=parse_address(args.http, "--http", listen=True),
            redis=args.redis,
            watch=args.watch > 0,
            keep_days=args.keep_days,
            exit_when_idle=args.exit_when_idle,
            **_alert_settings(args),
            scorer=ScorerSettings(backend=args.scorer, tile=args.tile, concurrency=args.concurrency,
                                  tfserving=tfserving_settings(args)),
            hotswap=HotSwapSettings(interval_s=args.watch or d.hotswap.interval_s, shadow=args.shadow),
            daemon=replace(d.daemon, poll_interval_s=args.poll_interval, future_tolerance_s=args.future_tolerance_s),
            worker=replace(d.worker, sectors=frozenset(sectors), glm_deadline_s=args.glm_deadline,
                           max_age_s=_max_age_s(args.max_age_minutes), future_tolerance_s=args.future_tolerance_s),
            web=WebSettings(max_connections=args.http_max_connections, max_in_flight=args.http_max_in_flight,
                            header_timeout_s=args.http_header_timeout, cors_origins=_origins(args.cors_origin)),
            api=ApiSettings(admin_token=args.admin_token),
        )  # fmt: skip

    def replaced(self, **changes: Any) -> ServiceSettings:
        """A copy with ``changes``, where a stage's field name changes that stage.

        ``poll_interval_s``, ``glm_deadline_s``, ``tile``, ``shadow``, …: tests and benchmarks say what they change in
        one call. The one fact two stages share (``future_tolerance_s``) changes both; any other name two stages
        happen to share (``threads``: the scorer's and the web server's) is refused as ambiguous.
        """
        owners = {name: [s for s in _STAGES if name in _fields_of(getattr(self, s))] for name in changes}
        ambiguous = sorted(name for name, found in owners.items() if len(found) > 1 and name not in _SHARED)
        if ambiguous:
            msg = (f"ServiceSettings.replaced: {', '.join(ambiguous)} is a setting of "
                   f"{' and '.join(owners[ambiguous[0]])}; replace that stage instead")  # fmt: skip
            raise ConfigError(msg)
        own = {name: changes.pop(name) for name in list(changes) if name in _OWN_FIELDS}
        stages: dict[str, Any] = {}
        for stage in _STAGES:
            current = stages.get(stage, getattr(self, stage))
            mine = {name: value for name, value in changes.items() if name in _fields_of(current)}
            if mine:
                stages[stage] = replace(current, **mine)
        unknown = sorted(set(changes) - {name for stage in _STAGES for name in _fields_of(getattr(self, stage))})
        if unknown:
            msg = f"ServiceSettings.replaced: no setting named {', '.join(unknown)}"
            raise ConfigError(msg)
        return replace(self, **own, **stages)


def _fields_of(settings: Any) -> set[str]:
    return {f.name for f in fields(settings)}


_STAGES = ("scorer", "hotswap", "daemon", "worker", "web", "api")
_SHARED = {"future_tolerance_s"}  # one fact held by the daemon and the worker
_OWN_FIELDS = {f.name for f in fields(ServiceSettings)} - set(_STAGES)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``ltgcast run``: defaults from :class:`ServiceSettings`, or from ``LTGCAST_*`` variables."""
    d = ServiceSettings()
    env = env_of(parser)
    parser.set_defaults(admin_token=env.get("LTGCAST_ADMIN_TOKEN", ""))  # a secret: never a flag
    add_env_argument(parser, "--source", "LTGCAST_SOURCE", default=d.source, metavar="URI",
                     help="dir:PATH, s3://noaa-goes19, sqs://QUEUE?bucket=noaa-goes19 (NOAA's new-object "
                     "notifications), sim:[?options], or none: a worker fed by `ltgcast ingest` (Kafka)")  # fmt: skip
    add_env_argument(
        parser, "--bus", "LTGCAST_BUS", default=d.bus, metavar="URI", help="inproc:// or kafka://HOST:PORT"
    )
    add_env_argument(parser, "--scorer", "LTGCAST_SCORER", default=d.scorer.backend, metavar="NAME",
                     help="embedded (the fastest exact scorer in process) or tfserving; for comparisons also one "
                     "runtime (tensorflow, onnxruntime, openvino) or patch (a patch per pixel, slow)")  # fmt: skip
    parser.add_argument("--tile", type=int, default=d.scorer.tile,
                        help="output pixels per scoring tile side (0: whole frame)")  # fmt: skip
    parser.add_argument("--concurrency", type=_positive_int, default=d.scorer.concurrency, metavar="N",
                        help="tiles scored at once: threads in process, or requests to TF Serving")  # fmt: skip
    add_tfserving_arguments(parser)
    add_env_argument(parser, "--store", "LTGCAST_STORE", default=str(d.store), metavar="PATH", help="grid store folder")
    add_model_base_argument(parser)
    parser.add_argument("--model-name", default=d.model_name, help="model name in the repository")
    add_env_argument(parser, "--http", "LTGCAST_HTTP", default=format_address(*d.http), metavar="HOST:PORT",
                     help="HTTP API listen HOST:PORT")  # fmt: skip
    add_env_argument(parser, "--redis", "LTGCAST_REDIS_URL", default=d.redis, metavar="URL",
                     help="also store grids in Redis: redis://HOST:PORT/DB (default: none)")  # fmt: skip
    parser.add_argument("--shadow", action="store_true", help="score new model versions in shadow, promote by hand")
    parser.add_argument("--watch", type=float, default=d.hotswap.interval_s,
                        help="seconds between model-repository checks (0: off)")  # fmt: skip
    add_env_argument(parser, "--state", "LTGCAST_STATE", default=str(d.state), metavar="PATH",
                     help="checkpoint, quarantine and cache folder")  # fmt: skip
    parser.add_argument("--sectors", default=",".join(d.sectors), help="ABI sectors to nowcast")
    parser.add_argument("--poll-interval", type=float, default=d.daemon.poll_interval_s,
                        help="seconds between source polls")  # fmt: skip
    parser.add_argument("--glm-deadline", type=float, default=d.worker.glm_deadline_s,
                        help="seconds a frame waits for late GLM")  # fmt: skip
    parser.add_argument("--max-age-minutes", type=float, default=d.max_age_s / 60.0,
                        help="skip frames older than this when they arrive (0: no limit, for replays)")  # fmt: skip
    parser.add_argument("--keep-days", type=float, default=d.keep_days,
                        help="days of grid folders kept behind the clock; the newest grid's day is always kept "
                        "(0: never prune, for replays of old archives)")  # fmt: skip
    parser.add_argument("--future-tolerance-s", type=float, default=d.future_tolerance_s,
                        help="refuse frames and GLM granules whose scan starts more than this many seconds "
                        "after the clock (stage future), and hide such grids")  # fmt: skip
    parser.add_argument("--exit-when-idle", action="store_true",
                        help="stop once the source is exhausted and every frame scored (replays)")  # fmt: skip
    alerts = parser.add_argument_group("site alerts")
    add_env_argument(parser, "--sites", "LTGCAST_SITES", group=alerts, metavar="PATH",
                     help="TOML file of the sites with a lightning alert state, or none (default: the packaged "
                     "major US airports, serve/sitefiles/airports.toml)")  # fmt: skip
    add_env_argument(parser, "--alert-webhook", "LTGCAST_ALERT_WEBHOOK", group=alerts, metavar="URL",
                     help="POST each site-alert transition as JSON to this http(s) URL (default none)")  # fmt: skip
    http = parser.add_argument_group("HTTP server limits")
    add_env_argument(parser, "--cors-origin", "LTGCAST_CORS_ORIGINS", group=http, action="append", metavar="ORIGIN",
                     help="let a browser viewer at ORIGIN (e.g. https://wx.example.org) read the API; repeatable, "
                     "or comma-separated in the variable (default: CORS off)")  # fmt: skip
    http.add_argument("--http-max-connections", type=_positive_int, default=d.web.max_connections,
                      help="open connections; more are answered 503 at once")  # fmt: skip
    http.add_argument("--http-max-in-flight", type=_positive_int, default=d.web.max_in_flight,
                      help="requests answered at once (probes aside); more get 503 with Retry-After")  # fmt: skip
    http.add_argument("--http-header-timeout", type=float, default=d.web.header_timeout_s,
                      help="seconds a client has to send a request's line and headers")  # fmt: skip


def _alert_settings(args: argparse.Namespace) -> dict[str, str]:
    """``--sites`` and ``--alert-webhook``, checked now."""
    from serve.alerts.sites import resolve_sites
    from serve.alerts.webhook import check_webhook_url

    sites = getattr(args, "sites", None) or ""
    webhook = getattr(args, "alert_webhook", None) or ""
    resolve_sites(sites)  # a bad sites file stops the start, naming the file, the site and the problem
    if webhook:
        check_webhook_url(webhook)
    return {"sites": sites, "alert_webhook": webhook}


def _origins(given: str | list[str] | None) -> tuple[str, ...]:
    """``--cors-origin`` values (a list), or ``LTGCAST_CORS_ORIGINS`` (one comma-separated string), or none."""
    if not given:
        return ()
    if isinstance(given, str):
        return split_list(given, "LTGCAST_CORS_ORIGINS") if given.strip() else ()
    return tuple(given)


def _max_age_s(minutes: float) -> float:
    """``--max-age-minutes`` in seconds; infinity, like 0, means no limit (as it always has)."""
    return 0.0 if math.isinf(minutes) else minutes * 60.0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"expected a positive integer, found {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def port_in_use(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (a busy port), or ``None``: checked before anything heavy loads.

    Binds and listens as the HTTP server will (``SO_REUSEADDR``), then lets go.
    """
    if port == 0:
        return None
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            probe.listen(1)
        except OSError as exc:
            return f"cannot listen there ({exc.strerror or exc})"
    return None


def unreachable(source: str, timeout_s: float = 5.0) -> str | None:
    """Why NOAA's bucket cannot be reached from here, or ``None`` (only for ``s3://`` without an endpoint)."""
    parts = urlsplit(source)
    if parts.scheme != "s3" or "endpoint=" in parts.query:
        return None
    host = f"{parts.netloc}.s3.amazonaws.com"
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"cannot reach {host}:443 ({exc})"


class Service:
    """The embedded service: ingest, worker, model slot and HTTP API, wired from :class:`ServiceSettings`."""

    def __init__(self, settings: ServiceSettings) -> None:
        from serve.api.grids import GridApi
        from serve.api.web import HttpService
        from serve.scoring import get_scorer
        from serve.scoring.hotswap import ModelSlot
        from serve.stores.files import FileGridStore
        from serve.worker.loop import NowcastWorker

        self.settings = s = settings
        self.stop_event = threading.Event()
        self.clock = SystemClock(interrupt=self.stop_event)
        self.models = ModelSlot(s.model_base, s.model_name, lambda path: get_scorer(path, s.scorer), s.hotswap)
        self.bus: Bus = get_bus(s.bus)
        self.checkpoint: Checkpoint | None = None
        self.daemon: IngestDaemon | None = None
        # Daemon and worker in one process: each file is read once, by the daemon's check, for the worker too.
        self.handoff = DecodedFiles() if s.source != NO_SOURCE and isinstance(self.bus, InProcessBus) else None
        if s.source != NO_SOURCE:
            frame_filter = FrameFilter(sectors=s.sectors, bands=(13,))
            context = SourceContext(cache=s.state / "cache", clock=self.clock, frame_filter=frame_filter)
            source = get_source(s.source, context)  # checked before anything holds a file open
            self.checkpoint = Checkpoint.open(s.state / "ingest")
            self.daemon = IngestDaemon(source, self.bus, self.checkpoint,
                                       Quarantine(s.state / "quarantine"), self.clock, frame_filter=frame_filter,
                                       settings=s.daemon, handoff=self.handoff)  # fmt: skip
        self.store = FileGridStore(s.store, now=self.clock.now, future_tolerance_s=s.future_tolerance_s)
        read = self.handoff.read if self.handoff is not None else read_product
        self.worker = NowcastWorker(self.bus, self.models, self.store, self.clock, s.worker,
                                    sinks=self._sinks(), read=read)  # fmt: skip
        self.alerts, self.webhook = self._site_alerts()
        self.api = GridApi(self.store, s.api, models=self.models, ready=self.problems, alerts=self.alerts)
        self.http = HttpService(self.api, *s.http, s.web)
        self.threads: dict[str, threading.Thread] = {}
        self.ingest_done = threading.Event()
        self.worker_errors = 0
        self._next_prune = 0.0
        self._replay_logged = False

    def _site_alerts(self) -> tuple[AlertRunner | None, WebhookSender | None]:
        """The site-alert runner (``None`` with ``--sites none``) and its webhook sender (``None`` without a URL).

        Live (``max_age_s`` > 0) the clock is "now", so a feed that stops turns the sites UNKNOWN; on a replay
        "now" is the newest scan in the store.
        """
        from serve.alerts.sites import resolve_sites
        from serve.alerts.states import AlertRunner, SiteAlerts
        from serve.alerts.webhook import WebhookSender, WebhookSettings

        s = self.settings
        sites = resolve_sites(s.sites)
        if not sites:
            return None, None
        webhook = WebhookSender(WebhookSettings(s.alert_webhook)) if s.alert_webhook else None
        alerts = SiteAlerts(self.store, sites, now=self.clock.now if s.max_age_s > 0 else None)
        return AlertRunner(alerts, webhook), webhook

    def _sinks(self) -> tuple[Any, ...]:
        if not self.settings.redis:
            return ()
        from serve.stores.redis_grids import RedisGridStore, RedisSettings

        return (RedisGridStore(RedisSettings(address=self.settings.redis)),)

    # -- threads ----------------------------------------------------------------------------------------------------
    def _ingest(self) -> None:
        try:
            if self.daemon is not None:
                self.daemon.run(once=self.settings.exit_when_idle, stop=self.stop_event)
        except Exception:  # the thread must say why it died; /readyz reports it
            log.exception("ingest: the daemon stopped on an unexpected error")
        finally:
            self.ingest_done.set()

    def _prune(self) -> None:
        """Every 10 minutes, remove grid day folders older than ``keep_days`` by the clock (stable and shadow).

        ``keep_days`` 0 never prunes (a replay of an old archive keeps every grid).
        """
        now = self.clock.monotonic()
        if self.settings.keep_days <= 0 or now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY_S
        keep = timedelta(days=self.settings.keep_days)
        removed = self.store.prune(keep) + self.worker.shadow_store.prune(keep)
        if removed:
            log.info("run: removed %d day folder(s) of grids older than %g days", removed, self.settings.keep_days)

    def _work(self) -> None:
        try:
            while not self.stop_event.is_set():
                self._work_once()
            self._finish()
        finally:
            self.worker.close()

    def _work_once(self) -> None:
        try:
            self._prune()
            received = self.worker.step()
        except Exception:  # one bad frame or a bus hiccup must not end the service
            self.worker_errors += 1
            log.exception("worker: a step failed; going on")
            self.clock.sleep(1.0)
            return
        if received or not self.worker.idle():
            return
        if self.settings.exit_when_idle and self.ingest_done.is_set():
            self._replay_over("stopping")
            self.stop_event.set()
        elif self.daemon is not None and getattr(self.daemon.source, "exhausted", lambda: False)():
            self._replay_over("still serving the grids (Ctrl-C stops)")

    def _replay_over(self, then: str) -> None:
        """Say once that the source is exhausted: what was announced and refused, and the grids made."""
        if self._replay_logged:
            return
        self._replay_logged = True
        summary = self.daemon.summary if self.daemon is not None else None
        lags = summary.lags if summary is not None else {}
        granules = lags["GLM"].count if "GLM" in lags else 0
        frames = sum(stats.count for key, stats in lags.items() if key != "GLM")
        refused = sum(n for outcome, n in summary.outcomes.items() if outcome != "announced") if summary else 0
        log.info("run: the replay is over: %d ABI frame(s) and %d GLM granule(s) announced, %d file(s) not, "
                 "%d grid(s) made; %s", frames, granules, refused, self.worker.grids_made, then)  # fmt: skip

    def _finish(self) -> None:
        """On the in-process bus, score what ingest announced last (kept nowhere else) before stopping.

        Runs on the worker thread, after the ingest thread has stopped. On Kafka, uncommitted frames come again
        (to another worker or after a restart), with their GLM.
        """
        if not isinstance(self.bus, InProcessBus):
            return
        if not self.ingest_done.wait(STOP_TIMEOUT_S):
            log.warning("run: the ingest thread did not stop within %.0f s; scoring what is on the bus", STOP_TIMEOUT_S)
        while self.worker.step(timeout_s=0.0):
            pass
        waiting = len(self.worker.pending)
        self.worker.drain()
        if waiting:
            log.info("run: scored %d frame(s) that were still waiting for GLM before stopping", waiting)

    def problems(self) -> dict[str, str]:
        """What keeps the service from being ready (empty when ready): for ``/readyz``."""
        found = {}
        stalled = self.clock.monotonic() - self.worker.last_step
        if stalled > WORKER_STALL_S:
            found["worker"] = f"the worker loop has not come round for {stalled:.0f} s"
        for name, thread in self.threads.items():
            if not thread.is_alive() and not (name == "ingest" and self.settings.exit_when_idle):
                found[name] = f"the {name} thread has stopped"
        for feed in self.worker.sinks:
            if not feed.alive() and not self.stop_event.is_set():
                found["sink"] = f"the thread feeding {feed.sink} has stopped"
        if self.alerts is not None and self.threads and not self.alerts.alive() and not self.stop_event.is_set():
            found["alerts"] = "the site-alert thread has stopped"
        return found

    def start(self) -> Service:
        """Start every thread; return self."""
        self.http.start()
        if self.webhook is not None:
            self.webhook.start()
        if self.alerts is not None:
            self.alerts.start()
        if self.settings.watch:
            self.models.start()
        targets = [("worker", self._work)]
        if self.daemon is not None:
            targets.insert(0, ("ingest", self._ingest))
        else:
            self.ingest_done.set()  # a worker of the distributed mode: no ingest here
        for name, target in targets:
            self.threads[name] = threading.Thread(target=target, name=f"ltgcast-{name}", daemon=True)
            self.threads[name].start()
        return self

    def wait(self) -> None:
        """Block until stopped (a signal or ``--exit-when-idle``)."""
        while not self.stop_event.wait(1.0):
            pass

    def stop(self) -> None:
        """Stop in order: ingest, worker (which finishes and closes itself), model watcher, HTTP; then the bus.

        The main thread never calls the worker: if the worker thread does not finish within ``STOP_TIMEOUT_S``
        (a frame stuck in the scorer), the process exits with it still running, and on Kafka its frames come again.
        """
        self.stop_event.set()
        for name, thread in self.threads.items():
            thread.join(timeout=STOP_TIMEOUT_S)
            if thread.is_alive():
                log.error("run: the %s thread did not stop within %.0f s; leaving it", name, STOP_TIMEOUT_S)
        self.models.stop()
        if self.alerts is not None:
            self.alerts.stop()
        if self.webhook is not None:
            self.webhook.stop()
        self.http.stop()
        if self.checkpoint is not None:
            self.checkpoint.close()
        self.bus.close()

    def summary(self) -> dict[str, Any]:
        """What the run did (printed when it ends)."""
        return {
            "grids": self.worker.grids_made,
            "outcomes": dict(self.worker.outcomes),
            "worker_errors": self.worker_errors,
            "models": self.models.status(),
        }


def run_command(args: argparse.Namespace) -> int:
    """``ltgcast run``: check the settings and the network, start the service, wait for a signal."""
    import json

    settings = ServiceSettings.from_args(args)
    problem = unreachable(settings.source)
    if problem:
        sys.stderr.write(
            f"ltgcast run: the network is unreachable: {problem}.\n"
            f"  The source {settings.source} is NOAA's open-data bucket on AWS; this machine cannot reach it.\n"
            "  Offline, run the synthetic scenario instead: make demo\n"
            "  (or: ltgcast run --source 'sim:?sector=M1&speed=60' --max-age-minutes 0)\n"
        )
        return 1
    busy = port_in_use(*settings.http)
    if busy:  # before the service (and TensorFlow, for some scorers) loads
        msg = f"--http {format_address(*settings.http)}: {busy}; stop what holds it or pick another port"
        raise ConfigError(msg)
    began = time.monotonic()
    service = Service(settings).start()
    viewer = format_address(*service.http.address)
    sys.stderr.write(f"ltgcast run: {settings.source} -> grids in {settings.store}; viewer http://{viewer}/\n")
    with stop_on_signals(service.stop_event):
        service.wait()
    service.stop()
    summary = {**service.summary(), "seconds": round(time.monotonic() - began, 1)}
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0
