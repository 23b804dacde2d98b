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

Settings come from flags, then ``LTGCAST_*`` environment variables, then the
embedded defaults, and are checked before anything starts.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from foundation.addresses import format_address, parse_address
from foundation.clock import FUTURE_TOLERANCE_S, SystemClock
from foundation.errors import ConfigError
from ingest.bus import Bus, InProcessBus, get_bus
from ingest.checkpoint import Checkpoint
from ingest.daemon import DaemonSettings, IngestDaemon
from ingest.handoff import DecodedFiles
from ingest.quarantine import Quarantine
from ingest.readers import read_product
from ingest.sources import ABI_SECTORS, FrameFilter, SourceContext, get_source
from ltgcast.ingestion import split_list, stop_on_signals
from ltgcast.nowcasting import DEFAULT_BASE, MODEL_BASE_HELP, model_base
from serve.scoring import DEFAULT_TFSERVING

if TYPE_CHECKING:
    from serve.alerts.states import AlertRunner
    from serve.alerts.webhook import WebhookSender

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 600.0
WORKER_STALL_S = 60.0  # /readyz fails when the worker loop has not come round for this long
STOP_TIMEOUT_S = 60.0  # how long stop() waits for the worker thread (deploy/k8s gives a pod 120 s to stop)
NO_SOURCE = "none"  # --source none: a worker (and API) of the distributed mode; frames come from Kafka


