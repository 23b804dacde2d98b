"""Site alerts: the sites file, the state machine over real grid files, the runner, the webhook and the API."""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from foundation.clock import wait_until
from foundation.errors import ConfigError
from ingest.geometry import FixedGrid, GeosProjection
from serve.alerts.sites import MAX_SITES, Site, load_sites, parse_sites, resolve_sites
from serve.alerts.states import AlertRunner, AlertState, SiteAlerts, great_circle_km
from serve.alerts.webhook import WebhookSender, WebhookSettings, check_webhook_url, shown
from serve.api.grids import GridApi
from serve.api.web import HttpService
from serve.stores.files import FileGridStore
from serve.stores.gridfile import GridMeta

T0 = datetime(2024, 6, 15, 20, 0, 24, tzinfo=UTC)
SHAPE = (60, 80)
STEP = 5.6e-5  # 2 km ABI pixels at nadir
PROJECTION = GeosProjection(lon_0=-75.2, height=35786023.0)


def make_grid(lat: float = 35.0, lon: float = -97.5) -> FixedGrid:
    """A 60 x 80 block of 2 km pixels centred on (lat, lon), seen from GOES-East."""
    x0, y0 = (float(v) for v in PROJECTION.scan_angles(lat, lon))
    rows, cols = SHAPE
    return FixedGrid(PROJECTION, x0 + STEP * (np.arange(cols) - cols // 2), y0 - STEP * (np.arange(rows) - rows // 2))


GRID = make_grid()
FAR_GRID = make_grid(41.0, -88.0)  # a block over Illinois: covers nothing near Oklahoma


def pixel_lonlat(row: int, col: int, grid: FixedGrid = GRID) -> tuple[float, float]:
    lon, lat = grid.projection.lonlat(*grid.scan_angles_of(row, col))
    return float(lon), float(lat)


SITE_LON, SITE_LAT = pixel_lonlat(30, 40)
RADIUS_KM = 10.0


def pixel_at(low_km: float, high_km: float) -> tuple[int, int]:
    """A pixel whose centre lies between ``low_km`` and ``high_km`` of the site."""
    lon, lat = GRID.lonlat()
    distance = great_circle_km(SITE_LAT, SITE_LON, lat, lon)
    rows, cols = np.nonzero((distance > low_km) & (distance < high_km))
    return int(rows[0]), int(cols[0])


INSIDE = pixel_at(6.0, 9.0)
OUTSIDE = pixel_at(11.0, 14.0)


def site(hold: float = 10.0, threshold: float = 0.5, site_id: str = "KTST") -> Site:
    return Site(site_id, "Test field", SITE_LAT, SITE_LON, RADIUS_KM, threshold, hold)


def put(store: FileGridStore, minute: float, hot: dict[tuple[int, int], float] | None = None, *,
        sector: str = "M1", grid: FixedGrid = GRID, background: float = 0.05) -> str:  # fmt: skip
    """One stored grid scanned ``minute`` after T0: ``background`` everywhere, NaN in a corner, ``hot`` pixels."""
    scan = T0 + timedelta(minutes=minute)
    p = np.full(SHAPE, background, np.float32)
    p[:3, :5] = np.nan
    for (row, col), value in (hot or {}).items():
        p[row, col] = value
    meta = GridMeta("G16", sector, scan, scan + timedelta(minutes=30), "lightning", 1, f"frame{minute}.nc")
    store.put(p, grid, meta)
    return meta.grid_id


@pytest.fixture
def store(tmp_path: Path) -> FileGridStore:
    return FileGridStore(tmp_path / "grids")


def status_of(alerts: SiteAlerts, site_id: str = "KTST") -> Any:
    return next(s for s in alerts.evaluate().statuses if s.site.id == site_id)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- the sites file -------------------------------------------------------------------------------------------------
GOOD = '[defaults]\nradius_km = 12\n\n[[site]]\nid = "KOKC"\nname = "OKC"\nlat = 35.393\nlon = -97.601\n'


def test_a_sites_file_takes_its_defaults_and_per_site_overrides() -> None:
    (okc, tul) = parse_sites(GOOD + '\n[[site]]\nid = "KTUL"\nlat = 36.2\nlon = -95.9\nthreshold = 0.3\n')
    assert okc == Site("KOKC", "OKC", 35.393, -97.601, 12.0, 0.5, 30.0)
    assert (tul.name, tul.radius_km, tul.threshold, tul.hold_minutes) == ("KTUL", 12.0, 0.3, 30.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[[site]]\nid = "KOKC"\nlat = 91\nlon = 0',
            "site 'KOKC': lat must be a number in [-90, 90] degrees; found 91",
        ),
        ('[[site]]\nid = "KOKC"\nlat = 0\nlon = -181', "lon must be a number in [-180, 180] degrees; found -181"),
        (
            '[[site]]\nid = "A"\nlat = 0\nlon = 0\nradius_km = 0.5',
            "radius_km must be a number in [1, 100] km; found 0.5",
        ),
        ('[[site]]\nid = "A"\nlat = 0\nlon = 0\nthreshold = 1.0', "threshold must be a number in [0.01, 0.99]"),
        ('[[site]]\nid = "A"\nlat = 0\nlon = 0\nhold_minutes = 300', "hold_minutes must be a number in [0, 240]"),
        ('[[site]]\nid = "A"\nlat = "35"\nlon = 0', "lat must be a number in [-90, 90] degrees; found '35'"),
        ('[[site]]\nid = "A"\nlat = nan\nlon = 0', "lat must be a number"),
        ('[[site]]\nid = "K OKC"\nlat = 0\nlon = 0', "site 'K OKC': id must be a string matching"),
        ("[[site]]\nlat = 0\nlon = 0", "site #1: id must be a string matching ^[A-Za-z0-9_-]{1,32}$; found None"),
        ('[[site]]\nid = "A"\nlon = 0', "site 'A': expected lat (degrees); found none"),
        ('[[site]]\nid = "A"\nlat = 0\nlon = 0\nradius = 3', "expected only the keys"),
        ('[[site]]\nid = "A"\nlat = 0\nlon = 0\n[[site]]\nid = "A"\nlat = 1\nlon = 1', "found 'A' twice"),
        ("[defaults]\nthreshold = 0\n", "[defaults]: threshold must be a number in [0.01, 0.99]"),
        ("[defaults]\nradius = 3\n", "[defaults]: expected only radius_km, threshold, hold_minutes; found radius"),
        ("[airports]\n", "expected only [defaults] and [[site]] tables; found airports"),
        ("[[site]\n", "not valid TOML"),
    ],
)
def test_a_bad_sites_file_is_refused_naming_the_file_the_site_and_the_problem(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match="^sites file bad.toml") as refused:
        parse_sites(text, "bad.toml")
    assert expected in str(refused.value)


