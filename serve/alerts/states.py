"""Site alerts: ALERT, CLEAR or UNKNOWN for each configured site, derived from the stored grids alone.

What a commercial lightning service offers airports and venues, from the
nowcast: for each site of the sites file (:mod:`serve.alerts.sites`),

* the **value of a grid** at a site is the highest probability over the pixels
  whose centres lie within ``radius_km`` of the site (great circle on a sphere
  of radius :data:`EARTH_RADIUS_KM`); missing pixels are ignored, and a grid
  with no valid pixel within the radius does not *cover* the site. The pixel
  set of each site is computed once per grid geometry (a window around the
  site's pixel and a mask) and only those windows are read from a file;
* the **state at a grid** is ALERT when a covering grid of any sector
  scanned in the last ``hold_minutes`` (that grid included) reaches
  ``threshold``, else CLEAR: every covering sector feeds one time line, so a
  CONUS crossing is not cleared early by a mesoscale grid below it;
* the **state now** is that of the newest grid covering the site (ties: M1,
  M2, C, F, whose value is the probability reported); it is UNKNOWN when
  no grid covered the site in the last ``hold_minutes + 30`` minutes
  (:data:`STALE_MARGIN`): a stale feed is not an all-clear.

Time is scan time, never the wall clock, so a replay or backfill gives the
states it would have given live: "now" is the newest scan in the store (or the
clock, when one is given, for a live service whose whole feed may stop).
``since`` is the scan time that began the current state (the crossing that
started an alert, the grid of the all-clear, or when the site went unknown),
as far back as :data:`HISTORY` lets one see. Because all of it is derived from
the stored grids, restarts and several API processes agree without shared state.

:class:`SiteAlerts` computes (values per grid are cached, so each file is read
once); :class:`AlertRunner` is the thread that recomputes when a sector's
newest grid changes (polling the store's listings: the worker is never
touched), sets the Prometheus series, logs each transition once and hands it
to the webhook (:mod:`serve.alerts.webhook`).
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from foundation.utc import iso_utc
from ingest.events import SECTORS
from ingest.geometry import FixedGrid
from serve import metrics
from serve.alerts.sites import Site
from serve.stores.files import FileGridStore, StoredGrid
from serve.stores.gridfile import GridFile

log = logging.getLogger(__name__)

#: Mean Earth radius (IUGG), km: distances to a site are great circles on this sphere.
EARTH_RADIUS_KM = 6371.0088
#: How long after its last covering grid a site becomes UNKNOWN, beyond its hold time.
STALE_MARGIN = timedelta(minutes=30)
#: How far back the grids are read (bounds ``since`` of a long alert; longer when a site's hold needs it).
HISTORY = timedelta(hours=3)
#: When two sectors' newest covering scans tie: mesoscale before CONUS before full disk.
SECTOR_PREFERENCE = {"M1": 0, "M2": 1, "C": 2, "F": 3}
#: What reading a broken grid file raises (netCDF4/HDF5: OSError, RuntimeError; a missing variable: ValueError…).
UNREADABLE = (OSError, ValueError, RuntimeError, KeyError, IndexError)


class AlertState(enum.StrEnum):
    """A site's alert state."""

    CLEAR = "CLEAR"
    ALERT = "ALERT"
    UNKNOWN = "UNKNOWN"


#: The value of ``ltgcast_site_alert_state`` for each state.
GAUGE = {AlertState.CLEAR: 0, AlertState.ALERT: 1, AlertState.UNKNOWN: -1}


@dataclass(frozen=True)
class SiteStatus:
    """A site's state and what it was derived from."""

    site: Site
    state: AlertState
    probability: float | None = None  # in the grid the state is read at; None when unknown
    since: datetime | None = None
    last_exceeded: datetime | None = None
    grid: StoredGrid | None = None  # the newest grid covering the site (even when it is too old: UNKNOWN)

    def as_json(self) -> dict[str, Any]:
        """The status as the API answers it."""
        return {
            **self.site.as_json(),
            "state": str(self.state),
            "probability": self.probability,
            "since": _iso(self.since),
            "last_exceeded": _iso(self.last_exceeded),
            "sector": None if self.grid is None else self.grid.sector,
            "grid_id": None if self.grid is None else self.grid.grid_id,
            "scan_start": None if self.grid is None else iso_utc(self.grid.scan_start),
        }


@dataclass(frozen=True)
class Evaluation:
    """Every site's status at one moment."""

    statuses: tuple[SiteStatus, ...]
    evaluated_at: datetime  # wall clock
    reference: datetime | None  # the scan time ("now") the states are at; None with an empty store

    def as_json(self) -> dict[str, Any]:
        """``{"sites": [...], "evaluated_at": ..., "reference": ...}``."""
        return {"sites": [s.as_json() for s in self.statuses], "evaluated_at": iso_utc(self.evaluated_at),
                "reference": _iso(self.reference)}  # fmt: skip