@dataclass(frozen=True)
class ServiceSettings:
    """Everything ``ltgcast run`` needs, checked; the field defaults are the embedded defaults (and the flags')."""

    source: str = "s3://noaa-goes19"
    bus: str = "inproc://"
    backend: str = "embedded"
    tile: int = 512
    tfserving: str = DEFAULT_TFSERVING
    store: Path = Path("var/grids")
    model_base: Path = Path(DEFAULT_BASE)
    model_name: str = "lightning"
    http: tuple[str, int] = ("127.0.0.1", 8080)
    redis: str = ""
    admin_token: str = ""
    shadow: bool = False
    watch_s: float = 10.0
    state: Path = Path("var/state/run")
    sectors: tuple[str, ...] = ("C", "M1", "M2")
    poll_interval_s: float = 2.0
    glm_deadline_s: float = 90.0
    max_age_s: float = 3600.0  # 0: no limit (replays)
    exit_when_idle: bool = False
    keep_days: float = 7.0  # 0: never prune (replays of old archives)
    future_tolerance_s: float = FUTURE_TOLERANCE_S  # scans starting further ahead of the clock are refused
    cors_origins: tuple[str, ...] = ()  # origins a browser may read the API from (empty: CORS off)
    http_max_connections: int = 512
    http_max_in_flight: int = 64
    http_header_timeout_s: float = 10.0
    sites: str = ""  # the sites file of the site alerts: "" the packaged airports, "none" off (serve.alerts.sites)
    alert_webhook: str = ""  # http(s) URL each site-alert transition is POSTed to ("" none)

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: Mapping[str, str]) -> ServiceSettings:
        """Flags win over ``LTGCAST_*`` variables, which win over the embedded defaults."""

        def pick(flag: str, variable: str, default: str) -> str:
            value = getattr(args, flag)
            return str(value) if value not in (None, "") else env.get(variable) or default

        d = cls()
        numbers = {"poll_interval": args.poll_interval, "glm_deadline": args.glm_deadline, "watch": args.watch,
                   "max_age_minutes": args.max_age_minutes, "keep_days": args.keep_days,
                   "future_tolerance_s": args.future_tolerance_s}  # fmt: skip
        for name, value in numbers.items():
            if value < 0:
                msg = f"--{name.replace('_', '-')}: expected a number >= 0, found {value}"
                raise ConfigError(msg)
        shared = pick("bus", "LTGCAST_BUS", "").startswith("kafka://")
        if pick("source", "LTGCAST_SOURCE", "") == NO_SOURCE and not shared:
            msg = "--source none (a worker without ingest) needs a shared bus: --bus kafka://HOST:PORT"
            raise ConfigError(msg)
        sectors = split_list(args.sectors, "--sectors")
        unknown = sorted(set(sectors) - set(ABI_SECTORS))
        if unknown:
            msg = f"--sectors: expected a subset of {','.join(ABI_SECTORS)}, found {','.join(unknown)}"
            raise ConfigError(msg)
        backend = pick("scorer", "LTGCAST_SCORER", d.backend)
        if backend == "tfserving" and (args.shadow or args.watch):
            msg = ("--scorer tfserving: TF Serving loads versions from models.config, so the service cannot gate, "
                   "warm up and swap them itself; run with --watch 0 and without --shadow, and move versions with "
                   "`ltgcast models promote` (models.config) and TF Serving's version labels")  # fmt: skip
            raise ConfigError(msg)
        return cls(
            source=pick("source", "LTGCAST_SOURCE", d.source),
            bus=pick("bus", "LTGCAST_BUS", d.bus),
            backend=backend,
            tile=args.tile,
            tfserving=pick("tfserving", "LTGCAST_TFSERVING", d.tfserving),
            store=Path(pick("store", "LTGCAST_STORE", str(d.store))),
            model_base=model_base(args.model_base, env),
            model_name=args.model_name,
            http=parse_address(pick("http", "LTGCAST_HTTP", format_address(*d.http)), "--http", listen=True),
            redis=pick("redis", "LTGCAST_REDIS_URL", d.redis),
            admin_token=env.get("LTGCAST_ADMIN_TOKEN", d.admin_token),
            shadow=args.shadow,
            watch_s=args.watch,
            state=Path(pick("state", "LTGCAST_STATE", str(d.state))),
            sectors=sectors,
            poll_interval_s=args.poll_interval,
            glm_deadline_s=args.glm_deadline,
            max_age_s=args.max_age_minutes * 60.0,
            exit_when_idle=args.exit_when_idle,
            keep_days=args.keep_days,
            future_tolerance_s=args.future_tolerance_s,
            cors_origins=tuple(args.cors_origin or _origins(env.get("LTGCAST_CORS_ORIGINS", ""))),
            http_max_connections=args.http_max_connections,
            http_max_in_flight=args.http_max_in_flight,
            http_header_timeout_s=args.http_header_timeout,
            **_alert_settings(args, env),
        )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``ltgcast run`` (defaults from :class:`ServiceSettings`)."""
    d = ServiceSettings()
    parser.add_argument("--source", help="dir:PATH, s3://noaa-goes19, sqs://QUEUE?bucket=noaa-goes19 (NOAA's "
                        "new-object notifications), sim:[?options], or none: a worker fed by "
                        "`ltgcast ingest` over Kafka (env LTGCAST_SOURCE)")  # fmt: skip
    parser.add_argument("--bus", help="inproc:// or kafka://HOST:PORT (env LTGCAST_BUS; default inproc://)")
    parser.add_argument("--scorer", help="embedded or tfserving (env LTGCAST_SCORER; default embedded)")
    parser.add_argument("--tile", type=int, default=d.tile, help="output pixels per scoring tile side (0: whole frame)")
    parser.add_argument("--tfserving", help="TF Serving gRPC HOST:PORT for --scorer tfserving (env LTGCAST_TFSERVING)")
    parser.add_argument("--store", help="grid store folder (env LTGCAST_STORE; default var/grids)")
    parser.add_argument("--model-base", help=MODEL_BASE_HELP)
    parser.add_argument("--model-name", default=d.model_name, help="model name in the repository")
    parser.add_argument("--http", help="HTTP API listen HOST:PORT (env LTGCAST_HTTP; default 127.0.0.1:8080)")
    parser.add_argument("--redis", help="also store grids in Redis: redis://HOST:PORT/DB (env LTGCAST_REDIS_URL)")
    parser.add_argument("--shadow", action="store_true", help="score new model versions in shadow, promote by hand")
    parser.add_argument(
        "--watch", type=float, default=d.watch_s, help="seconds between model-repository checks (0: off)"
    )
    parser.add_argument("--state", help="checkpoint, quarantine and cache (env LTGCAST_STATE; default var/state/run)")
    parser.add_argument("--sectors", default=",".join(d.sectors), help="ABI sectors to nowcast (default %(default)s)")
    parser.add_argument("--poll-interval", type=float, default=d.poll_interval_s, help="seconds between source polls")
    parser.add_argument(
        "--glm-deadline", type=float, default=d.glm_deadline_s, help="seconds a frame waits for late GLM"
    )
    parser.add_argument("--max-age-minutes", type=float, default=d.max_age_s / 60.0,
                        help="skip frames older than this when they arrive (0: no limit, for replays)")  # fmt: skip
    parser.add_argument("--keep-days", type=float, default=d.keep_days,
                        help="days of grid folders kept behind the clock; the newest grid's day is always kept "
                        "(0: never prune, for replays of old archives)")  # fmt: skip
    parser.add_argument("--future-tolerance-s", type=float, default=d.future_tolerance_s,
                        help="refuse frames and GLM granules whose scan starts more than this many seconds "
                        "after the clock (stage future), and hide such grids (default %(default)g)")  # fmt: skip
    parser.add_argument("--exit-when-idle", action="store_true",
                        help="stop once the source is exhausted and every frame scored (replays)")  # fmt: skip
    alerts = parser.add_argument_group("site alerts")
    alerts.add_argument("--sites", metavar="PATH",
                        help="TOML file of the sites with a lightning alert state, or none (env LTGCAST_SITES; "
                        "default: the packaged major US airports, serve/sitefiles/airports.toml)")  # fmt: skip
    alerts.add_argument("--alert-webhook", metavar="URL",
                        help="POST each site-alert transition as JSON to this http(s) URL "
                        "(env LTGCAST_ALERT_WEBHOOK; default none)")  # fmt: skip
    http = parser.add_argument_group("HTTP server limits")
    http.add_argument("--cors-origin", action="append", metavar="ORIGIN",
                      help="let a browser viewer at ORIGIN (e.g. https://wx.example.org) read the API; repeatable "
                      "(env LTGCAST_CORS_ORIGINS, comma-separated; default: CORS off)")  # fmt: skip
    http.add_argument("--http-max-connections", type=_positive_int, default=d.http_max_connections,
                      help="open connections; more are answered 503 at once (default %(default)s)")  # fmt: skip
    http.add_argument("--http-max-in-flight", type=_positive_int, default=d.http_max_in_flight,
                      help="requests answered at once (probes aside); more are answered 503 with Retry-After "
                      "(default %(default)s)")  # fmt: skip
    http.add_argument("--http-header-timeout", type=float, default=d.http_header_timeout_s,
                      help="seconds a client has to send a request's line and headers "
                      "(default %(default)g)")  # fmt: skip


def _alert_settings(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, str]:
    """``--sites`` and ``--alert-webhook`` (env ``LTGCAST_SITES``, ``LTGCAST_ALERT_WEBHOOK``), checked now."""
    from serve.alerts.sites import resolve_sites
    from serve.alerts.webhook import check_webhook_url

    sites = getattr(args, "sites", None) or env.get("LTGCAST_SITES", "")
    webhook = getattr(args, "alert_webhook", None) or env.get("LTGCAST_ALERT_WEBHOOK", "")
    resolve_sites(sites)  # a bad sites file stops the start, naming the file, the site and the problem
    if webhook:
        check_webhook_url(webhook)
    return {"sites": sites, "alert_webhook": webhook}


def _origins(text: str) -> tuple[str, ...]:
    return split_list(text, "LTGCAST_CORS_ORIGINS") if text.strip() else ()


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
        from serve.api.grids import ApiSettings, GridApi
        from serve.api.web import HttpService, WebSettings
        from serve.scoring import ScorerSettings, get_scorer
        from serve.scoring.hotswap import HotSwapSettings, ModelSlot
        from serve.stores.files import FileGridStore
        from serve.worker import NowcastWorker, WorkerSettings

        self.settings = s = settings
        self.stop_event = threading.Event()
        self.clock = SystemClock(interrupt=self.stop_event)
        scorer_settings = ScorerSettings(backend=s.backend, tile=s.tile, target=s.tfserving)
        swap = HotSwapSettings(interval_s=s.watch_s or 10.0, shadow=s.shadow)
        self.models = ModelSlot(s.model_base, s.model_name, lambda path: get_scorer(path, scorer_settings), swap)
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
            daemon_settings = DaemonSettings(poll_interval_s=s.poll_interval_s, future_tolerance_s=s.future_tolerance_s)
            self.daemon = IngestDaemon(source, self.bus, self.checkpoint,
                                       Quarantine(s.state / "quarantine"), self.clock, frame_filter=frame_filter,
                                       settings=daemon_settings, handoff=self.handoff)  # fmt: skip
        self.store = FileGridStore(s.store, now=self.clock.now, future_tolerance_s=s.future_tolerance_s)
        worker_settings = WorkerSettings(sectors=frozenset(s.sectors), glm_deadline_s=s.glm_deadline_s,
                                         max_age_s=s.max_age_s or float("inf"), poll_timeout_s=0.25,
                                         future_tolerance_s=s.future_tolerance_s)  # fmt: skip
        read = self.handoff.read if self.handoff is not None else read_product
        self.worker = NowcastWorker(self.bus, self.models, self.store, self.clock, worker_settings,
                                    sinks=self._sinks(), read=read)  # fmt: skip
        self.alerts, self.webhook = self._site_alerts()
        self.api = GridApi(self.store, ApiSettings(admin_token=s.admin_token), models=self.models,
                           ready=self.problems, alerts=self.alerts)  # fmt: skip
        web = WebSettings(max_connections=s.http_max_connections, max_in_flight=s.http_max_in_flight,
                          header_timeout_s=s.http_header_timeout_s, cors_origins=s.cors_origins)  # fmt: skip
        self.http = HttpService(self.api, *s.http, web)
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
        if self.settings.watch_s > 0:
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


def run_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``ltgcast run``: check the settings and the network, start the service, wait for a signal."""
    import json

    settings = ServiceSettings.from_args(args, env)
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