def test_the_sites_file_is_bounded_in_sites_and_bytes(tmp_path: Path) -> None:
    many = "".join(f'[[site]]\nid = "S{n}"\nlat = 0\nlon = 0\n' for n in range(MAX_SITES + 1))
    with pytest.raises(ConfigError, match=f"expected at most {MAX_SITES} sites; found {MAX_SITES + 1}"):
        parse_sites(many, "many.toml")
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * 120_000)
    with pytest.raises(ConfigError, match=r"big.toml: expected at most 1048576 bytes; found 1200000"):
        load_sites(big)
    with pytest.raises(ConfigError, match="missing.toml: cannot be read"):
        load_sites(tmp_path / "missing.toml")


def test_the_packaged_airports_load_and_several_lie_under_the_demo_sector() -> None:
    airports = resolve_sites("")
    assert 20 <= len(airports) <= 40
    assert len({a.id for a in airports}) == len(airports)
    okc = next(a for a in airports if a.id == "KOKC")
    assert (round(okc.lat, 1), round(okc.lon, 1), okc.radius_km, okc.threshold) == (35.4, -97.6, 16.0, 0.5)
    demo = [a.id for a in airports if great_circle_km(35.0, -97.5, np.array(a.lat), np.array(a.lon)) < 400]
    assert {"KOKC", "KTUL", "KDFW", "KICT"} <= set(demo)
    assert resolve_sites("none") == ()