def _iso(when: datetime | None) -> str | None:
    return None if when is None else iso_utc(when)


@dataclass(frozen=True)
class Footprint:
    """The pixels of one grid geometry within a site's radius: a window ``[r0:r1, c0:c1]`` and a mask of it."""

    r0: int
    r1: int
    c0: int
    c1: int
    mask: NDArray[np.bool_]


def great_circle_km(lat0: float, lon0: float, lat: NDArray[np.float64],
                    lon: NDArray[np.float64]) -> NDArray[np.float64]:  # fmt: skip
    """Great-circle distance (haversine, km) from one point to many; NaN where ``lat``/``lon`` are NaN.

    >>> round(float(great_circle_km(0.0, 0.0, np.array([0.0]), np.array([1.0]))[0]), 1)  # one degree of the equator
    111.2
    """
    p0, p = np.radians(lat0), np.radians(lat)
    dlat, dlon = p - p0, np.radians(lon - lon0)
    h = np.sin(dlat / 2) ** 2 + np.cos(p0) * np.cos(p) * np.sin(dlon / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))), np.float64)


def footprint(grid: FixedGrid, site: Site) -> Footprint | None:
    """The pixels of ``grid`` whose centres lie within the site's radius, or ``None`` when there are none.

    The window is sized for the smallest ground pixel (at nadir: scan step × satellite height); pixels are
    larger everywhere else, so it always holds the whole disc.
    """
    row, col = (float(v) for v in grid.rowcol(site.lat, site.lon))
    if not (math.isfinite(row) and math.isfinite(col)):
        return None  # the satellite cannot see the site
    pixel_km = min(abs(grid.dx), abs(grid.dy)) * grid.projection.height / 1000.0
    half = math.ceil(site.radius_km / pixel_km) + 1
    height, width = grid.shape
    r0, r1 = max(0, math.floor(row) - half), min(height, math.ceil(row) + half + 1)
    c0, c1 = max(0, math.floor(col) - half), min(width, math.ceil(col) + half + 1)
    if r0 >= r1 or c0 >= c1:
        return None
    xx, yy = np.meshgrid(grid.x[c0:c1], grid.y[r0:r1])
    lon, lat = grid.projection.lonlat(xx, yy)
    with np.errstate(invalid="ignore"):
        mask = great_circle_km(site.lat, site.lon, lat, lon) <= site.radius_km
    return Footprint(r0, r1, c0, c1, mask) if mask.any() else None


def _window_max(probability: Any, spot: Footprint) -> float | None:
    """The highest valid probability within a footprint of an open ``probability`` variable (scaled, masked)."""
    window = np.ma.filled(probability[spot.r0 : spot.r1, spot.c0 : spot.c1].astype(np.float32), np.nan)
    inside = window[spot.mask]
    inside = inside[np.isfinite(inside)]
    return round(float(inside.max()), 6) if inside.size else None


Values = dict[str, float | None]