# -- the state machine over stored grids ----------------------------------------------------------------------------
def test_a_pixel_within_the_radius_raises_the_alert_and_one_just_outside_does_not(store: FileGridStore) -> None:
    alerts = SiteAlerts(store, [site()])
    put(store, 0)
    first = status_of(alerts)
    assert (first.state, first.probability, first.since, first.last_exceeded) == (AlertState.CLEAR, 0.05, at(0), None)
    put(store, 1, {OUTSIDE: 0.95})  # 11-14 km away: outside the 10 km radius
    outside = status_of(alerts)
    assert (outside.state, outside.probability, outside.since) == (AlertState.CLEAR, 0.05, at(0))
    crossing = put(store, 2, {INSIDE: 0.6, OUTSIDE: 0.95})
    alert = status_of(alerts)
    assert (alert.state, alert.probability, alert.since, alert.last_exceeded) == (AlertState.ALERT, 0.6, at(2), at(2))
    assert (alert.grid.grid_id, alert.grid.sector) == (crossing, "M1")


def test_the_alert_holds_for_hold_minutes_below_the_threshold_then_clears(store: FileGridStore) -> None:
    alerts = SiteAlerts(store, [site(hold=10)])
    put(store, 0)
    put(store, 1, {INSIDE: 0.5})  # reaches the threshold exactly
    for minute in (3, 6, 9, 11):
        put(store, minute, {INSIDE: 0.3})
        held = status_of(alerts)
        assert (held.state, held.probability, held.since, held.last_exceeded) == (AlertState.ALERT, 0.3, at(1), at(1))
    put(store, 12, {INSIDE: 0.3})  # 11 minutes after the last crossing: the all-clear
    clear = status_of(alerts)
    assert (clear.state, clear.since, clear.last_exceeded) == (AlertState.CLEAR, at(12), at(1))
    put(store, 13, {INSIDE: 0.7})
    put(store, 20, {INSIDE: 0.8})
    again = status_of(alerts)
    assert (again.state, again.since, again.last_exceeded) == (AlertState.ALERT, at(13), at(20))


def test_a_hold_of_zero_follows_each_grid(store: FileGridStore) -> None:
    alerts = SiteAlerts(store, [site(hold=0)])
    put(store, 0, {INSIDE: 0.9})
    put(store, 1, {INSIDE: 0.9})
    assert (status_of(alerts).state, status_of(alerts).since) == (AlertState.ALERT, at(0))
    put(store, 2, {INSIDE: 0.2})
    assert (status_of(alerts).state, status_of(alerts).since) == (AlertState.CLEAR, at(2))


def test_a_stale_feed_is_unknown_not_an_all_clear(store: FileGridStore) -> None:
    put(store, 0, {INSIDE: 0.9})
    put(store, 5)
    live = SiteAlerts(store, [site(hold=10)], now=lambda: at(45))  # a live clock: 40 min after the last grid
    assert (status_of(live).state, status_of(live).since) == (AlertState.ALERT, at(0))
    late = SiteAlerts(store, [site(hold=10)], now=lambda: at(45.5))  # and then the whole feed stopped
    assert (status_of(late).state, status_of(late).since) == (AlertState.UNKNOWN, at(45))
    put(store, 46, sector="C", grid=FAR_GRID)  # newer scans elsewhere: the site's feed is 41 min old (hold 10 + 30)
    stale = status_of(SiteAlerts(store, [site(hold=10)]))
    assert (stale.state, stale.probability, stale.since, stale.last_exceeded) == (
        AlertState.UNKNOWN, None, at(45), at(0))  # fmt: skip
    assert stale.grid.scan_start == at(5)
    assert status_of(SiteAlerts(FileGridStore(store.root / "empty"), [site()])).state is AlertState.UNKNOWN


def test_every_covering_sector_feeds_one_time_line_and_the_newest_grid_gives_the_probability(
    store: FileGridStore,
) -> None:
    alerts = SiteAlerts(store, [site(hold=0)])
    put(store, 0, {INSIDE: 0.9}, sector="C")
    put(store, 0, {INSIDE: 0.2}, sector="M1")  # same scan: mesoscale is the newest grid, CONUS's crossing counts
    tie = status_of(alerts)
    assert (tie.state, tie.probability, tie.grid.sector) == (AlertState.ALERT, 0.2, "M1")
    put(store, 5, {INSIDE: 0.7}, sector="C")  # CONUS is newer now
    newer = status_of(alerts)
    assert (newer.state, newer.probability, newer.grid.sector, newer.since) == (AlertState.ALERT, 0.7, "C", at(0))
    put(store, 6, sector="M2", grid=FAR_GRID)  # a newer sector that does not cover the site changes nothing
    assert status_of(alerts).grid.sector == "C"


def test_a_crossing_in_one_sector_holds_the_alert_when_another_sector_below_it_comes_next(
    store: FileGridStore,
) -> None:
    alerts = SiteAlerts(store, [site(hold=10)])
    put(store, 0, {INSIDE: 0.8}, sector="C")
    put(store, 2, {INSIDE: 0.1}, sector="M1")  # the finer sector sees less 2 minutes later: no early all-clear
    held = status_of(alerts)
    assert (held.state, held.probability, held.grid.sector, held.since) == (AlertState.ALERT, 0.1, "M1", at(0))
    put(store, 11, {INSIDE: 0.1}, sector="M1")  # 11 minutes after the crossing, below all along: all-clear
    cleared = status_of(alerts)
    assert (cleared.state, cleared.since, cleared.last_exceeded) == (AlertState.CLEAR, at(11), at(0))


def test_missing_pixels_within_the_radius_do_not_count_and_an_all_missing_disc_does_not_cover(
    store: FileGridStore,
) -> None:
    alerts = SiteAlerts(store, [site(hold=0)])
    put(store, 0, {INSIDE: float("nan")}, background=0.1)
    assert status_of(alerts).probability == 0.1
    put(store, 1, background=float("nan"))
    covering = status_of(alerts)
    assert (covering.state, covering.grid.scan_start) == (AlertState.CLEAR, at(0))


def test_a_broken_grid_file_is_skipped_counted_and_logged_once(
    store: FileGridStore, caplog: pytest.LogCaptureFixture
) -> None:
    put(store, 0, {INSIDE: 0.9})
    broken = store.get(put(store, 1))
    assert broken is not None
    broken.path.write_bytes(b"not a netCDF file")
    counted = sample("ltgcast_grid_files_unreadable_total", route="alerts")
    alerts = SiteAlerts(store, [site()])
    with caplog.at_level(logging.WARNING, logger="serve.alerts.states"):
        first, again = status_of(alerts), status_of(alerts)
    assert (first.state, first.grid.scan_start) == (again.state, again.grid.scan_start) == (AlertState.ALERT, at(0))
    assert len(caplog.records) == 1
    assert f"grid file {broken.grid_id} cannot be read" in caplog.records[0].getMessage()
    assert sample("ltgcast_grid_files_unreadable_total", route="alerts") == counted + 1


# -- the runner -----------------------------------------------------------------------------------------------------
class Collected:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def enqueue(self, message: dict[str, Any]) -> None:
        self.messages.append(message)