class SiteAlerts:
    """The sites' states from the grids of a :class:`FileGridStore` (see the module docstring).

    Parameters
    ----------
    store
        The grid store.
    sites
        The sites (:func:`serve.alerts.sites.load_sites`).
    now
        A clock for a live service: "now" is then the later of it and the newest scan, so a feed that stops
        turns every site UNKNOWN. Without it (replays, tests) "now" is the newest scan in the store.
    history
        How far back grids are read (at least every site's hold time plus :data:`STALE_MARGIN`).
    cached_grids
        Grids whose values are kept in memory.
    """

    def __init__(self, store: FileGridStore, sites: Sequence[Site], *, now: Callable[[], datetime] | None = None,
                 history: timedelta = HISTORY, cached_grids: int = 8192) -> None:  # fmt: skip
        self.store = store
        self.sites = tuple(sites)
        self.now = now
        longest = max((timedelta(minutes=s.hold_minutes) for s in self.sites), default=timedelta(0))
        self.history = max(history, longest + STALE_MARGIN)
        self.cached_grids = cached_grids
        self._values: OrderedDict[tuple[Any, ...], Values] = OrderedDict()
        self._footprints: OrderedDict[tuple[Any, ...], dict[str, Footprint | None]] = OrderedDict()
        self._broken: set[tuple[Any, ...]] = set()
        self._lock = threading.Lock()  # one evaluation at a time (the runner, or the API before the runner's first)

    def newest(self) -> dict[str, StoredGrid]:
        """The newest grid of each sector in the store (what the runner watches)."""
        return {s: g for s in self.store.sectors() if (g := self.store.latest(s)) is not None}

    def evaluate(self) -> Evaluation:
        """Every site's status now (reads only the grids not read before)."""
        with self._lock:
            newest = self.newest()
            scans = [g.scan_start for g in newest.values()]
            if self.now is not None:
                scans.append(self.now())
            reference = max(scans, default=None)
            series = {} if reference is None else self._series(newest, reference - self.history)
            statuses = tuple(self._status(site, series, reference) for site in self.sites)
            return Evaluation(statuses, datetime.now(UTC), reference)

    def _series(self, newest: dict[str, StoredGrid], since: datetime) -> dict[str, list[tuple[StoredGrid, Values]]]:
        series: dict[str, list[tuple[StoredGrid, Values]]] = {}
        for sector in newest:
            found = []
            for stored in self.store.grids_between(sector, since):
                values = self._read(stored)
                if values is not None:
                    found.append((stored, values))
            series[sector] = found
        return series

    def _status(self, site: Site, series: dict[str, list[tuple[StoredGrid, Values]]],
                reference: datetime | None) -> SiteStatus:  # fmt: skip
        # Every sector that covers the site feeds one time line: a threshold crossing seen in CONUS holds the alert
        # through the hold time even when a mesoscale grid below it comes next (an early all-clear is the unsafe
        # way to be wrong). The newest grid (the finest sector on a tie) gives the current probability.
        seen = sorted(
            ((g, p) for grids in series.values() for g, values in grids if (p := values.get(site.id)) is not None),
            key=lambda pair: (pair[0].scan_start, -SECTOR_PREFERENCE.get(pair[0].sector, len(SECTORS))),
        )
        if not seen or reference is None:
            return SiteStatus(site, AlertState.UNKNOWN)
        return decide(site, seen, reference)

    # -- reading grids ----------------------------------------------------------------------------------------------
    def _read(self, stored: StoredGrid) -> Values | None:
        """A grid's value at every site (cached by id, mtime and size); ``None`` when the file cannot be read."""
        try:
            stat = stored.path.stat()
        except OSError:
            return None  # pruned or replaced since it was listed
        key = (stored.grid_id, stat.st_mtime_ns, stat.st_size)
        if key in self._values:
            self._values.move_to_end(key)
            return self._values[key]
        if key in self._broken:
            return None
        try:
            values = self._read_file(stored)
        except UNREADABLE as exc:
            if len(self._broken) >= self.cached_grids:
                self._broken.clear()  # forget old broken files rather than grow without bound
            self._broken.add(key)
            metrics.UNREADABLE_GRIDS.labels("alerts").inc()
            log.warning("alerts: grid file %s cannot be read (%s: %s); skipped", stored.grid_id, type(exc).__name__,
                        str(exc)[:200])  # fmt: skip
            return None
        self._values[key] = values
        while len(self._values) > self.cached_grids:
            self._values.popitem(last=False)
        return values

    def _read_file(self, stored: StoredGrid) -> Values:
        with GridFile(stored.path) as grid:
            spots = self._spots(grid)
            probability = grid._var("probability")  # noqa: SLF001 (the windowed read GridFile.point does for one pixel)
            probability.set_auto_maskandscale(True)
            try:
                return {site.id: None if (spot := spots[site.id]) is None else _window_max(probability, spot)
                        for site in self.sites}  # fmt: skip
            finally:
                probability.set_auto_maskandscale(False)

    def _spots(self, grid: GridFile) -> dict[str, Footprint | None]:
        key = grid.geometry_key()
        spots = self._footprints.get(key)
        if spots is None:
            geometry = grid.geometry()
            spots = {site.id: footprint(geometry, site) for site in self.sites}
            self._footprints[key] = spots
            while len(self._footprints) > 64:
                self._footprints.popitem(last=False)
        return spots


def decide(site: Site, seen: Sequence[tuple[StoredGrid, float]], reference: datetime) -> SiteStatus:
    """A site's status from the grids that cover it (every sector, oldest first, non-empty) at scan time ``reference``.

    Walks the grids once: the state at each grid is ALERT when a grid of the last ``hold_minutes`` (itself
    included) reached the threshold; ``since`` is where the last run of equal states began (a gap longer than
    the staleness limit, when the site was UNKNOWN, begins a new run).
    """
    hold = timedelta(minutes=site.hold_minutes)
    stale = hold + STALE_MARGIN
    state, since, exceeded, previous = AlertState.UNKNOWN, None, None, None
    for stored, probability in seen:
        scan = stored.scan_start
        if probability >= site.threshold:
            exceeded = scan
        now = AlertState.ALERT if exceeded is not None and scan - exceeded <= hold else AlertState.CLEAR
        if now != state or (previous is not None and scan - previous > stale):
            since = scan
        state, previous = now, scan
    newest, probability = seen[-1]
    if reference - newest.scan_start > stale:
        return SiteStatus(site, AlertState.UNKNOWN, None, newest.scan_start + stale, exceeded, newest)
    return SiteStatus(site, state, probability, since, exceeded, newest)