def test_the_runner_announces_each_transition_once_in_logs_metrics_and_the_webhook(
    store: FileGridStore, caplog: pytest.LogCaptureFixture
) -> None:
    webhook = Collected()
    runner = AlertRunner(SiteAlerts(store, [site(hold=5, site_id="RUN1")]), webhook)
    alerts_before = sample("ltgcast_site_alert_transitions_total", site="RUN1", to="ALERT")
    clears_before = sample("ltgcast_site_alert_transitions_total", site="RUN1", to="CLEAR")
    put(store, 0)
    assert runner.check()
    assert webhook.messages == []  # the baseline: a clear site is not announced at start
    assert sample("ltgcast_site_alert_state", site="RUN1") == 0
    assert not runner.check()  # no new grid: nothing recomputed
    crossing = put(store, 1, {INSIDE: 0.8})
    with caplog.at_level(logging.INFO, logger="serve.alerts.states"):
        assert runner.check()
    (message,) = webhook.messages
    assert message == {"site": "RUN1", "name": "Test field", "lat": SITE_LAT, "lon": SITE_LON, "state": "ALERT",
                       "previous": "CLEAR", "probability": 0.8, "threshold": 0.5, "radius_km": RADIUS_KM,
                       "since": "2024-06-15T20:01:24.000Z", "grid_id": crossing,
                       "valid_time": "2024-06-15T20:31:24.000Z",
                       "event_id": "RUN1/ALERT/2024-06-15T20:01:24.000Z"}  # fmt: skip
    assert [r.getMessage()[:40] for r in caplog.records] == ["alerts: RUN1 (Test field) CLEAR -> ALERT"]
    assert sample("ltgcast_site_alert_state", site="RUN1") == 1
    assert sample("ltgcast_site_probability", site="RUN1") == pytest.approx(0.8)
    put(store, 3, {INSIDE: 0.9})  # still in alert: no transition
    runner.check()
    put(store, 8)  # 5 minutes after the last crossing: held
    runner.check()
    put(store, 9)
    runner.check()
    assert [(m["state"], m["since"][11:16]) for m in webhook.messages] == [("ALERT", "20:01"), ("CLEAR", "20:09")]
    assert sample("ltgcast_site_alert_transitions_total", site="RUN1", to="ALERT") == alerts_before + 1
    assert sample("ltgcast_site_alert_transitions_total", site="RUN1", to="CLEAR") == clears_before + 1
    restarted = Collected()  # a new process over the same store: an alert in progress is announced, once
    put(store, 10, {INSIDE: 0.9})
    AlertRunner(SiteAlerts(store, [site(hold=5, site_id="RUN1")]), restarted).check()
    assert [(m["state"], m["previous"], m["since"][11:16]) for m in restarted.messages] == [("ALERT", None, "20:10")]


def test_the_runner_thread_picks_up_new_grids(store: FileGridStore) -> None:
    webhook = Collected()
    runner = AlertRunner(SiteAlerts(store, [site(site_id="RUN2")]), webhook, poll_s=0.02).start()
    try:
        put(store, 0, {INSIDE: 0.9})
        wait_until(lambda: webhook.messages, "the alert", limit_s=30.0)
        assert webhook.messages[0]["state"] == "ALERT"
        assert runner.alive()
    finally:
        runner.stop()
    assert not runner.alive()


# -- the webhook ----------------------------------------------------------------------------------------------------
class Hook:
    """A real HTTP server on 127.0.0.1 answering each POST with the next status of ``statuses`` (then 200)."""

    def __init__(self, statuses: list[int], hang: threading.Event | None = None) -> None:
        self.statuses = list(statuses)
        self.bodies: list[Any] = []
        self.hang = hang
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                hook.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                if hook.hang is not None:
                    hook.hang.wait(60)  # until the test lets it answer
                status = hook.statuses.pop(0) if hook.statuses else 200
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up on this attempt and hung up

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Hook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.hang is not None:
            self.hang.set()
        self.server.shutdown()
        self.server.server_close()


def fast(url: str, **changes: Any) -> WebhookSettings:
    return WebhookSettings(url, **{"timeout_s": 2.0, "attempts": 5, "backoff_s": 0.01, "max_backoff_s": 0.04,
                                   **changes})  # fmt: skip


@pytest.fixture
def sending() -> Iterator[list[WebhookSender]]:
    senders: list[WebhookSender] = []
    yield senders
    for sender in senders:
        sender.stop()


def test_a_failing_receiver_is_retried_until_it_accepts(sending: list[WebhookSender]) -> None:
    sent = sample("ltgcast_alert_webhook_total", outcome="sent")
    with Hook([500, 503]) as hook:
        sender = WebhookSender(fast(hook.url)).start()
        sending.append(sender)
        sender.enqueue({"site": "KOKC", "state": "ALERT"})
        wait_until(lambda: sender.outcomes["sent"], "the delivery", limit_s=30.0)
    assert hook.bodies == [{"site": "KOKC", "state": "ALERT"}] * 3
    assert sender.outcomes == {"sent": 1, "failed": 0, "dropped": 0}
    assert sample("ltgcast_alert_webhook_total", outcome="sent") == sent + 1


def test_a_client_error_is_not_retried_but_408_and_429_are(sending: list[WebhookSender]) -> None:
    with Hook([400, 429, 408]) as hook:
        sender = WebhookSender(fast(hook.url)).start()
        sending.append(sender)
        sender.enqueue({"n": 1})
        sender.enqueue({"n": 2})
        wait_until(lambda: sum(sender.outcomes.values()) == 2, "both outcomes", limit_s=30.0)
    assert [b["n"] for b in hook.bodies] == [1, 2, 2, 2]
    assert sender.outcomes == {"sent": 1, "failed": 1, "dropped": 0}


def test_a_hanging_receiver_never_blocks_the_caller(sending: list[WebhookSender]) -> None:
    release = threading.Event()
    with Hook([], hang=release) as hook:
        sender = WebhookSender(fast(hook.url, timeout_s=60.0)).start()
        sending.append(sender)
        sender.enqueue({"n": 1})
        wait_until(lambda: hook.bodies, "the first delivery to reach the receiver", limit_s=30.0)
        for n in (2, 3):
            sender.enqueue({"n": n})  # returns while the first message is held by the receiver
        assert (sender.pending(), sender.outcomes) == (2, {"sent": 0, "failed": 0, "dropped": 0})
        release.set()
        wait_until(lambda: sender.outcomes["sent"] == 3, "the deliveries once the receiver answers", limit_s=30.0)
    assert [b["n"] for b in hook.bodies] == [1, 2, 3]


def test_a_receiver_that_does_not_answer_in_time_fails_after_its_attempts(sending: list[WebhookSender]) -> None:
    failed = sample("ltgcast_alert_webhook_total", outcome="failed")
    with Hook([], hang=threading.Event()) as hook:
        sender = WebhookSender(fast(hook.url, timeout_s=0.2, attempts=2)).start()
        sending.append(sender)
        sender.enqueue({"n": 1})
        sender.enqueue({"n": 2})
        wait_until(lambda: sender.outcomes["failed"] == 2, "both messages given up", limit_s=30.0)
    assert [b["n"] for b in hook.bodies] == [1, 1, 2, 2]
    assert sample("ltgcast_alert_webhook_total", outcome="failed") == failed + 2


def test_a_full_queue_drops_the_oldest_message() -> None:
    dropped = sample("ltgcast_alert_webhook_total", outcome="dropped")
    sender = WebhookSender(fast("http://127.0.0.1:9/hook", queue=2))  # not started: nothing is delivered
    for n in range(3):
        sender.enqueue({"n": n})
    assert (sender.pending(), sender.outcomes["dropped"]) == (2, 1)
    assert sample("ltgcast_alert_webhook_total", outcome="dropped") == dropped + 1
    assert [json.loads(b)["n"] for b in sender._queue] == [1, 2]