class Webhook(Protocol):
    """Where transitions go (:class:`serve.alerts.webhook.WebhookSender`)."""

    def enqueue(self, message: dict[str, Any]) -> None:
        """Queue one message; never blocks."""
        ...


def transition_message(status: SiteStatus, previous: AlertState | None) -> dict[str, Any]:
    """The webhook's JSON body for a site entering ``status.state``."""
    site, grid = status.site, status.grid
    valid = None if grid is None else iso_utc(grid.scan_start + timedelta(minutes=30))
    return {"site": site.id, "name": site.name, "lat": site.lat, "lon": site.lon, "state": str(status.state),
            "previous": None if previous is None else str(previous), "probability": status.probability,
            "threshold": site.threshold, "radius_km": site.radius_km, "since": _iso(status.since),
            "grid_id": None if grid is None else grid.grid_id, "valid_time": valid,
            # the same transition gets the same id from every process (states come from the stored grids alone):
            # a receiver fed by several workers keeps the first of each id
            "event_id": f"{site.id}/{status.state}/{_iso(status.since)}"}  # fmt: skip


class AlertRunner:
    """Recomputes the sites' states when a sector's newest grid changes, on a daemon thread.

    Polls the store's listings every ``poll_s`` (the worker is never called or waited on), and recomputes at
    least every ``refresh_s`` (so a live clock can turn a stopped feed UNKNOWN). Each transition is logged
    once, counted in ``ltgcast_site_alert_transitions_total{site,to}`` and handed to ``webhook``. The first
    evaluation after start sets the baseline: only sites already in ALERT are announced (``previous`` null),
    so a restart does not announce every all-clear again.
    """

    def __init__(self, alerts: SiteAlerts, webhook: Webhook | None = None, *, poll_s: float = 1.0,
                 refresh_s: float = 60.0) -> None:  # fmt: skip
        self.alerts = alerts
        self.webhook = webhook
        self.poll_s = poll_s
        self.refresh_s = refresh_s
        self._latest: Evaluation | None = None
        self._states: dict[str, AlertState] | None = None
        self._watched: tuple[tuple[str, str], ...] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ltgcast-alerts", daemon=True)
        self.errors = 0

    def current(self) -> dict[str, Any]:
        """The newest evaluation as the API answers it (evaluated now when the runner has none yet)."""
        latest = self._latest
        return (latest if latest is not None else self.alerts.evaluate()).as_json()

    def check(self, force: bool = False) -> bool:
        """Recompute when a sector's newest grid changed (or ``force``); whether it did."""
        watched = tuple((s, g.grid_id) for s, g in self.alerts.newest().items())
        if not force and watched == self._watched:
            return False
        self.update()
        self._watched = watched
        return True

    def update(self) -> Evaluation:
        """Evaluate, publish the series, announce the transitions; return the evaluation."""
        evaluation = self.alerts.evaluate()
        first, previous = self._states is None, self._states or {}
        for status in evaluation.statuses:
            site, state = status.site.id, status.state
            metrics.SITE_ALERT_STATE.labels(site).set(GAUGE[state])
            metrics.SITE_PROBABILITY.labels(site).set(math.nan if status.probability is None else status.probability)
            before = previous.get(site)
            if (first and state is AlertState.ALERT) or (not first and before != state):
                self._announce(status, before)
        self._states = {s.site.id: s.state for s in evaluation.statuses}
        self._latest = evaluation
        return evaluation

    def _announce(self, status: SiteStatus, before: AlertState | None) -> None:
        site = status.site
        metrics.SITE_ALERT_TRANSITIONS.labels(site.id, str(status.state)).inc()
        log.info("alerts: %s (%s) %s -> %s: p=%s within %g km (threshold %g), since %s, grid %s", site.id, site.name,
                 before or "start", status.state, status.probability, site.radius_km, site.threshold,
                 _iso(status.since), None if status.grid is None else status.grid.grid_id)  # fmt: skip
        if self.webhook is not None:
            self.webhook.enqueue(transition_message(status, before))

    def _run(self) -> None:
        last = -math.inf
        while True:
            now = time.monotonic()
            try:
                if self.check(force=now - last >= self.refresh_s):
                    last = now
            except Exception:  # a store hiccup must not end the runner
                self.errors += 1
                log.exception("alerts: evaluating the sites failed; trying again")
            if self._stop.wait(self.poll_s):
                return

    def start(self) -> AlertRunner:
        """Start the thread; return self."""
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (after the evaluation in progress)."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=timeout_s)

    def alive(self) -> bool:
        """Whether the thread runs."""
        return self._thread.is_alive()