@pytest.mark.parametrize("url", ["ftp://example.org/x", "example.org/hook", "http://", "http://a b/", "http://h:0/"])
def test_a_webhook_url_must_be_http_with_a_host(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^--alert-webhook: expected an http:// or https:// URL with a host"):
        check_webhook_url(url)


def test_a_webhook_url_with_a_password_is_refused_and_logs_name_only_its_host() -> None:
    with pytest.raises(ConfigError, match=r"without user:password@") as refused:
        check_webhook_url("https://ops:s3cret@hooks.example.com/x")
    assert "s3cret" not in str(refused.value)
    assert shown("https://hooks.example.com:8443/services/T0/B0/SECRET") == "https://hooks.example.com:8443/…"


# -- the API --------------------------------------------------------------------------------------------------------
def get(api: GridApi, target: str) -> tuple[int, Any]:
    response = api.handle("GET", target)[1]
    return response.status, json.loads(response.body)


def test_the_alert_routes_answer_each_site_and_refuse_unknown_ids(store: FileGridStore) -> None:
    put(store, 0, {INSIDE: 0.9})
    runner = AlertRunner(SiteAlerts(store, [site(), site(site_id="OTHER")]))
    api = GridApi(store, alerts=runner)
    status, doc = get(api, "/v1/alerts")
    assert status == 200
    rows = [(s["id"], s["state"], s["probability"], s["since"], s["sector"]) for s in doc["sites"]]
    assert rows == [(name, "ALERT", 0.9, "2024-06-15T20:00:24.000Z", "M1") for name in ("KTST", "OTHER")]
    assert doc["reference"] == "2024-06-15T20:00:24.000Z"
    status, one = get(api, "/v1/alerts/KTST")
    assert status == 200
    assert (one["id"], one["radius_km"], one["hold_minutes"]) == ("KTST", 10.0, 10.0)
    assert one["scan_start"] == "2024-06-15T20:00:24.000Z"
    unknown = "no site 'KXXX' in the sites file; GET /v1/alerts lists the 2 sites"
    assert get(api, "/v1/alerts/KXXX") == (404, {"error": unknown, "code": "not_found"})
    assert get(api, "/v1/alerts/a.b")[0] == 400
    assert api.handle("GET", "/v1/alerts/KTST")[0] == "alert"
    off = GridApi(store)
    assert get(off, "/v1/alerts")[1]["sites"] == []
    assert get(off, "/v1/alerts/KTST")[0] == 404


def test_the_alert_routes_are_in_the_served_contract(store: FileGridStore) -> None:
    put(store, 0)
    runner = AlertRunner(SiteAlerts(store, [site()]))
    server = HttpService(GridApi(store, alerts=runner), "127.0.0.1", 0).start()
    base = "http://{}:{}".format(*server.address)
    try:
        with urllib.request.urlopen(f"{base}/v1/alerts/KTST", timeout=30) as reply:
            assert json.loads(reply.read())["state"] == "CLEAR"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/v1/alerts/bad%20id", timeout=30)
        assert refused.value.code == 400
        assert "site_id" in json.loads(refused.value.read())["error"]
        with urllib.request.urlopen(f"{base}/openapi.json", timeout=30) as reply:
            paths = json.loads(reply.read())["paths"]
        assert {"/v1/alerts", "/v1/alerts/{site_id}"} <= set(paths)
        assert paths["/v1/alerts/{site_id}"]["get"]["parameters"][0]["schema"]["pattern"] == "^[A-Za-z0-9_-]{1,32}$"
    finally:
        server.stop()


# -- ltgcast run's flags --------------------------------------------------------------------------------------------
def test_run_checks_the_sites_file_and_the_webhook_before_starting(tmp_path: Path, capsys: Any) -> None:
    from ltgcast.cli import main
    from ltgcast.flags import Parser
    from ltgcast.service import ServiceSettings, add_run_arguments

    bad = tmp_path / "sites.toml"
    bad.write_text('[[site]]\nid = "KOKC"\nlat = 95\nlon = 0\n')
    assert main(["run", "--source", "sim:", "--sites", str(bad)]) == 2
    assert (
        f"sites file {bad}, site 'KOKC': lat must be a number in [-90, 90] degrees; found 95" in capsys.readouterr().err
    )
    assert main(["run", "--source", "sim:", "--alert-webhook", "ftp://ops.example.org/"]) == 2
    assert "--alert-webhook: expected an http:// or https:// URL with a host" in capsys.readouterr().err
    parser = Parser(env={})
    add_run_arguments(parser)
    flags = parser.parse_args(["--source", "sim:", "--sites", "none", "--alert-webhook", "https://ops.example.org/h"])
    chosen = ServiceSettings.from_args(flags)
    assert (chosen.sites, chosen.alert_webhook) == ("none", "https://ops.example.org/h")
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    from_env = Parser(env={"LTGCAST_SITES": str(good)})
    add_run_arguments(from_env)
    chosen = ServiceSettings.from_args(from_env.parse_args(["--source", "sim:"]))
    assert (chosen.sites, chosen.alert_webhook) == (str(good), "")
    assert "[env: LTGCAST_SITES]" in from_env.format_help()
    assert ServiceSettings.from_args(parser.parse_args(["--source", "sim:"])).sites == ""  # the packaged airports
